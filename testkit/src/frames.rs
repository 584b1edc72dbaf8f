//! Hand-made Ethernet frames and raw sockets to send and capture them inside a namespace: what
//! a workload (or a guest behind a tap) could put on the wire, spoofed or not.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod parse;

pub const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet frame.
pub fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ARP packet (Ethernet/IPv4); `op` 1 request, 2 reply.
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0, 1, 8, 0, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa.octets());
    p.extend_from_slice(&tha);
    p.extend_from_slice(&tpa.octets());
    p
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet carrying UDP (checksum 0, which IPv4 allows).
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let udp_len = 8 + data.len();
    let total = 20 + udp_len;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(data);
    p
}

/// An IPv6 packet carrying ICMPv6 `body` (type, code, then the rest; checksum computed).
pub fn ipv6_icmp(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, 255]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(body.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    let mut icmp = body.to_vec();
    if icmp.len() >= 4 {
        icmp[2..4].copy_from_slice(&[0, 0]);
        pseudo.extend_from_slice(&icmp);
        let sum = checksum(&pseudo);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p.extend_from_slice(&icmp);
    p
}

/// A router advertisement (type 134) with no options.
pub fn router_advert() -> Vec<u8> {
    vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// A neighbour advertisement (type 136, override) for `target`.
pub fn neighbour_advert(target: Ipv6Addr) -> Vec<u8> {
    let mut b = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    b.extend_from_slice(&target.octets());
    b
}

/// A BOOTP/DHCP discover (the UDP payload) from client `chaddr`, broadcast flag set (the
/// minimum a server such as busybox `udhcpd` answers).
pub fn dhcp_discover(xid: u32, chaddr: [u8; 6]) -> Vec<u8> {
    let mut p = vec![1, 1, 6, 0];
    p.extend_from_slice(&xid.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x80, 0]);
    p.extend_from_slice(&[0; 16]);
    p.extend_from_slice(&chaddr);
    p.extend_from_slice(&[0; 10 + 64 + 128]);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 255]);
    p
}

/// The EUI-64 link-local address of `mac` (netcore's, checked there against a known vector).
pub use netcore::antispoof::link_local;

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn mac(text: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (i, part) in text.split(':').enumerate().take(6) {
        out[i] = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    out
}

/// Runs `f` on a thread inside the namespace at `ns` (the test thread never moves).
fn in_netns<T: Send>(ns: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let file = std::fs::File::open(ns).with_context(|| format!("open {}", ns.display()))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .context("setns")?;
            f()
        })
        .join()
        .unwrap_or_else(|_| bail!("netns thread panicked"))
    })
}

/// A raw socket on one interface: sends frames as they are, sees every frame the interface
/// receives. Either an `AF_PACKET` socket or a tap's queue, opened as QEMU opens it.
pub struct RawPort {
    fd: OwnedFd,
}

fn last_os_error(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", std::io::Error::last_os_error())
}

impl RawPort {
    /// An `AF_PACKET` socket bound to `ifname` in the namespace at `ns`.
    pub fn packet(ns: &Path, ifname: &str) -> Result<Self> {
        let name = std::ffi::CString::new(ifname)?;
        in_netns(ns, move || {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2) call; the result is checked before use.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            if raw < 0 {
                return Err(last_os_error("AF_PACKET socket"));
            }
            // SAFETY: `raw` is a fresh descriptor owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: `name` is a valid NUL-terminated string.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if index == 0 {
                return Err(last_os_error("if_nametoindex"));
            }
            // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            // SAFETY: `sll` is a valid sockaddr_ll and its size is passed.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc < 0 {
                return Err(last_os_error("bind AF_PACKET"));
            }
            Ok(RawPort { fd })
        })
    }

    /// Opens the existing tap `name` in the namespace at `ns` as QEMU does (`IFF_TAP |
    /// IFF_NO_PI`): what is written is what the guest sends.
    pub fn tap(ns: &Path, name: &str) -> Result<Self> {
        let name = name.to_string();
        in_netns(ns, move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .context("open /dev/net/tun")?;
            // SAFETY: ifreq is plain data; all-zero is a valid value.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (i, b) in name.bytes().take(15).enumerate() {
                req.ifr_name[i] = b as libc::c_char;
            }
            req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
            // SAFETY: TUNSETIFF takes a pointer to an ifreq that outlives the call.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
            if rc < 0 {
                return Err(last_os_error("TUNSETIFF"));
            }
            Ok(RawPort { fd: file.into() })
        })
    }

    /// Stops seeing the frames the interface sends (`PACKET_IGNORE_OUTGOING`): on a tap, what
    /// is left is what its guest sent.
    pub fn ignore_outgoing(&self) -> Result<()> {
        /// linux/if_packet.h (Linux 4.20); not in every libc crate version.
        const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
        let one: libc::c_int = 1;
        // SAFETY: `one` outlives the call and its size is passed; the fd is ours.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_IGNORE_OUTGOING,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if rc < 0 {
            return Err(last_os_error("PACKET_IGNORE_OUTGOING"));
        }
        Ok(())
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: `frame` is valid for its length; the fd is ours.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            return Err(last_os_error("send frame"));
        }
        Ok(())
    }

    /// Receives frames until `stop` returns true for one, or until `limit` passes (an error);
    /// returns every frame received, the last one included. Frames received before the
    /// interface went away are still returned.
    pub fn recv_until(
        &self,
        limit: Duration,
        stop: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + limit;
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "no matching frame within {limit:?} ({} others)",
                    frames.len()
                );
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
            if rc <= 0 {
                continue;
            }
            // SAFETY: `buf` is valid for its length; the fd is ours.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                // The interface went down (a tap whose QEMU exited): reported once, and what
                // was queued before stays readable.
                if err.raw_os_error() == Some(libc::ENETDOWN) {
                    continue;
                }
                return Err(anyhow::anyhow!("receive frame: {err}"));
            }
            let frame = buf[..n as usize].to_vec();
            let done = stop(&frame);
            frames.push(frame);
            if done {
                return Ok(frames);
            }
        }
    }
}
