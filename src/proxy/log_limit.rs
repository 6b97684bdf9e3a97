//! At most one log line per cause and interval: a thousand clients failing the same way (a
//! broker outage, a misconfigured fleet) make one line every [`INTERVAL`] saying how many
//! were suppressed, not a thousand lines.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One line per cause this often.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Per-cause rate limiter for log lines.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    causes: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimit {
    /// `Some(n)` when a line for `cause` may be logged now (`n` lines were suppressed since
    /// the last one); `None` when it is to be suppressed.
    pub fn allow(&self, cause: &'static str) -> Option<u64> {
        self.allow_at(cause, Instant::now())
    }

    fn allow_at(&self, cause: &'static str, now: Instant) -> Option<u64> {
        let mut causes = self.causes.lock().unwrap_or_else(|p| p.into_inner());
        match causes.get_mut(cause) {
            Some((last, suppressed)) if now.duration_since(*last) < INTERVAL => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let n = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                causes.insert(cause, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_cause_and_interval_with_the_suppressed_count() {
        let limit = LogLimit::default();
        let t0 = Instant::now();
        assert_eq!(limit.allow_at("a", t0), Some(0));
        assert_eq!(limit.allow_at("b", t0), Some(0), "causes are independent");
        for _ in 0..5 {
            assert_eq!(limit.allow_at("a", t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(limit.allow_at("a", t0 + INTERVAL), Some(5));
        assert_eq!(limit.allow_at("a", t0 + INTERVAL), None);
    }
}
