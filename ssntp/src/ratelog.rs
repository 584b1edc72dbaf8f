//! Rate limiting for log lines that a remote peer can cause (refused connections, dropped
//! frames): an attacker must not be able to fill the disk or burn the CPU through the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets at most `per_window` lines through per `window`; counts the rest so that the next line
/// let through can say how many were suppressed.
#[derive(Debug)]
pub struct RateLimit {
    per_window: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(per_window: u32, window: Duration) -> Self {
        RateLimit {
            per_window,
            window,
            state: Mutex::new(State {
                started: Instant::now(),
                written: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` if a line may be written now, `n` being how many were suppressed since the
    /// last one written; `None` if this one must be suppressed.
    pub fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.started.elapsed() >= self.window {
            s.started = Instant::now();
            s.written = 0;
        }
        if s.written >= self.per_window {
            s.suppressed += 1;
            return None;
        }
        s.written += 1;
        Some(std::mem::take(&mut s.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_burst_through_then_counts_what_it_suppressed() {
        let limit = RateLimit::new(2, Duration::from_millis(50));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        let next = loop {
            if let Some(n) = limit.allow() {
                break n;
            }
            assert!(Instant::now() < deadline, "the window never reopened");
            std::thread::yield_now();
        };
        assert!(next >= 2, "{next}");
    }
}
