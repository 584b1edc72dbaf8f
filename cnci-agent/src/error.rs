//! The agent's error type.

/// What an agent operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kernel or system operation failed.
    #[error(transparent)]
    Core(#[from] netcore::Error),
    /// The state directory could not be read or written.
    #[error("state {path}: {message}")]
    State { path: String, message: String },
    /// `nft` refused a ruleset or could not run.
    #[error("nftables: {0}")]
    Nft(String),
    /// The request contradicts what is already configured.
    #[error("{0}")]
    Conflict(String),
    /// The request exceeds a configured limit.
    #[error("limit: {0}")]
    Limit(String),
    /// The request is malformed or not for this agent.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for the agent.
pub type Result<T, E = Error> = std::result::Result<T, E>;
