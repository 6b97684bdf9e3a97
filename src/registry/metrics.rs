//! The registry endpoint's counters, in a registry of their own, rendered after the
//! provider's on the endpoint's `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the upstream latency buckets: Google's registry answers in tens
/// of milliseconds from the same region and hundreds across the internet.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// A [`super::Route`] label, never the raw path.
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: &'static str,
}

#[derive(Debug)]
pub(crate) struct RegistryMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    upstream: Family<UpstreamLabels, Histogram>,
    cache: Family<CacheLabels, Counter>,
}

impl RegistryMetrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("gcp_kafka_auth_schema_registry");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Schema registry requests answered by the local endpoint, by route and status",
            requests.clone(),
        );
        let upstream =
            Family::<UpstreamLabels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request to Google's schema registry to its response head, by route",
            upstream.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "schema_cache_lookups",
            "GET /schemas/ids/N answers looked up in the local cache, by result (hit, miss)",
            cache.clone(),
        );
        Self {
            registry,
            requests,
            upstream,
            cache,
        }
    }

    pub(crate) fn count_request(&self, route: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    pub(crate) fn observe_upstream(&self, route: &'static str, took: Duration) {
        self.upstream
            .get_or_create(&UpstreamLabels { route })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn count_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache.get_or_create(&CacheLabels { result }).inc();
    }

    /// The families as OpenMetrics text without the closing `# EOF`, to follow the
    /// provider's.
    pub(crate) fn render_families(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        if text.ends_with("# EOF\n") {
            text.truncate(text.len() - "# EOF\n".len());
        }
        text
    }
}
