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
    /// Every failure of an operation that kept going past each one (a teardown), in order.
    #[error("{}", join(.0))]
    Several(Vec<Error>),
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects the failures of steps that are all attempted: netavark's error list.
#[derive(Debug, Default)]
pub struct Failures(Vec<Error>);

impl Failures {
    /// Keeps the error of `result`, if any, and returns its value.
    pub fn note<T>(&mut self, result: Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Nothing failed: `Ok`; one failure: that error; several: [`Error::Several`].
    pub fn into_result(mut self) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(Error::Several(self.0)),
        }
    }
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

    /// The errno behind a kernel or system-call failure, if any (of the first, for several).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Several(list) => list.first().and_then(Error::errno),
            _ => None,
        }
    }

    /// The failures this error stands for: itself, or each of [`Error::Several`].
    pub fn failures(&self) -> Vec<&Error> {
        match self {
            Error::Several(list) => list.iter().flat_map(Error::failures).collect(),
            other => vec![other],
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
