//! Health: whether the proxy is ready ([`Readiness`]: the bootstrap probe's outcome and what
//! clients' broker connections report), the probe loop's timing, and `/healthz`, `/readyz`,
//! `/metrics` over a narrow [`HealthSource`]. It knows neither sockets nor the proxy's state:
//! the probe itself is handed in.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};

use super::errors::{NotReady, ProbeError};
use super::wire::UpstreamError;

/// The start-up probe's last outcome.
#[derive(Debug, Clone)]
enum Probe {
    Pending,
    Ok { brokers: usize },
    Failed(NotReady),
}

/// Whether the bootstrap Metadata probe (and, since, the clients' broker connections)
/// succeeded.
#[derive(Debug)]
pub(crate) struct Readiness {
    probe: Mutex<Probe>,
    /// Brokers in the last successful Metadata probe.
    last_brokers: AtomicUsize,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            probe: Mutex::new(Probe::Pending),
            last_brokers: AtomicUsize::new(0),
        }
    }
}

impl Readiness {
    fn lock(&self) -> std::sync::MutexGuard<'_, Probe> {
        self.probe.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ready, with what was checked; or why not.
    pub fn status(&self) -> Result<String, NotReady> {
        match &*self.lock() {
            Probe::Ok { brokers } => Ok(format!(
                "bootstrap Metadata round trip succeeded; {brokers} brokers"
            )),
            Probe::Pending => Err(NotReady::ProbePending),
            Probe::Failed(why) => Err(why.clone()),
        }
    }

    /// A probe's Metadata named `brokers` brokers (before their listeners are bound).
    pub fn brokers_seen(&self, brokers: usize) {
        self.last_brokers.store(brokers, Ordering::Release);
    }

    fn probe_succeeded(&self, brokers: usize) {
        let first = !matches!(*self.lock(), Probe::Ok { .. });
        if first {
            tracing::info!(brokers, "ready: bootstrap Metadata round trip succeeded");
        }
        *self.lock() = Probe::Ok { brokers };
    }

    fn probe_failed(&self, why: ProbeError) {
        tracing::error!("not ready: {why}");
        *self.lock() = Probe::Failed(NotReady::Probe(why));
    }

    /// A client's broker connection failed to open: not ready, at once (readiness reflects
    /// what clients get, not only the periodic probe).
    pub fn upstream_failed(&self, why: UpstreamError) {
        let mut readiness = self.lock();
        let why = NotReady::ClientConnection(why);
        if !matches!(*readiness, Probe::Failed(_)) {
            tracing::error!("not ready: {why}");
        }
        *readiness = Probe::Failed(why);
    }

    /// A client's broker connection opened: ready again at once if the last failure was a
    /// client's (and the probe has found brokers before).
    pub fn upstream_succeeded(&self) {
        let brokers = self.last_brokers.load(Ordering::Acquire);
        let mut readiness = self.lock();
        if matches!(*readiness, Probe::Failed(_)) && brokers > 0 {
            tracing::info!(brokers, "ready again: a client's broker connection opened");
            *readiness = Probe::Ok { brokers };
        }
    }
}

/// Runs `probe` until it succeeds (backing off from 1 s to 30 s), then again every
/// `interval`, recording each outcome in `readiness`. `probe` returns the broker count.
pub(crate) async fn probe_loop<F, Fut>(readiness: &Readiness, interval: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, ProbeError>>,
{
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = match probe().await {
            Ok(brokers) => {
                readiness.probe_succeeded(brokers);
                backoff = Duration::from_secs(1);
                interval
            }
            Err(why) => {
                readiness.probe_failed(why);
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// What the health routes read.
pub(crate) trait HealthSource: Send + Sync + 'static {
    /// Ready, with what was checked; or why not.
    fn readiness(&self) -> Result<String, String>;
    /// The whole OpenMetrics text, `# EOF` included.
    fn metrics_text(&self) -> String;
}

/// `/healthz`, `/readyz` and `/metrics`, behind the token endpoint's checks: loopback
/// `Host`s only, browsers refused, `nosniff`.
pub(crate) fn router<S: HealthSource>(source: Arc<S>) -> Router {
    let router = Router::new()
        .route(
            "/healthz",
            get(|| async { json(StatusCode::OK, serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics_text::<S>))
        .with_state(source);
    crate::endpoint::protect(router, crate::endpoint::EndpointConfig::default())
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn readyz<S: HealthSource>(State(source): State<Arc<S>>) -> Response {
    match source.readiness() {
        Ok(detail) => json(
            StatusCode::OK,
            serde_json::json!({"status": "ready", "detail": detail}),
        ),
        Err(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "not ready", "reason": reason}),
        ),
    }
}

async fn metrics_text<S: HealthSource>(State(source): State<Arc<S>>) -> Response {
    let mut response = (StatusCode::OK, source.metrics_text()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_probe_and_the_clients_broker_connections() {
        let r = Readiness::default();
        let status = |r: &Readiness| r.status().map_err(|e| e.to_string());
        let failed = |detail: &str| UpstreamError::Protocol {
            host: "b".to_owned(),
            detail: detail.to_owned(),
        };
        assert_eq!(
            status(&r),
            Err("the bootstrap Metadata round trip has not finished yet".to_owned())
        );
        // A client's success before any probe found brokers does not make it ready.
        r.upstream_failed(failed("refused"));
        r.upstream_succeeded();
        assert_eq!(
            status(&r),
            Err(
                "a client's broker connection failed: broker b broke the protocol: refused"
                    .to_owned()
            )
        );
        r.brokers_seen(3);
        r.probe_succeeded(3);
        assert_eq!(
            status(&r),
            Ok("bootstrap Metadata round trip succeeded; 3 brokers".to_owned())
        );
        r.upstream_failed(failed("timed out"));
        assert!(r.status().is_err());
        r.upstream_succeeded();
        assert_eq!(
            status(&r),
            Ok("bootstrap Metadata round trip succeeded; 3 brokers".to_owned())
        );
        r.probe_failed(ProbeError::Metadata(
            "bootstrap server b:9092: Metadata failed: eof".to_owned(),
        ));
        assert_eq!(
            status(&r),
            Err("bootstrap server b:9092: Metadata failed: eof".to_owned())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_probe_backs_off_from_one_second_until_it_succeeds_then_waits_the_interval() {
        let r = Readiness::default();
        let started = tokio::time::Instant::now();
        let calls = Mutex::new(Vec::new());
        let looping = probe_loop(&r, Duration::from_secs(60), || {
            let mut calls = calls.lock().unwrap();
            calls.push(started.elapsed().as_secs());
            let n = calls.len();
            async move {
                if n <= 3 {
                    Err(ProbeError::Metadata(format!("try {n}")))
                } else {
                    Ok(2)
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(100), looping).await;
        // Fails at 0, 1, 3; succeeds at 7; then every 60 s.
        assert_eq!(*calls.lock().unwrap(), [0, 1, 3, 7, 67]);
        assert!(r.status().is_ok());
    }
}
