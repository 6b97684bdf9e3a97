//! Health: whether the proxy is ready ([`Readiness`]: the bootstrap probe's outcome and what
//! clients' broker connections report), the probe loop's timing, and the health port
//! ([`HealthPort`]: `/startup`, `/readiness`, `/readyz`, `/liveness`, `/healthz`, `/metrics`)
//! of one or several proxies, each seen through a narrow [`HealthSource`]. It knows neither
//! sockets nor the proxy's state: the probe itself is handed in.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use prometheus_client::registry::Registry;

use super::metrics::{Family, ProxiesCollector};
use crate::KafkaTokenProvider;

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

/// What the health port reads of one proxy.
pub(crate) trait HealthSource: Send + Sync + 'static {
    /// Ready, with what was checked; or why not.
    fn readiness(&self) -> Result<String, NotReady>;
    /// The proxy's own metric families (not the provider's), as they are now.
    fn families(&self) -> Vec<Family>;
}

/// The health port of the proxies one provider serves: `/startup`, `/readiness` (`/readyz`),
/// `/liveness` (`/healthz`) and `/metrics`. [`Proxy::router`](super::Proxy::router) serves it
/// for one proxy; the `proxy` command for all of its clusters, with the provider set once
/// built and the proxies once their bootstrap addresses are looked up (until then it is not
/// ready, and `/metrics` has what is known).
#[derive(Clone, Default)]
pub struct HealthPort {
    inner: Arc<PortState>,
}

#[derive(Default)]
struct PortState {
    provider: OnceLock<KafkaTokenProvider>,
    proxies: OnceLock<Vec<(String, Arc<dyn HealthSource>)>>,
    /// Whether every proxy was ready once (the startup probe's latch).
    started: AtomicBool,
    /// How a [`NotReady`] reads on `/readyz`: its `Display` (library terms) unless the
    /// program serving the port names its own settings (the binary names its flags).
    wording: OnceLock<fn(&NotReady) -> String>,
}

impl std::fmt::Debug for HealthPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthPort")
            .field("proxies", &self.inner.proxies.get().map(Vec::len))
            .finish_non_exhaustive()
    }
}

impl HealthPort {
    /// A port that knows no provider and no proxy yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The provider whose metrics `/metrics` shows; only the first call counts.
    pub fn set_provider(&self, provider: KafkaTokenProvider) {
        let _ = self.inner.provider.set(provider);
    }

    /// The proxies served, each with the label its readiness and (when there are several)
    /// its metrics' `cluster` label carry; only the first call counts.
    pub fn set_proxies(&self, proxies: impl IntoIterator<Item = (String, super::ProxyStatus)>) {
        let proxies = proxies
            .into_iter()
            .map(|(label, status)| (label, Arc::new(status) as Arc<dyn HealthSource>))
            .collect();
        let _ = self.inner.proxies.set(proxies);
    }

    /// How `/readyz` words a proxy that is not ready (default: [`NotReady`]'s `Display`, in
    /// library terms); only the first call counts.
    pub fn set_not_ready_wording(&self, wording: fn(&NotReady) -> String) {
        let _ = self.inner.wording.set(wording);
    }

    /// Ready when every proxy is (with what each checked), or why not.
    pub fn readiness(&self) -> Result<String, String> {
        let Some(proxies) = self.inner.proxies.get() else {
            return Err("looking up the clusters' bootstrap addresses".to_owned());
        };
        let word = |why: NotReady| match self.inner.wording.get() {
            Some(wording) => wording(&why),
            None => why.to_string(),
        };
        let mut details = Vec::new();
        for (label, status) in proxies {
            match status.readiness().map_err(word) {
                Ok(detail) if proxies.len() == 1 => details.push(detail),
                Ok(detail) => details.push(format!("{label}: {detail}")),
                Err(why) if proxies.len() == 1 => return Err(why),
                Err(why) => return Err(format!("{label}: {why}")),
            }
        }
        self.inner.started.store(true, Ordering::Relaxed);
        Ok(details.join("; "))
    }

    /// `/metrics`: the provider's families and the proxies' in one registry, encoded once
    /// (OpenMetrics text ending in `# EOF`).
    pub fn metrics_text(&self) -> String {
        let mut registry = Registry::default();
        if let Some(provider) = self.inner.provider.get() {
            provider.metrics().register(&mut registry);
        }
        if let Some(proxies) = self.inner.proxies.get() {
            let many = proxies.len() > 1;
            let families = proxies
                .iter()
                .map(|(label, status)| (many.then(|| label.clone()), status.families()))
                .collect();
            registry
                .sub_registry_with_prefix("gcp_kafka_auth_proxy")
                .register_collector(Box::new(ProxiesCollector(families)));
        }
        crate::metrics::encode(&registry)
    }

    /// The routes, without the token endpoint's `Host` and browser checks: wrap it in
    /// [`crate::endpoint::protect`] with the [`EndpointConfig`](crate::endpoint::EndpointConfig)
    /// its address calls for.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/startup", get(startup))
            .route("/readiness", get(ready))
            .route("/readyz", get(ready))
            .route("/liveness", get(alive))
            .route("/healthz", get(alive))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn alive() -> Response {
    json(StatusCode::OK, serde_json::json!({"status": "ok"}))
}

async fn ready(State(port): State<HealthPort>) -> Response {
    match port.readiness() {
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

/// 200 from the first time every proxy was ready on: a Kubernetes startup probe, which must
/// not fail again when a broker hiccups later (readiness covers that).
async fn startup(State(port): State<HealthPort>) -> Response {
    if port.inner.started.load(Ordering::Relaxed) {
        return json(StatusCode::OK, serde_json::json!({"status": "started"}));
    }
    match port.readiness() {
        Ok(detail) => json(
            StatusCode::OK,
            serde_json::json!({"status": "started", "detail": detail}),
        ),
        Err(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "starting", "reason": reason}),
        ),
    }
}

async fn metrics(State(port): State<HealthPort>) -> Response {
    let mut response = (StatusCode::OK, port.metrics_text()).into_response();
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
            super::super::errors::MetadataError::Exchange {
                host: "b".to_owned(),
                port: 9092,
                error: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "eof",
                )),
            },
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
                    Err(ProbeError::NoBrokers)
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
