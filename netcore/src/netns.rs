//! Network namespaces of workloads.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};

/// Opens a network namespace by path (`/run/netns/x`, `/proc/<pid>/ns/net`).
pub fn open(path: &Path) -> Result<OwnedFd> {
    match File::open(path) {
        Ok(f) => Ok(f.into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::NetnsGone(path.display().to_string()))
        }
        Err(e) => Err(Error::io(format!("open netns {}", path.display()), e)),
    }
}

/// True if `ns` is the calling thread's own network namespace (same device and inode as
/// `/proc/thread-self/ns/net`): a workload namespace must never be the node itself.
pub fn is_current(ns: BorrowedFd<'_>) -> Result<bool> {
    let theirs = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&ns))
        .map_err(|e| Error::io("stat netns", e.into()))?;
    let own = nix::sys::stat::stat("/proc/thread-self/ns/net")
        .map_err(|e| Error::io("stat /proc/thread-self/ns/net", e.into()))?;
    Ok(theirs.st_dev == own.st_dev && theirs.st_ino == own.st_ino)
}

/// True if two namespace handles name the same namespace (same device and inode).
pub fn same(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> Result<bool> {
    let stat = |fd: BorrowedFd<'_>| {
        nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))
            .map_err(|e| Error::io("stat netns", e.into()))
    };
    let (a, b) = (stat(a)?, stat(b)?);
    Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
}

/// Where named namespaces live, as `ip netns` keeps them.
pub const NAMED_DIR: &str = "/run/netns";

/// `statfs` magic of nsfs: a file that is a namespace bind mount.
const NSFS_MAGIC: i64 = 0x6e73_6673;

fn is_namespace_mount(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Runs `f` on a short-lived thread inside the network namespace `ns`, so the caller (possibly
/// a tokio worker) never changes namespace. Sockets and `/proc/sys/net` files opened there
/// stay bound to that namespace.
pub fn run_in<T: Send>(ns: BorrowedFd<'_>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let fd = ns
        .try_clone_to_owned()
        .map_err(|e| Error::io("duplicate netns fd", e))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::io("enter network namespace", e.into()))?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("netns thread panicked".into())))
    })
}

/// Writes a sysctl under `/proc/sys/net/` of the namespace `ns` (e.g. `ipv4/ip_forward`).
pub fn write_sysctl(ns: BorrowedFd<'_>, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/net/{key}");
    run_in(ns, || {
        std::fs::write(&path, value).map_err(|e| Error::io(format!("write {path}"), e))
    })
}

/// Opens the named namespace `name` (`/run/netns/<name>`), creating it as `ip netns add` does
/// if it does not exist. Its loopback is brought up. Safe to call concurrently and repeatedly.
pub fn ensure_named(name: &str) -> Result<OwnedFd> {
    crate::config::validate_ifname("namespace name", name)?;
    let dir = Path::new(NAMED_DIR);
    let path = dir.join(name);
    if is_namespace_mount(&path) {
        return open(&path);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {NAMED_DIR}"), e))?;
    // Like iproute2: make the directory a shared mount so namespaces created here appear in
    // every mount namespace (a bind mount of itself first if it is not a mount point yet).
    use nix::mount::{mount, MsFlags};
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    if mount(None::<&str>, dir, Some("none"), shared, None::<&str>).is_err() {
        mount(
            Some(dir),
            dir,
            Some("none"),
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::io(format!("bind-mount {NAMED_DIR}"), e.into()))?;
        mount(None::<&str>, dir, Some("none"), shared, None::<&str>)
            .map_err(|e| Error::io(format!("make {NAMED_DIR} shared"), e.into()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    let target = path.clone();
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<()> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::io("create network namespace", e.into()))?;
                let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
                match mount(
                    Some(own.as_str()),
                    &target,
                    Some("none"),
                    MsFlags::MS_BIND,
                    None::<&str>,
                ) {
                    Ok(()) => Ok(()),
                    // Another process won the race and mounted its namespace there first.
                    Err(_) if is_namespace_mount(&target) => Ok(()),
                    Err(e) => Err(Error::io(
                        format!("bind-mount {}", target.display()),
                        e.into(),
                    )),
                }
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("netns thread panicked".into())))
    })?;
    let fd = open(&path)?;
    let mut nl = crate::netlink::Netlink::open_in(fd.as_fd())?;
    if let Some(lo) = nl.link_by_name("lo")? {
        nl.set_up(lo.index, true)?;
    }
    Ok(fd)
}

/// Deletes the named namespace `name` (its links go with it); a missing one is not an error.
pub fn delete_named(name: &str) -> Result<()> {
    let path = Path::new(NAMED_DIR).join(name);
    if is_namespace_mount(&path) {
        nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| Error::io(format!("unmount {}", path.display()), e.into()))?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", path.display()), e)),
    }
}
