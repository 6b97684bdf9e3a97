//! How fast the proxy opens broker connections: a token bucket over all of them, and a
//! back-off per broker address after a failure.
//!
//! Every broker connection costs a TLS handshake and a SASL authentication (a token check
//! at Google for Managed Kafka). Clients reconnect quickly when refused, so without a gate a
//! broker that refuses the proxy's token, or a misbehaving local process, turns into a storm
//! of authentications. After a failure towards `host:port`, client connections needing it
//! get the last error at once (Kafka clients retry with their own back-off) until the
//! back-off has passed; one success ends it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::wire::UpstreamError;

/// New broker connections per second, sustained.
pub const DIALS_PER_SECOND: f64 = 50.0;
/// New broker connections at once after a quiet period.
pub const DIAL_BURST: f64 = 100.0;
/// First back-off after a failure; doubles per consecutive failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest back-off: a recovered broker is used again within this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A dial refused because the address is backing off.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "not connecting to broker {host}:{port} for another {remaining_ms} ms after {failures} failed attempt(s); the last: {last_error}"
)]
pub struct DialRefused {
    host: String,
    port: u16,
    remaining_ms: u128,
    failures: u32,
    last_error: String,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Backoff {
    failures: u32,
    until: Instant,
    last_error: String,
}

/// See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct DialGate {
    bucket: Mutex<Bucket>,
    backoff: Mutex<HashMap<(String, u16), Backoff>>,
}

impl Default for DialGate {
    fn default() -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                tokens: DIAL_BURST,
                at: Instant::now(),
            }),
            backoff: Mutex::new(HashMap::new()),
        }
    }
}

impl DialGate {
    /// Waits for a token of the bucket, or refuses while `host:port` backs off.
    pub async fn admit(&self, host: &str, port: u16) -> Result<(), DialRefused> {
        if let Some(b) = self
            .backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(host.to_owned(), port))
        {
            let now = Instant::now();
            if now < b.until {
                return Err(DialRefused {
                    host: host.to_owned(),
                    port,
                    remaining_ms: (b.until - now).as_millis(),
                    failures: b.failures,
                    last_error: b.last_error.clone(),
                });
            }
        }
        let wait = {
            let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(bucket.at).as_secs_f64() * DIALS_PER_SECOND;
            bucket.tokens = (bucket.tokens + refill).min(DIAL_BURST) - 1.0;
            bucket.at = now;
            // Negative: this dial is reserved and waits for its token to accrue.
            (bucket.tokens < 0.0)
                .then(|| Duration::from_secs_f64(-bucket.tokens / DIALS_PER_SECOND))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// A connection to `host:port` was opened and authenticated: no more back-off.
    pub fn succeeded(&self, host: &str, port: u16) {
        self.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(host.to_owned(), port));
    }

    /// Opening `host:port` failed: back off, longer after each consecutive failure.
    pub fn failed(&self, host: &str, port: u16, error: &UpstreamError) {
        let mut all = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let entry = all.entry((host.to_owned(), port)).or_insert(Backoff {
            failures: 0,
            until: Instant::now(),
            last_error: String::new(),
        });
        entry.failures = entry.failures.saturating_add(1);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (entry.failures - 1).min(8))
            .min(MAX_BACKOFF);
        entry.until = Instant::now() + backoff;
        entry.last_error = error.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> UpstreamError {
        UpstreamError::Refused {
            host: "b".to_owned(),
            mechanism: "OAUTHBEARER",
            code: kafka_protocol::ResponseError::SaslAuthenticationFailed.code(),
            message: "bad token".to_owned(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_doubling_up_to_the_cap_and_a_success_clears_it() {
        let gate = DialGate::default();
        gate.admit("b", 9092).await.unwrap();
        gate.failed("b", 9092, &refused());
        let err = gate.admit("b", 9092).await.unwrap_err();
        assert_eq!(err.failures, 1);
        assert_eq!(err.remaining_ms, 500);
        assert!(err.to_string().contains("bad token"), "{err}");
        // Another address is not affected.
        gate.admit("c", 9092).await.unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        gate.admit("b", 9092).await.unwrap();
        gate.failed("b", 9092, &refused());
        assert_eq!(gate.admit("b", 9092).await.unwrap_err().remaining_ms, 1000);
        for _ in 0..10 {
            gate.failed("b", 9092, &refused());
        }
        assert_eq!(
            gate.admit("b", 9092).await.unwrap_err().remaining_ms,
            10_000
        );
        gate.succeeded("b", 9092);
        gate.admit("b", 9092).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_lets_a_burst_through_then_paces() {
        let gate = DialGate::default();
        let start = Instant::now();
        for _ in 0..100 {
            gate.admit("b", 1).await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst");
        for _ in 0..50 {
            gate.admit("b", 1).await.unwrap();
        }
        let paced = start.elapsed();
        assert!(
            paced >= Duration::from_millis(990) && paced <= Duration::from_millis(1010),
            "50 more take a second at 50/s: {paced:?}"
        );
    }
}
