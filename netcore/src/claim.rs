//! One node, one state directory.
//!
//! A node is a network namespace (tests simulate nodes as namespaces on one host, sharing one
//! filesystem). Two state directories serving one namespace do not know each other's links and
//! addresses: one's reconcile deletes the other's bridges, and both hand out the same address.
//! So the first state directory opened in a namespace claims it, and any other is refused.
//!
//! The claim is a file `/run/ciao-net/claims/netns-<cookie>` holding the state directory's path
//! and its device and inode. The key is the kernel's network-namespace cookie
//! (`SO_NETNS_COOKIE`), which is never reused while the system runs, unlike a namespace's inode
//! number, so a claim can never be inherited by a later namespace. `/run` is emptied at boot,
//! as namespaces are. A claim whose directory is gone (deleted, or replaced by another with the
//! same path) is stale and taken over.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where claims live.
pub const CLAIM_DIR: &str = "/run/ciao-net/claims";

/// `SO_NETNS_COOKIE` (Linux 5.14; the generic value, as on x86 and arm).
const SO_NETNS_COOKIE: libc::c_int = 71;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    state_dir: PathBuf,
    dev: u64,
    ino: u64,
}

/// The identity of the calling thread's network namespace: its cookie, or (kernels before 5.14)
/// the device and inode of its nsfs file.
pub fn namespace_key() -> Result<String> {
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::io(
            "open a socket for the namespace cookie",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        return Ok(format!("netns-{cookie}"));
    }
    let meta = fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| Error::io("stat /proc/thread-self/ns/net", e))?;
    Ok(format!("netns-{}-{}", meta.dev(), meta.ino()))
}

fn read_claim(path: &Path) -> Result<Option<Claim>> {
    match fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

/// True while the claimed directory still exists as the one that was claimed.
fn is_live(claim: &Claim) -> bool {
    fs::metadata(&claim.state_dir).is_ok_and(|m| m.dev() == claim.dev && m.ino() == claim.ino)
}

/// Claims the calling thread's network namespace for `state_dir`, or refuses with the state
/// directory that holds it. Cheap when the claim is already ours (one read, one stat).
pub fn claim_namespace(state_dir: &Path) -> Result<()> {
    claim_in(Path::new(CLAIM_DIR), state_dir)
}

fn claim_in(claims: &Path, state_dir: &Path) -> Result<()> {
    let meta = fs::metadata(state_dir)
        .map_err(|e| Error::io(format!("stat {}", state_dir.display()), e))?;
    let ours = Claim {
        state_dir: fs::canonicalize(state_dir)
            .map_err(|e| Error::io(format!("resolve {}", state_dir.display()), e))?,
        dev: meta.dev(),
        ino: meta.ino(),
    };
    let path = claims.join(namespace_key()?);
    if read_claim(&path)?.as_ref() == Some(&ours) {
        return Ok(());
    }
    fs::create_dir_all(claims).map_err(|e| Error::io(format!("create {}", claims.display()), e))?;
    let lock_path = claims.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
    let _lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| Error::io(format!("lock {}", lock_path.display()), errno.into()))?;
    match read_claim(&path)? {
        Some(c) if c == ours => return Ok(()),
        Some(c) if is_live(&c) => {
            return Err(Error::invalid(
                "stateDir",
                format!(
                    "{} refused: this node (network namespace {}) already keeps its state in {}; \
                     one node has one state directory, shared by the CNI plugin, the Docker \
                     plugin, the QEMU hooks and ciao-node",
                    ours.state_dir.display(),
                    path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                    c.state_dir.display()
                ),
            ))
        }
        _ => {}
    }
    prune_stale(claims)?;
    let bytes = serde_json::to_vec(&ours).map_err(|e| Error::Internal(e.to_string()))?;
    crate::state::write_atomic(&path, &bytes)
}

/// The state directory that owns the calling thread's network namespace, if a live claim
/// names one. Read-only: nothing is created, locked or pruned.
pub fn owner_of_namespace() -> Result<Option<PathBuf>> {
    owner_in(Path::new(CLAIM_DIR))
}

fn owner_in(claims: &Path) -> Result<Option<PathBuf>> {
    let claim = read_claim(&claims.join(namespace_key()?))?;
    Ok(claim.filter(is_live).map(|c| c.state_dir))
}

/// Drops claims whose directory is gone, so claims of finished namespaces do not pile up.
fn prune_stale(claims: &Path) -> Result<()> {
    let entries =
        fs::read_dir(claims).map_err(|e| Error::io(format!("list {}", claims.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_claim = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("netns-"));
        if !is_claim {
            continue;
        }
        if let Some(c) = read_claim(&path)? {
            if !is_live(&c) {
                let _ = fs::remove_file(&path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_state_dir_is_refused_and_a_deleted_one_is_stale() {
        let claims = tempfile::tempdir().expect("claims");
        let first = tempfile::tempdir().expect("first");
        let second = tempfile::tempdir().expect("second");
        claim_in(claims.path(), first.path()).expect("first claim");
        claim_in(claims.path(), first.path()).expect("same directory again");
        let err = claim_in(claims.path(), second.path()).expect_err("second refused");
        let text = err.to_string();
        assert!(
            text.contains(&first.path().display().to_string()) && text.contains("stateDir"),
            "{text}"
        );
        let first_path = first.path().to_path_buf();
        drop(first);
        assert!(!first_path.exists());
        claim_in(claims.path(), second.path()).expect("stale claim taken over");
    }

    #[test]
    fn the_owner_of_a_namespace_is_read_without_a_write() {
        let claims = tempfile::tempdir().expect("claims");
        let dir = tempfile::tempdir().expect("state dir");
        assert_eq!(owner_in(claims.path()).expect("no claim"), None);
        assert_eq!(fs::read_dir(claims.path()).expect("list").count(), 0);
        claim_in(claims.path(), dir.path()).expect("claim");
        let canonical = fs::canonicalize(dir.path()).expect("canonical");
        assert_eq!(owner_in(claims.path()).expect("owner"), Some(canonical));
        drop(dir);
        assert_eq!(owner_in(claims.path()).expect("stale"), None);
    }

    #[test]
    fn namespace_keys_are_stable() {
        assert_eq!(namespace_key().expect("key"), namespace_key().expect("key"));
    }
}
