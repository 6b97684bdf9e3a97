//! [`ProxyBuilder`]: the proxy's configuration, checked, and the state it starts with.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::connection::ConnectionContext;
use super::health::Readiness;
use super::{
    DEFAULT_BROKER_PORT_BASE, Limits, Proxy, SaslMechanism, dial, dial_gate, frame, limits,
    log_limit, metrics, run, upstream,
};
use crate::KafkaTokenProvider;

/// The smallest connection buffer: a request header with a client id must fit.
const MIN_CONNECTION_BUFFER: usize = 4096;

/// Configures a [`Proxy`].
#[derive(Debug)]
pub struct ProxyBuilder {
    provider: KafkaTokenProvider,
    bootstrap: Vec<String>,
    broker_port_base: u16,
    advertised_host: String,
    upstream_tls: bool,
    ca_pem: Option<(String, Vec<u8>)>,
    sasl: SaslMechanism,
    resolve: HashMap<String, IpAddr>,
    forward: Option<dial::ForwardProxy>,
    limits: Limits,
    max_frame_bytes: usize,
    connect_timeout: Duration,
    drain_timeout: Duration,
    probe_interval: Duration,
}

/// Why a [`Proxy`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyBuildError {
    /// No bootstrap server.
    #[error(
        "no bootstrap server: pass the cluster's bootstrapAddress to ProxyBuilder::with_bootstrap_servers, e.g. bootstrap.CLUSTER.REGION.managedkafka.PROJECT.cloud.goog:9092"
    )]
    NoBootstrap,
    /// A bootstrap server is not `HOST:PORT`.
    #[error(
        "bootstrap server `{0}` is not HOST:PORT (write e.g. bootstrap.c.r.managedkafka.p.cloud.goog:9092)"
    )]
    BadBootstrap(String),
    /// The CA file cannot be used.
    #[error("upstream CA file {path} (ProxyBuilder::with_upstream_ca_file): {detail}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// No root certificates at all.
    #[error(
        "no system root certificates found to verify the brokers ({0}); install the ca-certificates package or give the brokers' CA with ProxyBuilder::with_upstream_ca_file"
    )]
    NoRoots(String),
    /// A TLS configuration error.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The advertised host is unusable.
    #[error("advertised host `{0}` (ProxyBuilder::with_advertised_host): {1}")]
    AdvertisedHost(String, &'static str),
}

impl ProxyBuilder {
    /// Bootstrap servers, `HOST:PORT` each; an entry may be a comma-separated list, as in
    /// `bootstrap.servers`. Tried in order until one connects and authenticates.
    pub fn with_bootstrap_servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for entry in servers {
            self.bootstrap.extend(
                entry
                    .as_ref()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        self
    }

    /// Node `N` listens on `base + N` (default 9093).
    pub fn with_broker_port_base(mut self, base: u16) -> Self {
        self.broker_port_base = base;
        self
    }

    /// The host clients are told brokers are at (default `127.0.0.1`; never `0.0.0.0`).
    pub fn with_advertised_host(mut self, host: impl Into<String>) -> Self {
        self.advertised_host = host.into();
        self
    }

    /// TLS to the brokers (default on). Off only for local test brokers.
    pub fn with_upstream_tls(mut self, enabled: bool) -> Self {
        self.upstream_tls = enabled;
        self
    }

    /// Verify brokers against the CA certificates in this PEM file instead of the system's.
    pub fn with_upstream_ca_file(
        mut self,
        path: impl AsRef<Path>,
    ) -> Result<Self, ProxyBuildError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| ProxyBuildError::CaFile {
            path: path.display().to_string(),
            detail: format!("cannot read it: {e}"),
        })?;
        self.ca_pem = Some((path.display().to_string(), pem));
        Ok(self)
    }

    /// Verify brokers against the CA certificates in this PEM text.
    pub fn with_upstream_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(("(PEM given)".to_owned(), pem.into()));
        self
    }

    /// The SASL mechanism towards the brokers (default OAUTHBEARER).
    pub fn with_sasl(mut self, sasl: SaslMechanism) -> Self {
        self.sasl = sasl;
        self
    }

    /// Dial `ip` for broker host `host`; SNI and certificate verification still use `host`.
    pub fn with_resolve(mut self, host: impl Into<String>, ip: IpAddr) -> Self {
        self.resolve.insert(host.into(), ip);
        self
    }

    /// Dial brokers through this SOCKS5 or HTTP CONNECT proxy (see [`dial`]).
    pub fn with_forward_proxy(mut self, forward: dial::ForwardProxy) -> Self {
        self.forward = Some(forward);
        self
    }

    /// Client connections served at once over all listeners (default 1024). At the limit
    /// the connection idle longest (nothing in flight) is closed for each new one; while
    /// every connection has requests in flight, new ones wait in the listen backlog.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max.max(1);
        self
    }

    /// Bytes of each direction's buffer on one connection (default 64 KiB): the largest
    /// request header accepted and the chunk in which bodies are forwarded. See
    /// [`limits`] for the memory bound it enters.
    pub fn with_connection_buffer_bytes(mut self, bytes: usize) -> Self {
        self.limits.connection_buffer = bytes.max(MIN_CONNECTION_BUFFER);
        self
    }

    /// Bytes of responses held whole for rewriting, all connections together (default
    /// 256 MiB); see [`limits`].
    pub fn with_max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_buffered_bytes = bytes.max(1);
        self
    }

    /// Largest response the proxy decodes to rewrite addresses (default 16 MiB: Metadata for
    /// some 250,000 partitions).
    pub fn with_max_rewritten_response_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_rewritten_response = bytes.max(MIN_CONNECTION_BUFFER);
        self
    }

    /// Time a new client connection has to send its first request header (default 10 s).
    pub fn with_first_request_timeout(mut self, timeout: Duration) -> Self {
        self.limits.first_request_timeout = timeout;
        self
    }

    /// A client connection with nothing in flight and no traffic for this long is closed
    /// (default 10 minutes, Kafka's `connections.max.idle.ms`).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// Largest frame accepted in either direction (default 100 MiB, Kafka's
    /// `socket.request.max.bytes`).
    pub fn with_max_frame_bytes(mut self, max: usize) -> Self {
        self.max_frame_bytes = max.max(64);
        self
    }

    /// Requests a client may have in flight on one connection before the proxy stops reading
    /// from it (default 64).
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.limits.max_in_flight = max.max(1);
        self
    }

    /// How long in-flight requests may take to be answered after shutdown (default 10 s).
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// TCP connect and TLS handshake timeout towards brokers (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often the bootstrap Metadata probe runs once it has succeeded (default 60 s):
    /// it keeps `/readyz` honest and binds listeners for brokers added meanwhile.
    pub fn with_probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Checks the configuration and builds the proxy.
    pub fn build(self) -> Result<Proxy, ProxyBuildError> {
        if self.bootstrap.is_empty() {
            return Err(ProxyBuildError::NoBootstrap);
        }
        let mut bootstrap = Vec::new();
        for server in &self.bootstrap {
            let (host, port) = server
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
                .filter(|(h, p)| !h.is_empty() && *p != 0)
                .ok_or_else(|| ProxyBuildError::BadBootstrap(server.clone()))?;
            bootstrap.push((host.to_owned(), port));
        }
        match self.advertised_host.as_str() {
            "" => {
                return Err(ProxyBuildError::AdvertisedHost(
                    String::new(),
                    "must not be empty",
                ));
            }
            "0.0.0.0" | "::" | "[::]" => {
                return Err(ProxyBuildError::AdvertisedHost(
                    self.advertised_host.clone(),
                    "an unspecified address cannot be connected to; advertise the address clients reach the proxy at",
                ));
            }
            _ => {}
        }
        let tls = if self.upstream_tls {
            Some(tls_connector(self.ca_pem.as_ref())?)
        } else {
            None
        };
        let (shutdown_tx, shutdown) = watch::channel(false);
        let (tracker, tracker_rx) = mpsc::channel(1);
        let metrics = Arc::new(metrics::ProxyMetrics::default());
        let dialer = upstream::Dialer {
            upstream: upstream::Upstream {
                tls,
                resolve: Arc::new(self.resolve),
                forward: self.forward.map(Arc::new),
                sasl: self.sasl,
                connect_timeout: self.connect_timeout,
                // Set-up answers (ApiVersions, SASL) are small; never hold more for them.
                max_frame: self.max_frame_bytes.min(self.limits.max_rewritten_response),
            },
            provider: self.provider,
            bootstrap,
            metrics: metrics.clone(),
        };
        let listening = run::Listening::new(
            &self.advertised_host,
            self.broker_port_base,
            tracker,
            |brokers| ConnectionContext {
                dialer,
                brokers,
                dial_gate: dial_gate::DialGate::default(),
                readiness: Arc::new(Readiness::default()),
                metrics,
                limits: self.limits,
                max_frame: self.max_frame_bytes,
                budget: limits::Budget::new(self.limits.max_buffered_bytes),
                log_limit: log_limit::LogLimit::default(),
                shutdown,
            },
        );
        Ok(Proxy {
            listening,
            shutdown_tx,
            tracker_rx,
            drain_timeout: self.drain_timeout,
            probe_interval: self.probe_interval,
            broker_port_base: self.broker_port_base,
            advertised_host: self.advertised_host,
        })
    }
}

fn tls_connector(
    ca: Option<&(String, Vec<u8>)>,
) -> Result<tokio_rustls::TlsConnector, ProxyBuildError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some((path, pem)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| ProxyBuildError::CaFile {
                    path: path.clone(),
                    detail: format!("not a PEM certificate file: {e}"),
                })?;
            if certs.is_empty() {
                return Err(ProxyBuildError::CaFile {
                    path: path.clone(),
                    detail: "holds no CERTIFICATE block".to_owned(),
                });
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ProxyBuildError::CaFile {
                    path: path.clone(),
                    detail: format!("a certificate is not a usable CA: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none installed".to_owned(), |e| e.to_string());
                return Err(ProxyBuildError::NoRoots(why));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyBuildError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl Proxy {
    /// A builder for a proxy whose broker connections authenticate with `provider`'s tokens.
    pub fn builder(provider: KafkaTokenProvider) -> ProxyBuilder {
        ProxyBuilder {
            provider,
            bootstrap: Vec::new(),
            broker_port_base: DEFAULT_BROKER_PORT_BASE,
            advertised_host: "127.0.0.1".to_owned(),
            upstream_tls: true,
            ca_pem: None,
            sasl: SaslMechanism::default(),
            resolve: HashMap::new(),
            forward: None,
            limits: Limits::default(),
            max_frame_bytes: frame::DEFAULT_MAX_FRAME_BYTES,
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            probe_interval: Duration::from_secs(60),
        }
    }
}
