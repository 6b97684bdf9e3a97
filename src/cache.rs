//! The token cache: one background task refreshes, every reader only borrows.
//!
//! The refresh task is the only caller of the credential source, so concurrent requests share
//! one upstream call by construction (single flight). It publishes each outcome on a
//! `tokio::sync::watch` channel; a request with a usable token in the channel never waits on
//! Google. The task refreshes ahead of expiry (at `expiry - margin`, but never sooner than half
//! the token's life, so an upstream that hands out short-lived tokens is not hammered), keeps
//! the last good token while it is usable when a refresh fails, and retries with jittered
//! exponential backoff. It stops when the last [`TokenCache`] handle is dropped.
//!
//! Timing uses tokio's clock, so tests drive it with a paused clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::credentials::upstream::MIN_LIFETIME;
use crate::credentials::{CredentialError, CredentialSource};
use crate::kafka_token::KafkaToken;
use crate::principal::Principal;
use crate::token_response::ResponsePrefix;

/// Told about every refresh attempt; the metrics implement it. The cache defines it so that
/// it reports without knowing who listens (the metrics module reads the cache, not the
/// other way round).
pub(crate) trait RefreshObserver: Send + Sync + 'static {
    /// One attempt to get a token from the source ended after `took`, with a token or not.
    fn attempt_finished(&self, took: Duration, ok: bool);
}

/// A token is served only while it has at least this long left: half the shortest lifetime
/// accepted from upstream, so every accepted token can be served for a while, and a client
/// still has time to use one it was just given.
pub(crate) const SERVE_FLOOR: Duration = Duration::from_secs(MIN_LIFETIME.as_secs() / 2);

/// How soon to try again when no token is coming (the refresh task stopped, or a request
/// waited its full `request_wait`): the next attempt may already be under way.
const RETRY_AFTER_NO_ANSWER: Duration = Duration::from_secs(1);

/// Timing of the cache.
#[derive(Debug, Clone)]
pub struct CacheTiming {
    /// Refresh when this much of the token's life is left (default 5 minutes).
    pub refresh_margin: Duration,
    /// First retry delay after a failed refresh (default 1 s); doubles per failure.
    pub backoff_initial: Duration,
    /// Longest retry delay (default 10 s, the Java client's own login retry cadence).
    pub backoff_max: Duration,
    /// Upper bound on one refresh attempt, all upstream calls included (default 30 s).
    pub fetch_timeout: Duration,
    /// How long a request without a usable token waits for a refresh in progress (default 15 s).
    pub request_wait: Duration,
}

impl Default for CacheTiming {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(300),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(30),
            request_wait: Duration::from_secs(15),
        }
    }
}

/// A token ready to serve, with everything a request needs precomputed.
#[derive(Debug)]
pub(crate) struct CachedToken {
    pub(crate) token: KafkaToken,
    /// When the Google token expires, on tokio's clock.
    pub(crate) deadline: Instant,
    pub(crate) response: ResponsePrefix,
}

impl CachedToken {
    /// Whole seconds left, on tokio's clock.
    pub(crate) fn seconds_left(&self, now: Instant) -> u64 {
        self.deadline.saturating_duration_since(now).as_secs()
    }

    fn usable_at(&self, now: Instant) -> bool {
        self.deadline.saturating_duration_since(now) >= SERVE_FLOOR
    }
}

/// What the refresh task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A refresh is in flight.
    Fetching,
    /// The token is fresh; the next refresh is at `refresh_at`.
    Fresh { refresh_at: Instant },
    /// The last refresh failed; the next try is at `retry_at`.
    Backoff { retry_at: Instant },
}

/// What the refresh task publishes.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) token: Option<Arc<CachedToken>>,
    pub(crate) phase: Phase,
    pub(crate) last_error: Option<CredentialError>,
    /// Wall-clock time of the last failed refresh, seconds since the epoch.
    pub(crate) last_failure_unix: Option<u64>,
    pub(crate) refreshes_ok: u64,
    pub(crate) refreshes_failed: u64,
}

/// Why no token can be served now.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable {
    pub(crate) error: CredentialError,
    pub(crate) retry_after: Duration,
}

/// A handle on the cache; cheap to clone. The refresh task stops when the last one drops.
#[derive(Debug, Clone)]
pub(crate) struct TokenCache {
    snapshots: watch::Receiver<Snapshot>,
    timing: Arc<CacheTiming>,
}

impl TokenCache {
    /// Starts the refresh task (the first fetch begins at once). Needs a tokio runtime.
    pub(crate) fn start(
        source: Arc<dyn CredentialSource>,
        principal_override: Option<Principal>,
        timing: CacheTiming,
        observer: Arc<dyn RefreshObserver>,
    ) -> Self {
        let (tx, rx) = watch::channel(Snapshot {
            token: None,
            phase: Phase::Fetching,
            last_error: None,
            last_failure_unix: None,
            refreshes_ok: 0,
            refreshes_failed: 0,
        });
        let timing = Arc::new(timing);
        tokio::spawn(refresh_loop(
            source,
            principal_override,
            tx,
            timing.clone(),
            observer,
        ));
        Self {
            snapshots: rx,
            timing,
        }
    }

    /// The usable token, waiting for a refresh in progress when there is none.
    pub(crate) async fn get(&self) -> Result<Arc<CachedToken>, Unavailable> {
        // Fast path: a read lock on the channel and a clock read.
        if let Some(token) = usable(&self.snapshots.borrow(), Instant::now()) {
            return Ok(token);
        }
        let wait_until = Instant::now() + self.timing.request_wait;
        let mut rx = self.snapshots.clone();
        loop {
            {
                let snapshot = rx.borrow_and_update();
                let now = Instant::now();
                if let Some(token) = usable(&snapshot, now) {
                    return Ok(token);
                }
                if let Phase::Backoff { retry_at } = snapshot.phase {
                    return Err(Unavailable {
                        error: snapshot.last_error.clone().unwrap_or_else(|| {
                            CredentialError::transient("no token could be fetched yet")
                        }),
                        retry_after: retry_at.saturating_duration_since(now),
                    });
                }
            }
            match tokio::time::timeout_at(wait_until, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    return Err(Unavailable {
                        error: CredentialError::transient("the token refresh task has stopped"),
                        retry_after: RETRY_AFTER_NO_ANSWER,
                    });
                }
                Err(_) => {
                    return Err(Unavailable {
                        error: CredentialError::transient(format!(
                            "Google did not answer within {} s",
                            self.timing.request_wait.as_secs()
                        )),
                        retry_after: RETRY_AFTER_NO_ANSWER,
                    });
                }
            }
        }
    }

    /// The latest snapshot, for readiness, metrics and diagnostics.
    pub(crate) fn snapshot(&self) -> Snapshot {
        self.snapshots.borrow().clone()
    }

    /// Whether a token can be served right now without waiting.
    pub(crate) fn is_ready(&self) -> bool {
        usable(&self.snapshots.borrow(), Instant::now()).is_some()
    }
}

fn usable(snapshot: &Snapshot, now: Instant) -> Option<Arc<CachedToken>> {
    snapshot
        .token
        .as_ref()
        .filter(|t| t.usable_at(now))
        .cloned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// One refresh: a token from the source, its principal, the Kafka token and the response.
async fn fetch_once(
    source: &dyn CredentialSource,
    principal_override: Option<&Principal>,
) -> Result<CachedToken, CredentialError> {
    let google = source.fetch_token().await?;
    let principal = match principal_override {
        Some(p) => p.clone(),
        None => source.principal(&google).await?,
    };
    let now_wall = SystemTime::now();
    let left = google
        .expires_at
        .duration_since(now_wall)
        .unwrap_or_default();
    if left < SERVE_FLOOR {
        return Err(CredentialError::transient(format!(
            "{} returned a token with only {} s left",
            source.describe(),
            left.as_secs()
        )));
    }
    let exp = google
        .expires_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let token = KafkaToken::encode(
        secrecy::ExposeSecret::expose_secret(&google.access_token),
        &principal,
        exp,
        unix_now(),
    );
    Ok(CachedToken {
        response: ResponsePrefix::new(&token),
        token,
        deadline: Instant::now() + left,
    })
}

/// When to refresh a token with `lifetime` left: `margin` before expiry, but not before half
/// its life, less up to 5% jitter so a fleet of sidecars does not refresh in lockstep.
pub(crate) fn refresh_delay(lifetime: Duration, margin: Duration) -> Duration {
    let delay = lifetime.saturating_sub(margin).max(lifetime / 2);
    delay.mul_f64(1.0 - fastrand::f64() * 0.05)
}

/// Delay before retry number `failures` (1-based): exponential, capped, with jitter in
/// `[d/2, d]`.
pub(crate) fn backoff_delay(failures: u32, timing: &CacheTiming) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    let delay = timing
        .backoff_initial
        .saturating_mul(1 << exponent)
        .min(timing.backoff_max);
    delay.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Delay before the next attempt after `failures` failures in a row: the backoff, but while a
/// cached token is still served, at most half of the time it can still be served (never under
/// half the initial backoff), so a short-lived token is not lost to a long backoff while the
/// upstream may already be back.
pub(crate) fn retry_delay(
    failures: u32,
    usable_left: Option<Duration>,
    timing: &CacheTiming,
) -> Duration {
    let delay = backoff_delay(failures, timing);
    match usable_left {
        Some(left) => delay.min((left / 2).max(timing.backoff_initial / 2)),
        None => delay,
    }
}

async fn refresh_loop(
    source: Arc<dyn CredentialSource>,
    principal_override: Option<Principal>,
    tx: watch::Sender<Snapshot>,
    timing: Arc<CacheTiming>,
    observer: Arc<dyn RefreshObserver>,
) {
    let mut failures: u32 = 0;
    loop {
        tx.send_modify(|s| s.phase = Phase::Fetching);
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = tx.closed() => return,
            outcome = tokio::time::timeout(
                timing.fetch_timeout,
                fetch_once(source.as_ref(), principal_override.as_ref()),
            ) => outcome.unwrap_or_else(|_| Err(CredentialError::transient(format!(
                "{} did not produce a token within {} s",
                source.describe(),
                timing.fetch_timeout.as_secs()
            )))),
        };
        let now = Instant::now();
        let elapsed = now - started;
        observer.attempt_finished(elapsed, outcome.is_ok());
        let next_wake = match outcome {
            Ok(cached) => {
                failures = 0;
                let lifetime = cached.deadline - now;
                let refresh_at = now + refresh_delay(lifetime, timing.refresh_margin);
                tracing::info!(
                    source = %source.describe(),
                    principal = %cached.token.principal(),
                    expires_in_s = lifetime.as_secs(),
                    refresh_in_s = (refresh_at - now).as_secs(),
                    took_ms = elapsed.as_millis() as u64,
                    "fetched a Google access token"
                );
                tx.send_modify(|s| {
                    s.token = Some(Arc::new(cached));
                    s.phase = Phase::Fresh { refresh_at };
                    s.last_error = None;
                    s.refreshes_ok += 1;
                });
                refresh_at
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let usable_left = tx.borrow().token.as_ref().and_then(|t| {
                    let left = t.deadline.saturating_duration_since(now);
                    left.checked_sub(SERVE_FLOOR).filter(|d| !d.is_zero())
                });
                let retry_at = now + retry_delay(failures, usable_left, &timing);
                let serving = tx
                    .borrow()
                    .token
                    .as_ref()
                    .filter(|t| t.usable_at(now))
                    .map(|t| t.seconds_left(now));
                let permanent = !error.is_transient();
                tracing::warn!(
                    error = %error,
                    permanent,
                    failures,
                    retry_in_ms = (retry_at - now).as_millis() as u64,
                    cached_token_left_s = serving,
                    "could not refresh the Google access token"
                );
                tx.send_modify(|s| {
                    s.phase = Phase::Backoff { retry_at };
                    s.last_error = Some(error);
                    s.last_failure_unix = Some(unix_now());
                    s.refreshes_failed += 1;
                });
                retry_at
            }
        };
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep_until(next_wake) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_delay_respects_margin_and_half_life() {
        let margin = Duration::from_secs(300);
        for _ in 0..100 {
            let d = refresh_delay(Duration::from_secs(3600), margin);
            assert!(
                d <= Duration::from_secs(3300) && d >= Duration::from_secs(3135),
                "{d:?}"
            );
            let d = refresh_delay(Duration::from_secs(240), margin);
            assert!(
                d <= Duration::from_secs(120) && d >= Duration::from_secs(114),
                "{d:?}"
            );
        }
    }

    #[test]
    fn retries_come_before_a_cached_token_becomes_unusable() {
        let timing = CacheTiming::default();
        for _ in 0..100 {
            // 8 s of serving left: retry within 4 s even after many failures.
            let d = retry_delay(30, Some(Duration::from_secs(8)), &timing);
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_secs(4),
                "{d:?}"
            );
            // Almost nothing left: never under half the initial backoff.
            let d = retry_delay(30, Some(Duration::from_millis(100)), &timing);
            assert_eq!(d, Duration::from_millis(500));
            // Plenty left: the plain backoff.
            let d = retry_delay(2, Some(Duration::from_secs(3000)), &timing);
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
            // Nothing cached: the plain backoff, capped at 10 s.
            let d = retry_delay(30, None, &timing);
            assert!(
                d >= Duration::from_secs(5) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let timing = CacheTiming::default();
        for _ in 0..100 {
            let d1 = backoff_delay(1, &timing);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
            let d3 = backoff_delay(3, &timing);
            assert!(d3 >= Duration::from_secs(2) && d3 <= Duration::from_secs(4));
            let d30 = backoff_delay(30, &timing);
            assert!(d30 >= Duration::from_secs(5) && d30 <= Duration::from_secs(10));
        }
    }
}
