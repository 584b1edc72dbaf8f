//! The plugin's error; every variant becomes Docker's `{"Err": "<message>"}`.

/// Why a call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The request body is not the JSON the call takes.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A value in the request or an option is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The request names a network, endpoint or pool the plugin does not know.
    #[error("{0}")]
    Unknown(String),
    /// The request conflicts with what exists (duplicate id, address in use).
    #[error("{0}")]
    Conflict(String),
    /// The shared core refused or failed.
    #[error("{0}")]
    Core(#[from] netcore::Error),
}
