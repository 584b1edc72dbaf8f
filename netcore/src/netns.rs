//! Network namespaces of workloads.

use std::fs::File;
use std::os::fd::OwnedFd;
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
