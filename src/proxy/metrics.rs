//! The proxy's counters: plain atomics indexed by API key or outcome, so the per-frame cost
//! is one relaxed `fetch_add` (no lock, no hash lookup). Read at scrape time into [`Family`]s,
//! which [`ProxiesCollector`] encodes for one or several proxies in the health port's registry,
//! beside the provider's metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use kafka_protocol::messages::ApiKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::versions::TABLE;

/// API keys below this get their own counter; the rest share the last one.
const KEYS: usize = 128;

/// Outcomes of an upstream authentication.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AuthOutcome {
    Ok = 0,
    Refused = 1,
    Failed = 2,
}

/// What a client did wrong (each closes its connection).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClientMistake {
    TlsOnPlaintext = 0,
    Http = 1,
    Sasl = 2,
    Framing = 3,
    /// A key hidden from ApiVersions (answered with an error, the connection kept).
    Hidden = 4,
    /// An unknown key or a version never offered (the connection closed).
    NotOffered = 5,
}

const MISTAKES: [&str; 6] = [
    "tls_on_plaintext",
    "http",
    "sasl",
    "framing",
    "hidden_api",
    "api_not_offered",
];
const OUTCOMES: [&str; 3] = ["ok", "refused", "failed"];
/// Rewritten responses are counted by their row in [`TABLE`] (its label names the series);
/// the last counter is for a key without a row, which `rewrite` never returns.
const REWRITES: usize = TABLE.len();

/// The proxy's metrics.
pub(crate) struct ProxyMetrics {
    requests: [AtomicU64; KEYS],
    pub bytes_to_broker: AtomicU64,
    pub bytes_to_client: AtomicU64,
    auth: [AtomicU64; 3],
    reauth: [AtomicU64; 3],
    mistakes: [AtomicU64; MISTAKES.len()],
    /// By position in [`TABLE`]; the last counts keys missing there.
    rewrites: [AtomicU64; REWRITES + 1],
    pub addresses_rewritten: AtomicU64,
    pub connections_total: AtomicU64,
    /// Open client connections by listener ("bootstrap" or the node id); changed on connect
    /// and close only.
    open: Mutex<BTreeMap<String, i64>>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_to_broker: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            auth: Default::default(),
            reauth: Default::default(),
            mistakes: Default::default(),
            rewrites: Default::default(),
            addresses_rewritten: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }
}

impl ProxyMetrics {
    pub fn request(&self, api_key: i16) {
        let slot = usize::try_from(api_key).map_or(KEYS - 1, |k| k.min(KEYS - 1));
        self.requests[slot].fetch_add(1, Relaxed);
    }

    pub fn auth(&self, reauth: bool, outcome: AuthOutcome) {
        let set = if reauth { &self.reauth } else { &self.auth };
        set[outcome as usize].fetch_add(1, Relaxed);
    }

    pub fn mistake(&self, what: ClientMistake) {
        self.mistakes[what as usize].fetch_add(1, Relaxed);
    }

    pub fn rewrite(&self, key: ApiKey, addresses: usize) {
        let slot = TABLE
            .iter()
            .position(|row| row.key == key)
            .unwrap_or(REWRITES);
        self.rewrites[slot].fetch_add(1, Relaxed);
        self.addresses_rewritten
            .fetch_add(addresses as u64, Relaxed);
    }

    pub fn opened(&self, listener: &str) {
        self.connections_total.fetch_add(1, Relaxed);
        *self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(listener.to_owned())
            .or_default() += 1;
    }

    pub fn closed(&self, listener: &str) {
        if let Some(n) = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(listener)
        {
            *n -= 1;
        }
    }

    /// The proxy's families as they are now, `buffered_bytes` (held for rewriting) last.
    pub fn families(&self, buffered_bytes: usize) -> Vec<Family> {
        let one = |value: &AtomicU64| vec![(vec![], Value::Count(value.load(Relaxed)))];
        let labelled = |key: &'static str, rows: Vec<(String, u64)>| -> Samples {
            rows.into_iter()
                .map(|(label, n)| (vec![(key, label)], Value::Count(n)))
                .collect()
        };
        let outcomes = |set: &[AtomicU64; 3]| {
            let rows = OUTCOMES
                .iter()
                .zip(set)
                .map(|(o, n)| ((*o).to_owned(), n.load(Relaxed)))
                .collect();
            labelled("outcome", rows)
        };
        let requests = self
            .requests
            .iter()
            .enumerate()
            .filter_map(|(key, n)| {
                let n = n.load(Relaxed);
                let label = if key == KEYS - 1 {
                    "other".to_owned()
                } else {
                    key.to_string()
                };
                (n > 0).then_some((label, n))
            })
            .collect();
        let rewrites = TABLE
            .iter()
            .map(|row| row.label)
            .chain(["other"])
            .zip(&self.rewrites)
            .map(|(k, n)| (k.to_owned(), n.load(Relaxed)))
            .collect();
        let mistakes = MISTAKES
            .iter()
            .zip(&self.mistakes)
            .map(|(k, n)| ((*k).to_owned(), n.load(Relaxed)))
            .collect();
        let open = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(listener, n)| (vec![("listener", listener.clone())], Value::Level(*n)))
            .collect();
        vec![
            Family::gauge(
                "connections",
                "Open client connections, by listener (bootstrap or broker node id).",
                open,
            ),
            Family::counter(
                "connections_accepted",
                "Client connections accepted.",
                one(&self.connections_total),
            ),
            Family::counter(
                "bytes_to_broker",
                "Bytes forwarded from clients to brokers.",
                one(&self.bytes_to_broker),
            ),
            Family::counter(
                "bytes_to_client",
                "Bytes forwarded from brokers to clients.",
                one(&self.bytes_to_client),
            ),
            Family::counter(
                "requests",
                "Client requests forwarded, by API key.",
                labelled("api_key", requests),
            ),
            Family::counter(
                "authentications",
                "Broker SASL authentications, by outcome.",
                outcomes(&self.auth),
            ),
            Family::counter(
                "reauthentications",
                "Broker SASL re-authentications (KIP-368), by outcome.",
                outcomes(&self.reauth),
            ),
            Family::counter(
                "responses_rewritten",
                "Broker responses decoded and rewritten, by API.",
                labelled("api", rewrites),
            ),
            Family::counter(
                "addresses_rewritten",
                "Broker addresses replaced by local ones.",
                one(&self.addresses_rewritten),
            ),
            Family::counter(
                "client_errors",
                "Client connections closed for a client mistake, by reason.",
                labelled("reason", mistakes),
            ),
            Family::gauge(
                "buffered_bytes",
                "Bytes charged against the buffer budget (ProxyBuilder::with_max_buffered_bytes) by responses held whole for rewriting.",
                vec![(
                    vec![],
                    Value::Level(i64::try_from(buffered_bytes).unwrap_or(i64::MAX)),
                )],
            ),
        ]
    }
}

/// A sample's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value {
    Count(u64),
    Level(i64),
}

type Samples = Vec<(Vec<(&'static str, String)>, Value)>;

/// One metric family's samples, read at scrape time.
#[derive(Debug)]
pub(crate) struct Family {
    /// Without the `gcp_kafka_auth_proxy_` prefix the registry adds.
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Samples,
}

impl Family {
    fn counter(name: &'static str, help: &'static str, samples: Samples) -> Self {
        Self {
            name,
            help,
            kind: MetricType::Counter,
            samples,
        }
    }

    fn gauge(name: &'static str, help: &'static str, samples: Samples) -> Self {
        Self {
            name,
            help,
            kind: MetricType::Gauge,
            samples,
        }
    }
}

/// Several proxies' families as one collector: each family once, with every proxy's samples,
/// labelled `cluster="NAME"` first where a name is given (OpenMetrics allows a family's
/// metadata only once). Every proxy lists the same families in the same order.
#[derive(Debug)]
pub(crate) struct ProxiesCollector(pub Vec<(Option<String>, Vec<Family>)>);

impl Collector for ProxiesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((_, first)) = self.0.first() else {
            return Ok(());
        };
        for (i, family) in first.iter().enumerate() {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for (cluster, families) in &self.0 {
                for (labels, value) in &families[i].samples {
                    let labels: Vec<(&str, &str)> = cluster
                        .as_deref()
                        .map(|c| ("cluster", c))
                        .into_iter()
                        .chain(labels.iter().map(|(k, v)| (*k, v.as_str())))
                        .collect();
                    let sample = metric.encode_family(&labels)?;
                    match *value {
                        Value::Count(n) => ConstCounter::new(n).encode(sample)?,
                        Value::Level(n) => ConstGauge::new(n).encode(sample)?,
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One proxy's families as the health port encodes them.
    fn render(m: &ProxyMetrics) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry
            .sub_registry_with_prefix("gcp_kafka_auth_proxy")
            .register_collector(Box::new(ProxiesCollector(vec![(None, m.families(0))])));
        crate::metrics::encode(&registry)
    }

    #[test]
    fn every_rewritten_key_is_counted_under_its_label() {
        let m = ProxyMetrics::default();
        for row in TABLE {
            m.rewrite(row.key, 0);
        }
        let text = render(&m);
        for row in TABLE {
            let line = format!(
                "gcp_kafka_auth_proxy_responses_rewritten_total{{api=\"{}\"}} 1",
                row.label
            );
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l == "gcp_kafka_auth_proxy_responses_rewritten_total{api=\"other\"} 0")
        );
    }

    #[test]
    fn renders_exact_families() {
        let m = ProxyMetrics::default();
        m.request(3);
        m.request(3);
        m.request(10_000);
        m.auth(true, AuthOutcome::Ok);
        m.opened("bootstrap");
        m.opened("2");
        m.closed("bootstrap");
        m.rewrite(ApiKey::Metadata, 3);
        let text = render(&m);
        for line in [
            "gcp_kafka_auth_proxy_connections{listener=\"2\"} 1",
            "gcp_kafka_auth_proxy_connections{listener=\"bootstrap\"} 0",
            "gcp_kafka_auth_proxy_connections_accepted_total 2",
            "gcp_kafka_auth_proxy_requests_total{api_key=\"3\"} 2",
            "gcp_kafka_auth_proxy_requests_total{api_key=\"other\"} 1",
            "gcp_kafka_auth_proxy_reauthentications_total{outcome=\"ok\"} 1",
            "gcp_kafka_auth_proxy_authentications_total{outcome=\"ok\"} 0",
            "gcp_kafka_auth_proxy_responses_rewritten_total{api=\"metadata\"} 1",
            "gcp_kafka_auth_proxy_addresses_rewritten_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }

    /// Several proxies: each family's metadata once, then every proxy's samples, labelled
    /// `cluster` first (as the `proxy` command's hand merge wrote them before).
    #[test]
    fn several_proxies_share_each_family_and_label_their_samples_by_cluster() {
        let a = ProxyMetrics::default();
        a.opened("bootstrap");
        a.request(3);
        let b = ProxyMetrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        registry
            .sub_registry_with_prefix("gcp_kafka_auth_proxy")
            .register_collector(Box::new(ProxiesCollector(vec![
                (Some("c/a".to_owned()), a.families(5)),
                (Some("c/b".to_owned()), b.families(0)),
            ])));
        let text = crate::metrics::encode(&registry);
        for block in [
            "# HELP gcp_kafka_auth_proxy_connections Open client connections, by listener (bootstrap or broker node id).
# TYPE gcp_kafka_auth_proxy_connections gauge
gcp_kafka_auth_proxy_connections{cluster=\"c/a\",listener=\"bootstrap\"} 1
# HELP gcp_kafka_auth_proxy_connections_accepted Client connections accepted.
# TYPE gcp_kafka_auth_proxy_connections_accepted counter
gcp_kafka_auth_proxy_connections_accepted_total{cluster=\"c/a\"} 1
gcp_kafka_auth_proxy_connections_accepted_total{cluster=\"c/b\"} 0
",
            "# HELP gcp_kafka_auth_proxy_requests Client requests forwarded, by API key.
# TYPE gcp_kafka_auth_proxy_requests counter
gcp_kafka_auth_proxy_requests_total{cluster=\"c/a\",api_key=\"3\"} 1
# HELP gcp_kafka_auth_proxy_authentications ",
            "# HELP gcp_kafka_auth_proxy_buffered_bytes Bytes charged against the buffer budget (ProxyBuilder::with_max_buffered_bytes) by responses held whole for rewriting.
# TYPE gcp_kafka_auth_proxy_buffered_bytes gauge
gcp_kafka_auth_proxy_buffered_bytes{cluster=\"c/a\"} 5
gcp_kafka_auth_proxy_buffered_bytes{cluster=\"c/b\"} 0
# EOF
",
        ] {
            assert!(text.contains(block), "missing\n{block}in\n{text}");
        }
        assert!(
            text.starts_with("# HELP gcp_kafka_auth_proxy_connections "),
            "{text}"
        );
        assert_eq!(text.matches("# HELP ").count(), 11, "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }
}
