//! Persistent tap devices through `/dev/net/tun` (rtnetlink cannot create taps).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use crate::error::{Error, Result};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags, padded to the union's size.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Who may open a persistent tap (QEMU usually runs as its own user).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapOwner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Creates a persistent tap named `name` (multi-queue off, vnet header on as QEMU expects).
pub fn create_tap(name: &str, owner: TapOwner) -> Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(Error::invalid(
            "tap name",
            format!("{name:?} must be 1 to 15 bytes"),
        ));
    }
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| Error::io("open /dev/net/tun", e))?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let fd = tun.as_raw_fd();
    // SAFETY: `fd` is an open /dev/net/tun descriptor owned by `tun`, and `req` is a properly
    // sized, initialised ifreq that outlives the call; TUNSETIFF only reads and writes within it.
    let rc = unsafe { libc::ioctl(fd, TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(Error::io(
            format!("create tap {name}"),
            std::io::Error::last_os_error(),
        ));
    }
    let set = |request: libc::c_ulong, value: libc::c_ulong, what: &str| -> Result<()> {
        // SAFETY: these TUN ioctls take an integer argument by value; `fd` is still open.
        let rc = unsafe { libc::ioctl(fd, request, value) };
        if rc < 0 {
            return Err(Error::io(
                format!("{what} on tap {name}"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    };
    if let Some(uid) = owner.uid {
        set(TUNSETOWNER, uid.into(), "set owner")?;
    }
    if let Some(gid) = owner.gid {
        set(TUNSETGROUP, gid.into(), "set group")?;
    }
    // Persist last: if anything above failed, closing the fd removes the half-made tap.
    set(TUNSETPERSIST, 1, "make persistent")?;
    Ok(())
}
