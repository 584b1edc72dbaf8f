//! How every ciao daemon logs (scheduler, CNCI agent, node daemon, Docker plugin): one line per
//! event on stderr, prefixed by its spans, filtered by the daemon's `--log-level` / `RUST_LOG`.
//! One place, so the daemons cannot drift apart in format or in how they survive a lost stderr.

use std::io::IsTerminal;

pub use tracing_subscriber::filter::ParseError;

/// Installs the global subscriber. `filter` is tracing's EnvFilter syntax (`info`,
/// `ciao_node=debug,info`); a bad filter is an error, so a typo in a unit file stops the daemon
/// at start instead of silencing it.
pub fn init(filter: &str) -> Result<(), ParseError> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never in a journal or a test's pipe.
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr (a parent that stopped reading) must not turn every log line into a
        // panic: the subscriber would report its write error on stderr with eprintln!.
        .log_internal_errors(false)
        .init();
    Ok(())
}
