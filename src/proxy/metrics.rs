//! The proxy's counters: plain atomics indexed by API key or outcome, so the per-frame cost
//! is one relaxed `fetch_add` (no lock, no hash lookup). Rendered in OpenMetrics text after
//! the provider's metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use kafka_protocol::messages::ApiKey;

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

    /// Appends the proxy's families to `text` (OpenMetrics, before the final `# EOF`).
    pub fn render_into(&self, text: &mut String) {
        let p = "gcp_kafka_auth_proxy";
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "# HELP {p}_connections Open client connections, by listener (bootstrap or broker node id)."
        );
        let _ = writeln!(text, "# TYPE {p}_connections gauge");
        for (listener, n) in self.open.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(text, "{p}_connections{{listener=\"{listener}\"}} {n}");
        }
        counter(
            text,
            p,
            "connections_accepted",
            "Client connections accepted.",
            &[("", self.connections_total.load(Relaxed))],
        );
        counter(
            text,
            p,
            "bytes_to_broker",
            "Bytes forwarded from clients to brokers.",
            &[("", self.bytes_to_broker.load(Relaxed))],
        );
        counter(
            text,
            p,
            "bytes_to_client",
            "Bytes forwarded from brokers to clients.",
            &[("", self.bytes_to_client.load(Relaxed))],
        );
        let requests: Vec<(String, u64)> = self
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
                (n > 0).then(|| (format!("api_key=\"{label}\""), n))
            })
            .collect();
        let requests: Vec<(&str, u64)> = requests.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        counter(
            text,
            p,
            "requests",
            "Client requests forwarded, by API key.",
            &requests,
        );
        let outcomes = |set: &[AtomicU64; 3]| -> Vec<(String, u64)> {
            OUTCOMES
                .iter()
                .zip(set)
                .map(|(o, n)| (format!("outcome=\"{o}\""), n.load(Relaxed)))
                .collect()
        };
        for (name, help, set) in [
            (
                "authentications",
                "Broker SASL authentications, by outcome.",
                &self.auth,
            ),
            (
                "reauthentications",
                "Broker SASL re-authentications (KIP-368), by outcome.",
                &self.reauth,
            ),
        ] {
            let rows = outcomes(set);
            let rows: Vec<(&str, u64)> = rows.iter().map(|(l, n)| (l.as_str(), *n)).collect();
            counter(text, p, name, help, &rows);
        }
        let rows: Vec<(String, u64)> = TABLE
            .iter()
            .map(|row| row.label)
            .chain(["other"])
            .zip(&self.rewrites)
            .map(|(k, n)| (format!("api=\"{k}\""), n.load(Relaxed)))
            .collect();
        let rows: Vec<(&str, u64)> = rows.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        counter(
            text,
            p,
            "responses_rewritten",
            "Broker responses decoded and rewritten, by API.",
            &rows,
        );
        counter(
            text,
            p,
            "addresses_rewritten",
            "Broker addresses replaced by local ones.",
            &[("", self.addresses_rewritten.load(Relaxed))],
        );
        let rows: Vec<(String, u64)> = MISTAKES
            .iter()
            .zip(&self.mistakes)
            .map(|(k, n)| (format!("reason=\"{k}\""), n.load(Relaxed)))
            .collect();
        let rows: Vec<(&str, u64)> = rows.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        counter(
            text,
            p,
            "client_errors",
            "Client connections closed for a client mistake, by reason.",
            &rows,
        );
    }
}

fn counter(text: &mut String, prefix: &str, name: &str, help: &str, rows: &[(&str, u64)]) {
    let _ = writeln!(text, "# HELP {prefix}_{name} {help}");
    let _ = writeln!(text, "# TYPE {prefix}_{name} counter");
    for (labels, n) in rows {
        if labels.is_empty() {
            let _ = writeln!(text, "{prefix}_{name}_total {n}");
        } else {
            let _ = writeln!(text, "{prefix}_{name}_total{{{labels}}} {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rewritten_key_is_counted_under_its_label() {
        let m = ProxyMetrics::default();
        for row in TABLE {
            m.rewrite(row.key, 0);
        }
        let mut text = String::new();
        m.render_into(&mut text);
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
        let mut text = String::new();
        m.render_into(&mut text);
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
}
