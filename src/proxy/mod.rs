//! A Kafka-protocol proxy that authenticates every client to Managed Kafka.
//!
//! Clients connect in plaintext with only `bootstrap.servers` set; the proxy opens TLS to the
//! brokers, authenticates each broker connection itself (SASL/OAUTHBEARER with the provider's
//! Kafka token, or SASL/PLAIN with the raw access token), re-authenticates before the session
//! expires (KIP-368) and rewrites every broker address in the responses so that clients only
//! ever talk to the proxy.
//!
//! ```text
//!  client ──plaintext──▶ 127.0.0.1:9092 (bootstrap) ──TLS+SASL──▶ a bootstrap server
//!         ──plaintext──▶ 127.0.0.1:<base + N>       ──TLS+SASL──▶ broker node N
//! ```
//!
//! Node `N` is advertised as `advertised_host:(broker_port_base + N)`: deterministic, so
//! clients holding cached metadata reconnect to the same port after a restart. A listener is
//! bound for every node id seen in a Metadata, DescribeCluster, FindCoordinator or KIP-951 /
//! KIP-932 answer before that answer reaches the client; a node id that moves host is
//! retargeted (new connections go to the new host).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gcp_kafka_auth_handler::KafkaTokenProvider;
//! use gcp_kafka_auth_handler::proxy::Proxy;
//! let provider = KafkaTokenProvider::builder().build()?;
//! let proxy = Proxy::builder(provider)
//!     .with_bootstrap_servers(["bootstrap.my-cluster.us-central1.managedkafka.my-project.cloud.goog:9092"])
//!     .with_broker_port_base(9093)
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9092").await?;
//! proxy.run(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Modules: [`cluster_name`] (Managed Kafka names and the API lookup), [`dial`] (forward
//! proxies), [`frame`] (framing, header peek), [`versions`] (the reviewed version table and
//! ApiVersions filtering), [`rewrite`] (address rewriting by node id), `upstream` (TCP, TLS,
//! SASL), `connection` (one client and its broker connection), `metrics`.

mod addresses;
pub mod cluster_name;
mod connection;
pub mod dial;
mod dial_gate;
pub mod frame;
#[doc(hidden)]
pub mod fuzz_hooks;
pub mod limits;
mod log_limit;
mod metrics;
mod nodes;
pub mod rewrite;
mod sasl;
mod upstream;
pub mod versions;
mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::KafkaTokenProvider;
use crate::connection_slots::{Connections, MAKE_ROOM_RETRY};
use connection::Target;
pub use limits::Limits;
pub use nodes::BindError;
use nodes::{Listeners, Nodes};
pub use rewrite::{BrokerAddress, PortError, PortMap};
pub use sasl::SaslMechanism;
pub use wire::UpstreamError;

/// The default bootstrap listener.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9092);
/// The default `--broker-port-base`: node N listens on 9093 + N.
pub const DEFAULT_BROKER_PORT_BASE: u16 = 9093;

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
        "no bootstrap server: set --bootstrap-server HOST:PORT (GCP_KAFKA_AUTH_BOOTSTRAP_SERVER), the cluster's bootstrapAddress, e.g. bootstrap.CLUSTER.REGION.managedkafka.PROJECT.cloud.goog:9092"
    )]
    NoBootstrap,
    /// A bootstrap server is not `HOST:PORT`.
    #[error(
        "bootstrap server `{0}` is not HOST:PORT (write e.g. bootstrap.c.r.managedkafka.p.cloud.goog:9092)"
    )]
    BadBootstrap(String),
    /// The CA file cannot be used.
    #[error("--upstream-ca-file {path}: {detail}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// No root certificates at all.
    #[error(
        "no system root certificates found to verify the brokers ({0}); install the ca-certificates package or pass --upstream-ca-file"
    )]
    NoRoots(String),
    /// A TLS configuration error.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The advertised host is unusable.
    #[error("--advertised-host `{0}`: {1}")]
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
        let shared = Arc::new(Shared {
            provider: self.provider,
            upstream: upstream::Upstream {
                tls,
                resolve: Arc::new(self.resolve),
                forward: self.forward.map(Arc::new),
                sasl: self.sasl,
                connect_timeout: self.connect_timeout,
                // Set-up answers (ApiVersions, SASL) are small; never hold more for them.
                max_frame: self.max_frame_bytes.min(self.limits.max_rewritten_response),
            },
            bootstrap,
            ports: std::sync::OnceLock::new(),
            broker_port_base: self.broker_port_base,
            advertised_host: self.advertised_host,
            nodes: Nodes::default(),
            metrics: metrics::ProxyMetrics::default(),
            max_frame: self.max_frame_bytes,
            budget: limits::Budget::new(self.limits.max_buffered_bytes),
            limits: self.limits,
            connections: Arc::new(Semaphore::new(self.limits.max_connections)),
            slots: Connections::new(),
            dial_gate: dial_gate::DialGate::default(),
            log_limit: log_limit::LogLimit::default(),
            shutdown,
            readiness: Mutex::new(Probe::Pending),
            last_brokers: AtomicUsize::new(0),
            tracker: Mutex::new(Some(tracker)),
            bind_ips: Mutex::new(Vec::new()),
        });
        Ok(Proxy {
            shared,
            shutdown_tx,
            tracker_rx,
            drain_timeout: self.drain_timeout,
            probe_interval: self.probe_interval,
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

/// The Kafka-protocol proxy; see the [module documentation](self).
pub struct Proxy {
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    tracker_rx: mpsc::Receiver<()>,
    drain_timeout: Duration,
    probe_interval: Duration,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("bootstrap", &self.shared.bootstrap)
            .field("broker_port_base", &self.shared.broker_port_base)
            .field("advertised_host", &self.shared.advertised_host)
            .finish_non_exhaustive()
    }
}

/// State shared by every listener and connection.
pub(crate) struct Shared {
    provider: KafkaTokenProvider,
    upstream: upstream::Upstream,
    bootstrap: Vec<(String, u16)>,
    /// Set by `run`, which knows the bootstrap port.
    ports: std::sync::OnceLock<PortMap>,
    broker_port_base: u16,
    advertised_host: String,
    nodes: Nodes,
    metrics: metrics::ProxyMetrics,
    max_frame: usize,
    limits: Limits,
    /// Responses held whole, all connections together.
    budget: limits::Budget,
    connections: Arc<Semaphore>,
    /// The connections being served, for making room at the limit.
    slots: Connections,
    dial_gate: dial_gate::DialGate,
    log_limit: log_limit::LogLimit,
    shutdown: watch::Receiver<bool>,
    readiness: Mutex<Probe>,
    /// Brokers in the last successful Metadata probe.
    last_brokers: AtomicUsize,
    /// Held by every accept loop and connection; `run` waits for all clones to drop.
    tracker: Mutex<Option<mpsc::Sender<()>>>,
    /// The addresses broker listeners bind (the bootstrap listeners' IPs).
    bind_ips: Mutex<Vec<IpAddr>>,
}

impl Shared {
    /// The node-id → port map (`run` sets the bootstrap port it must avoid).
    fn ports(&self) -> &PortMap {
        self.ports
            .get_or_init(|| PortMap::new(&self.advertised_host, self.broker_port_base, 0))
    }

    /// Records the broker addresses in an answer, binding listeners for new node ids.
    fn observe(self: &Arc<Self>, brokers: &[BrokerAddress]) -> Result<(), BindError> {
        self.nodes.observe(brokers, &BrokerListeners(self))
    }

    /// A client's broker connection failed to open: not ready, at once (readiness reflects
    /// what clients get, not only the periodic probe).
    fn upstream_failed(&self, why: &str) {
        let mut readiness = self.readiness.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(*readiness, Probe::Failed(_)) {
            tracing::error!("not ready: a client's broker connection failed: {why}");
        }
        *readiness = Probe::Failed(format!("a client's broker connection failed: {why}"));
    }

    /// A client's broker connection opened: ready again at once if the last failure was a
    /// client's (and the probe has found brokers before).
    fn upstream_succeeded(&self) {
        let brokers = self.last_brokers.load(Ordering::Acquire);
        let mut readiness = self.readiness.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*readiness, Probe::Failed(_)) && brokers > 0 {
            tracing::info!(brokers, "ready again: a client's broker connection opened");
            *readiness = Probe::Ok { brokers };
        }
    }
}

/// The smallest connection buffer: a request header with a client id must fit.
const MIN_CONNECTION_BUFFER: usize = 4096;

/// The start-up probe's last outcome.
#[derive(Debug, Clone)]
enum Probe {
    Pending,
    Ok { brokers: usize },
    Failed(String),
}

/// The proxy's [`Listeners`]: node `N` listens on `base + N` on every address the bootstrap
/// listener holds, with an accept loop of its own.
struct BrokerListeners<'a>(&'a Arc<Shared>);

impl Listeners for BrokerListeners<'_> {
    fn listen(&self, broker: &BrokerAddress) -> Result<(), BindError> {
        let shared = self.0;
        let port = shared.ports().port(broker.node_id)?;
        let mut ips = shared
            .bind_ips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if ips.is_empty() {
            ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        // Every address the bootstrap listener holds, so that no other local process can
        // take the other half of `localhost` for a broker port.
        let mut listeners = Vec::with_capacity(ips.len());
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            let listener = bind_one(addr).map_err(|e| BindError::Bind {
                node_id: broker.node_id,
                addr,
                detail: e.to_string(),
            })?;
            tracing::info!(
                node_id = broker.node_id,
                listen = %addr,
                broker = %format_args!("{}:{}", broker.host, broker.port),
                "listening for broker"
            );
            listeners.push(listener);
        }
        if let Some(tracker) = shared
            .tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            for listener in listeners {
                tokio::spawn(accept_loop(
                    shared.clone(),
                    listener,
                    Target::Node(broker.node_id),
                    tracker.clone(),
                ));
            }
        }
        Ok(())
    }
}

/// A listener on `addr`; an IPv6 one accepts IPv6 only (never IPv4-mapped connections).
fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Why the proxy stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The bootstrap listener failed.
    #[error("the bootstrap listener failed: {0}")]
    Listener(#[from] std::io::Error),
    /// Node ports collide with the bootstrap listener.
    #[error(transparent)]
    Port(#[from] PortError),
}

async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Accepts clients on one listener until shutdown, within the connection limit.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    target: Target,
    tracker: mpsc::Sender<()>,
) {
    let stop = wait_shutdown(shared.shutdown.clone());
    tokio::pin!(stop);
    let max = shared.limits.max_connections;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if let Some(suppressed) = shared.log_limit.allow("accept") {
                        tracing::warn!(suppressed, "accept failed on the {} listener: {e}{}", target.label(), fd_hint(&e));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => return,
        };
        // Accepted before its permit, so at the limit exactly one connection per listener
        // waits here while the rest wait in the kernel's backlog; the connection idle
        // longest makes room for it, so idle connections cannot lock real clients out.
        let permit = match shared.connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let mut asked = shared.slots.make_room(max);
                let permit = loop {
                    tokio::select! {
                        permit = shared.connections.clone().acquire_owned() => break permit.ok(),
                        () = tokio::time::sleep(MAKE_ROOM_RETRY), if !asked => {
                            asked = shared.slots.make_room(max);
                        }
                        () = &mut stop => break None,
                    }
                };
                match permit {
                    Some(permit) => permit,
                    None => return,
                }
            }
        };
        let shared = shared.clone();
        let tracker = tracker.clone();
        tokio::spawn(async move {
            let slot = shared.slots.register();
            connection::serve(shared.clone(), stream, target, slot.clone()).await;
            shared.slots.remove(slot.id);
            drop(permit);
            drop(tracker);
        });
    }
}

/// The fix for running out of file descriptors, when that is the error.
fn fd_hint(err: &std::io::Error) -> &'static str {
    #[cfg(unix)]
    if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
        return "; the proxy is out of file descriptors (each client uses two): raise its limit (ulimit -n, LimitNOFILE=) or lower --max-connections";
    }
    let _ = err;
    ""
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

    /// The start-up probe once, without binding listeners (`proxy --check`): waits for a
    /// token, then connects to a bootstrap server, authenticates and asks Metadata. `Ok`
    /// lists the brokers and the local port each would get; `Err` says what failed (no
    /// credentials, unreachable bootstrap, TLS, SASL refusal, a node id without a port) and
    /// how to fix it.
    pub async fn check(&self) -> Result<Vec<(BrokerAddress, u16)>, String> {
        self.shared.provider.token().await.map_err(|e| {
            format!(
                "no Kafka token from {}: {e}",
                self.shared.provider.describe_source()
            )
        })?;
        let brokers = probe_brokers(&self.shared).await?;
        brokers
            .into_iter()
            .map(|b| {
                let port = self
                    .shared
                    .ports()
                    .port(b.node_id)
                    .map_err(|e| e.to_string())?;
                Ok((b, port))
            })
            .collect()
    }

    /// Whether the proxy is ready (a token is cached and the bootstrap Metadata probe
    /// succeeded), and why not.
    pub fn readiness(&self) -> Result<String, String> {
        readiness(&self.shared)
    }

    /// A handle on this proxy's readiness and metrics that stays usable while [`run`](Self::run)
    /// owns the proxy (for a health port serving several proxies).
    pub fn status(&self) -> ProxyStatus {
        ProxyStatus {
            shared: self.shared.clone(),
        }
    }

    /// `/healthz`, `/readyz` and `/metrics` (the provider's metrics and the proxy's), behind
    /// the token endpoint's checks: loopback `Host`s only, browsers refused, `nosniff`.
    pub fn router(&self) -> Router {
        let router = Router::new()
            .route(
                "/healthz",
                get(|| async { json(StatusCode::OK, serde_json::json!({"status": "ok"})) }),
            )
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .with_state(self.shared.clone());
        crate::endpoint::protect(router, crate::endpoint::EndpointConfig::default())
    }

    /// Serves clients on `bootstrap` (and a listener per broker, on the same IP) until
    /// `shutdown` completes; then stops accepting, lets requests in flight be answered for
    /// up to the drain timeout, and returns.
    pub async fn run(
        self,
        bootstrap: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyError> {
        self.run_on(vec![bootstrap], shutdown).await
    }

    /// As [`run`](Self::run), with the bootstrap listener on several addresses of the same
    /// port (e.g. `127.0.0.1` and `::1`, see [`crate::server::bind_loopback`]); broker
    /// listeners are bound on each of those addresses too. The first is the one logged.
    pub async fn run_on(
        mut self,
        bootstrap: Vec<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyError> {
        let Some(first) = bootstrap.first() else {
            return Err(ProxyError::Listener(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "Proxy::run_on needs at least one bootstrap listener",
            )));
        };
        let local = first.local_addr()?;
        let mut ips = Vec::with_capacity(bootstrap.len());
        for listener in &bootstrap {
            ips.push(listener.local_addr()?.ip());
        }
        *self
            .shared
            .bind_ips
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = ips.clone();
        // A node id whose port would be the bootstrap port is refused when first seen.
        let _ = self.shared.ports.set(PortMap::new(
            &self.shared.advertised_host,
            self.shared.broker_port_base,
            local.port(),
        ));
        let Some(tracker) = self
            .shared
            .tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return Ok(());
        };
        tracing::info!(
            listen = %local,
            also = ?&ips[1..],
            bootstrap = ?self.shared.bootstrap,
            broker_port_base = self.shared.broker_port_base,
            advertised_host = %self.shared.advertised_host,
            sasl = self.shared.upstream.sasl.name(),
            tls = self.shared.upstream.tls.is_some(),
            "proxy listening; clients set only bootstrap.servers={local}"
        );
        if self.shared.upstream.tls.is_none() {
            tracing::warn!(
                "--upstream-tls=false: broker connections are plaintext and tokens cross the network readable; use this only with a local test broker"
            );
        }
        let accept: Vec<_> = bootstrap
            .into_iter()
            .map(|listener| {
                tokio::spawn(accept_loop(
                    self.shared.clone(),
                    listener,
                    Target::Bootstrap,
                    tracker.clone(),
                ))
            })
            .collect();
        drop(tracker);
        let probe = tokio::spawn(probe_loop(self.shared.clone(), self.probe_interval));
        shutdown.await;
        tracing::info!("shutting down: no new connections; answering requests in flight");
        let _ = self.shutdown_tx.send(true);
        probe.abort();
        for accept in accept {
            let _ = accept.await;
        }
        drop(
            self.shared
                .tracker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        if tokio::time::timeout(self.drain_timeout, self.tracker_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                "connections still open after the {:?} drain timeout; closing them",
                self.drain_timeout
            );
        }
        Ok(())
    }
}

/// A proxy's readiness and metrics, from [`Proxy::status`].
#[derive(Clone)]
pub struct ProxyStatus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProxyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyStatus")
            .field("bootstrap", &self.shared.bootstrap)
            .finish_non_exhaustive()
    }
}

impl ProxyStatus {
    /// As [`Proxy::readiness`].
    pub fn readiness(&self) -> Result<String, String> {
        readiness(&self.shared)
    }

    /// Appends the proxy's own metric families (not the provider's) in OpenMetrics text,
    /// without `# EOF`.
    pub fn render_metrics_into(&self, text: &mut String) {
        render_proxy_metrics(&self.shared, text);
    }
}

/// What a client behind the proxy sets, for every client family (`client-config --client
/// proxy`): only the bootstrap address, in plaintext, without SASL.
///
/// ```
/// let text = gcp_kafka_auth_handler::proxy::client_config("127.0.0.1:9092");
/// assert!(text.contains("bootstrap.servers=127.0.0.1:9092\n"));
/// ```
pub fn client_config(bootstrap: &str) -> String {
    format!(
        "\
# Clients behind `gcp-kafka-auth-handler proxy` set only the bootstrap address: the proxy
# speaks TLS and SASL to Managed Kafka for them. No security.protocol other than PLAINTEXT,
# no sasl.* settings, no token endpoint, no callback handler.

# Java (kafka-clients, Kafka Connect, Kafka Streams, console tools' client.properties):
bootstrap.servers={bootstrap}
security.protocol=PLAINTEXT

# librdkafka (confluent-kafka for Python, Go, .NET, JavaScript):
#   bootstrap.servers={bootstrap}
#   security.protocol=plaintext
# kcat:
#   kcat -b {bootstrap} -L
# sarama (Go):      sarama.NewClient([]string{{\"{bootstrap}\"}}, config) with Net.SASL.Enable and Net.TLS.Enable false
# franz-go (Go):    kgo.SeedBrokers(\"{bootstrap}\") with no kgo.SASL / kgo.DialTLSConfig
# kafka-go (Go):    kafka.Dialer{{}} (no SASLMechanism, no TLS), address \"{bootstrap}\"
# kafkajs:          new Kafka({{ brokers: ['{bootstrap}'] }})  // no ssl, no sasl
"
    )
}

fn readiness(shared: &Shared) -> Result<String, String> {
    if !shared.provider.is_ready() {
        return Err(format!(
            "no Kafka token cached yet from {}",
            shared.provider.describe_source()
        ));
    }
    match &*shared.readiness.lock().unwrap_or_else(|p| p.into_inner()) {
        Probe::Ok { brokers } => Ok(format!(
            "bootstrap Metadata round trip succeeded; {brokers} brokers"
        )),
        Probe::Pending => Err("the bootstrap Metadata round trip has not finished yet".to_owned()),
        Probe::Failed(why) => Err(why.clone()),
    }
}

/// Runs the start-up probe until it succeeds (backing off from 1 s to 30 s), then again
/// every `interval`.
async fn probe_loop(shared: Arc<Shared>, interval: Duration) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let outcome = probe(&shared).await;
        let wait = match outcome {
            Ok(brokers) => {
                let first = !matches!(
                    *shared.readiness.lock().unwrap_or_else(|p| p.into_inner()),
                    Probe::Ok { .. }
                );
                if first {
                    tracing::info!(brokers, "ready: bootstrap Metadata round trip succeeded");
                }
                *shared.readiness.lock().unwrap_or_else(|p| p.into_inner()) = Probe::Ok { brokers };
                backoff = Duration::from_secs(1);
                interval
            }
            Err(why) => {
                tracing::error!("not ready: {why}");
                *shared.readiness.lock().unwrap_or_else(|p| p.into_inner()) = Probe::Failed(why);
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Connects to a bootstrap server, authenticates, asks Metadata and binds every broker's
/// listener. Returns the broker count.
async fn probe(shared: &Arc<Shared>) -> Result<usize, String> {
    let brokers = probe_brokers(shared).await?;
    if brokers.is_empty() {
        return Err(
            "the bootstrap server's Metadata lists no brokers; the cluster is starting or being deleted"
                .to_owned(),
        );
    }
    shared.last_brokers.store(brokers.len(), Ordering::Release);
    shared.observe(&brokers).map_err(|e| e.to_string())?;
    Ok(brokers.len())
}

/// One bootstrap round trip: the first bootstrap server that connects, authenticates and
/// answers Metadata names the brokers.
async fn probe_brokers(shared: &Arc<Shared>) -> Result<Vec<BrokerAddress>, String> {
    let mut last = String::from("no bootstrap server");
    for (host, port) in &shared.bootstrap {
        let mut seq = wire::Sequence::default();
        let opened = shared
            .upstream
            .open(&shared.provider, &shared.metrics, host, *port, &mut seq)
            .await;
        let (mut stream, _) = match opened {
            Ok(ok) => ok,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let max = shared.limits.max_rewritten_response;
        match upstream::probe_metadata(&mut stream, host, *port, &mut seq, max).await {
            Ok(brokers) => return Ok(brokers),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The proxy's metric families, and the gauge of bytes held for rewriting.
fn render_proxy_metrics(shared: &Shared, text: &mut String) {
    use std::fmt::Write as _;
    shared.metrics.render_into(text);
    let p = "gcp_kafka_auth_proxy";
    let _ = writeln!(
        text,
        "# HELP {p}_buffered_bytes Bytes charged against --max-buffered-bytes by responses held whole for rewriting.\n# TYPE {p}_buffered_bytes gauge\n{p}_buffered_bytes {}",
        shared.budget.in_use()
    );
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    match readiness(&shared) {
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

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    let mut text = shared.provider.metrics().render();
    if text.ends_with("# EOF\n") {
        text.truncate(text.len() - "# EOF\n".len());
    }
    render_proxy_metrics(&shared, &mut text);
    text.push_str("# EOF\n");
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}
