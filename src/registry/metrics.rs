//! The registry endpoint's counters, registered beside the provider's in the one registry the
//! endpoint's `/metrics` encodes.

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
    requests: Family<RequestLabels, Counter>,
    upstream: Family<UpstreamLabels, Histogram>,
    cache: Family<CacheLabels, Counter>,
}

impl RegistryMetrics {
    pub(crate) fn new() -> Self {
        Self {
            requests: Family::default(),
            upstream: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            cache: Family::default(),
        }
    }

    /// Registers the families under `gcp_kafka_auth_schema_registry_` in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("gcp_kafka_auth_schema_registry");
        registry.register(
            "requests",
            "Schema registry requests answered by the local endpoint, by route and status",
            self.requests.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request to Google's schema registry to its response head, by route",
            self.upstream.clone(),
        );
        registry.register(
            "schema_cache_lookups",
            "GET /schemas/ids/N answers looked up in the local cache, by result (hit, miss)",
            self.cache.clone(),
        );
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
}
