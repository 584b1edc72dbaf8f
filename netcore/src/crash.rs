//! Crash injection for the crash-safety tests: `CIAO_CRASH_AFTER_STEP=N` makes the process
//! SIGKILL itself after step N of an attach. Compiled in only with the `crash-points` feature.

/// Kills the process here if the test asked for a crash after `step`.
#[cfg(feature = "crash-points")]
pub fn crash_point(step: u32) {
    let wanted = std::env::var("CIAO_CRASH_AFTER_STEP")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    if wanted == Some(step) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Without the feature, crash points compile to nothing.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn crash_point(_step: u32) {}

/// The number of the last crash point in an attach.
pub const ATTACH_STEPS: u32 = 9;
