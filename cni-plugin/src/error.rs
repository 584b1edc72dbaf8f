//! CNI errors: the spec's codes and its error JSON.

use serde::Serialize;

/// Error codes from the CNI specification (1-99 are reserved by the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    /// The spec's "try again later": a transient condition (the controller is unreachable).
    TryAgainLater = 11,
    NotAvailable = 50,
    /// Plugin-specific (>= 100): the request conflicts with the node's state.
    Conflict = 100,
    /// Plugin-specific: the kernel refused or lacks something.
    Kernel = 101,
    /// Plugin-specific: CHECK found the attachment broken.
    CheckFailed = 102,
}

/// A CNI error as printed on stdout.
#[derive(Debug, Clone, Serialize)]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            cni_version: crate::version::LATEST.to_string(),
            code: code as u32,
            msg: msg.into(),
            details: String::new(),
        }
    }
}

impl From<netcore::Error> for CniError {
    fn from(err: netcore::Error) -> Self {
        CniError::new(code_of(&err), err.to_string())
    }
}

fn code_of(err: &netcore::Error) -> Code {
    use netcore::Error as E;
    match err {
        E::Invalid { .. } => Code::InvalidConfig,
        E::CheckFailed(_) => Code::CheckFailed,
        E::Conflict(_) => Code::Conflict,
        E::NetnsGone(_) => Code::UnknownContainer,
        E::Unsupported(_) | E::Netlink { .. } => Code::Kernel,
        E::Io { .. } | E::State { .. } => Code::Io,
        E::Internal(_) => Code::Kernel,
        // A teardown that failed several ways: the first failure names the kind.
        E::Several(list) => list.first().map_or(Code::Kernel, code_of),
    }
}
