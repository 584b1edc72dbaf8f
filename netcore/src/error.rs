//! The core's error type. Front ends map each variant to their protocol's error form.

use std::io;

/// Everything the core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing or wrong; `field` names it as the user wrote it.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The request conflicts with what is already on the node (VNI in use, interface exists).
    #[error("{0}")]
    Conflict(String),
    /// CHECK found the attachment different from what was recorded.
    #[error("check failed: {0}")]
    CheckFailed(String),
    /// The container's network namespace does not exist (any more).
    #[error("network namespace {0} does not exist")]
    NetnsGone(String),
    /// The kernel lacks a feature (e.g. a tunnel kind).
    #[error("{0}")]
    Unsupported(String),
    /// A kernel call failed.
    #[error("{op}: {}", errno_text(*.errno))]
    Netlink { op: String, errno: i32 },
    /// A system call or file operation failed.
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    /// The node state on disk is unreadable.
    #[error("state file {path}: {message}")]
    State { path: String, message: String },
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The errno behind a kernel or system-call failure, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the object the call worked on does not exist (ENODEV, ENOENT, ESRCH).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH) | Some(libc::EADDRNOTAVAIL)
        )
    }

    /// True when the object already exists.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

fn errno_text(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match errno {
        libc::EOPNOTSUPP => format!("{text} (the kernel lacks this link kind or feature)"),
        _ => text,
    }
}
