//! Prometheus metrics for the endpoint and the refresh task, served on `/metrics`.
//!
//! One [`Metrics`] per provider, with its own registry (no process-global state, so two
//! providers in one program, or tests in one process, never mix counts). Three sources feed it:
//!
//! - the endpoint, through `Metrics::count_request`: requests by path class and status;
//! - the refresh task, through `RefreshMetrics` (the cache's `RefreshObserver`): how long each
//!   upstream attempt took;
//! - the cache snapshot, read at scrape time by a collector: refreshes by result, whether a
//!   token is ready, seconds until it expires, time of the last failure. Reading the snapshot
//!   at scrape time keeps one source of truth (the cache) and makes "seconds left" exact.
//!
//! The exposition is OpenMetrics text, which Prometheus and the OpenTelemetry collector scrape.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::cache::{RefreshObserver, TokenCache};

/// `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every metric name.
const PREFIX: &str = "gcp_kafka_auth";

/// Upper bounds (seconds) of the upstream latency buckets: a metadata server answers in
/// milliseconds, a key exchange across the internet in tens to hundreds, a struggling Google
/// in seconds, and the cache gives up on an attempt after 30 s.
const UPSTREAM_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Labels of `gcp_kafka_auth_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `token`, `healthz`, `readyz` or `metrics`: never the raw path, which clients choose
    /// freely and would make the label set unbounded.
    path: &'static str,
    status: u16,
}

/// Labels of the refresh metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Metrics of one provider and its endpoint: the handles its families are registered from.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    upstream: Family<ResultLabels, Histogram>,
    cache: TokenCache,
}

/// The refresh task's handle on the metrics: records each upstream attempt.
#[derive(Clone, Debug)]
pub(crate) struct RefreshMetrics {
    upstream: Family<ResultLabels, Histogram>,
}

impl RefreshMetrics {
    pub(crate) fn new() -> Self {
        Self {
            upstream: Family::new_with_constructor(|| Histogram::new(UPSTREAM_BUCKETS)),
        }
    }
}

impl RefreshObserver for RefreshMetrics {
    /// Records one refresh attempt: how long it took and whether it produced a token.
    fn attempt_finished(&self, took: Duration, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.upstream
            .get_or_create(&ResultLabels { result })
            .observe(took.as_secs_f64());
    }
}

impl Metrics {
    /// The metrics of `cache`, whose refresh task records into `refresh`.
    pub(crate) fn new(cache: TokenCache, refresh: &RefreshMetrics) -> Self {
        Self {
            requests: Family::default(),
            upstream: refresh.upstream.clone(),
            cache,
        }
    }

    /// Registers the provider's families under `gcp_kafka_auth_` in `registry`, beside what
    /// else a server exposes (the proxy's, the schema registry's), so one encoding writes
    /// them all.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix(PREFIX);
        registry.register(
            "build",
            "Version of gcp-kafka-auth-handler",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by path class (token, healthz, readyz, metrics) and status",
            self.requests.clone(),
        );
        registry.register(
            "upstream_fetch_duration_seconds",
            "Duration of each attempt to get a token from Google (credential lookup, token and principal calls), by result",
            self.upstream.clone(),
        );
        registry.register_collector(Box::new(CacheCollector {
            cache: self.cache.clone(),
        }));
    }

    /// The exposition, OpenMetrics text ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        encode(&registry)
    }

    /// Counts one answered request. `path` is a path class the endpoint chose from a fixed
    /// set (`token`, `healthz`, `readyz`, `metrics`), never the raw path, which clients choose
    /// freely and would make the label set unbounded.
    pub(crate) fn count_request(&self, path: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { path, status })
            .inc();
    }
}

/// `registry` as OpenMetrics text ending in `# EOF`.
pub(crate) fn encode(registry: &Registry) -> String {
    let mut text = String::with_capacity(4096);
    // Writing to a String cannot fail; an encoder error would be a bug in a label set.
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        text.clear();
        let _ = writeln!(text, "# EOF");
    }
    text
}

/// Reads the cache snapshot at scrape time.
#[derive(Debug)]
struct CacheCollector {
    cache: TokenCache,
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.cache.snapshot();
        let now = Instant::now();
        let ready = self.cache.is_ready();

        let mut refreshes = encoder.encode_descriptor(
            "token_refreshes",
            "Attempts to get a token from Google, by result.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        ConstCounter::new(snapshot.refreshes_ok)
            .encode(refreshes.encode_family(&ResultLabels { result: "ok" })?)?;
        ConstCounter::new(snapshot.refreshes_failed)
            .encode(refreshes.encode_family(&ResultLabels { result: "error" })?)?;

        let gauge = |value: i64| ConstGauge::new(value);
        gauge(i64::from(ready)).encode(encoder.encode_descriptor(
            "token_ready",
            "1 while a token can be served at once, else 0.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?)?;
        let left = snapshot
            .token
            .as_ref()
            .map_or(0, |t| t.seconds_left(now) as i64);
        gauge(left).encode(encoder.encode_descriptor(
            "token_expires_in_seconds",
            "Seconds until the cached token expires (0 without a token).",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?)?;
        let last_failure = snapshot.last_failure_unix.unwrap_or(0) as i64;
        gauge(last_failure).encode(encoder.encode_descriptor(
            "last_refresh_failure_timestamp_seconds",
            "Unix time of the last failed attempt to get a token (0 if none failed).",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?)?;
        Ok(())
    }
}
