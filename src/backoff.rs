use std::time::Duration;

use crate::random::unit_random;

const FIRST: Duration = Duration::from_millis(100);
const CAP: Duration = Duration::from_secs(1);

/// The wait before retry number `attempt` (1-based): exponential from
/// 100 ms, capped at 1 s, with "equal jitter" (half fixed, half random) so
/// that a fleet does not retry in lock-step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    let base = FIRST.saturating_mul(1 << doublings).min(CAP);
    base / 2 + (base / 2).mul_f64(unit_random())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_in_band() {
        for attempt in 1..40 {
            let d = backoff(attempt);
            let base = FIRST.saturating_mul(1 << (attempt - 1).min(16)).min(CAP);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(30) <= CAP);
    }
}
