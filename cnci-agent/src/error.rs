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

/// Every failure of an operation that attempts all its steps (teardown): none is lost behind
/// the first.
#[derive(Debug, Default, thiserror::Error)]
#[error("{} step(s) failed: {}", .0.len(), join(.0))]
pub struct ErrorList(pub Vec<Error>);

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ErrorList {
    /// `Ok` when nothing failed.
    pub fn into_result(self) -> std::result::Result<(), ErrorList> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// Runs one step and keeps its failure, if any; returns its value on success.
    pub fn attempt<T>(&mut self, step: Result<T>) -> Option<T> {
        match step {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }
}
