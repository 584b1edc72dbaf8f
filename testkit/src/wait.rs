//! Waiting for a condition, never for a time: every wait polls its condition and ends as soon
//! as it holds, with a deadline long enough for a loaded CI machine.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long a test waits for the cluster to converge after a change.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// Between two looks at the condition.
const POLL: Duration = Duration::from_millis(50);

/// The first `Some` that `probe` gives within `limit`; `None` if it never did.
pub fn value<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// True once `cond` holds within `limit`; false if it never did.
pub fn holds(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    value(limit, || cond().then_some(())).is_some()
}

/// Waits until `get` returns `want`; panics naming `what`, the last value and `want` if it
/// does not within [`CONVERGE`].
pub fn equal<T: PartialEq + Debug>(what: &str, want: &T, mut get: impl FnMut() -> T) {
    let mut last = None;
    let reached = value(CONVERGE, || {
        let got = get();
        let done = got == *want;
        last = Some(got);
        done.then_some(())
    });
    assert!(
        reached.is_some(),
        "{what}: {last:?} after {CONVERGE:?}, expected {want:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_its_condition_holds_and_not_before() {
        let mut n = 0;
        assert_eq!(
            value(CONVERGE, || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert!(!holds(Duration::ZERO, || false));
        equal("a counter", &2, {
            let mut m = 0;
            move || {
                m += 1;
                m
            }
        });
    }
}
