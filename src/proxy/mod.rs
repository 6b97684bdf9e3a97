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
//! Public modules, the library's proxy API besides [`Proxy`] and [`ProxyBuilder`]:
//! [`cluster_name`] (Managed Kafka names and the API lookup), [`dial`] (forward proxies) and
//! [`limits`] (the resource bounds and their defaults). No public item names a
//! `kafka-protocol` type: that crate is pinned exactly and is an implementation detail.
//!
//! Private modules, by job: `frame` (framing, header peek), `versions` (the table of
//! rewritten keys, one row each, and ApiVersions filtering), `rewrite` (dispatch by row; the
//! address swaps are in `addresses`), `builder` ([`ProxyBuilder`]), `run` (accept loops and
//! their state, broker listeners, the bootstrap probe), `nodes` (the node registry and port
//! map, binding through an injected `Listeners`), `health` (readiness and the
//! health port, [`HealthPort`], over `HealthSource`), `upstream` (TCP, TLS, ApiVersions, the probe's
//! Metadata), `sasl` (the SASL conversation, sans-IO, one file per mechanism), `wire` (the
//! proxy's own requests and frames), `connection` (one client and its broker connection,
//! handed a `ConnectionContext`: the dialer, the registry, metrics, limits, shutdown),
//! `metrics`. `fuzz_hooks` and `bench_hooks` are hidden entry points for the fuzz targets,
//! property tests and benchmarks, in plain bytes and integers, free to change.

mod addresses;
#[doc(hidden)]
pub mod bench_hooks;
mod builder;
pub mod cluster_name;
mod connection;
pub mod dial;
mod dial_gate;
mod errors;
mod frame;
#[doc(hidden)]
pub mod fuzz_hooks;
mod health;
pub mod limits;
mod log_limit;
mod metrics;
mod nodes;
mod rewrite;
mod run;
mod sasl;
mod upstream;
mod versions;
mod wire;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use addresses::{BrokerAddress, PortError};
pub use builder::{ProxyBuildError, ProxyBuilder};
use connection::{ConnectionContext, Target};
pub use errors::{CheckError, MetadataError, NotReady, ProbeError};
pub use health::HealthPort;
pub use limits::Limits;
pub use nodes::BindError;
pub use sasl::SaslMechanism;
pub use wire::{DecodeError, TlsProblem, UpstreamError, UpstreamHint};

/// The default bootstrap listener.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9092);
/// The default `--broker-port-base`: node N listens on 9093 + N.
pub const DEFAULT_BROKER_PORT_BASE: u16 = 9093;

/// The Kafka-protocol proxy; see the [module documentation](self).
pub struct Proxy {
    /// The accept loops' state, holding the context every connection is handed.
    listening: Arc<run::Listening>,
    shutdown_tx: watch::Sender<bool>,
    tracker_rx: mpsc::Receiver<()>,
    drain_timeout: Duration,
    probe_interval: Duration,
    broker_port_base: u16,
    advertised_host: String,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("bootstrap", &self.serving().dialer.bootstrap)
            .field("broker_port_base", &self.broker_port_base)
            .field("advertised_host", &self.advertised_host)
            .finish_non_exhaustive()
    }
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

impl Proxy {
    /// What this proxy's connections are handed: its dialer, registry, readiness and metrics.
    fn serving(&self) -> &ConnectionContext {
        &self.listening.serving
    }

    /// The start-up probe once, without binding listeners (`proxy --check`): waits for a
    /// token, then connects to a bootstrap server, authenticates and asks Metadata. `Ok`
    /// lists the brokers and the local port each would get; `Err` says what failed (no
    /// credentials, unreachable bootstrap, TLS, SASL refusal, a node id without a port) and
    /// how to fix it.
    pub async fn check(&self) -> Result<Vec<(BrokerAddress, u16)>, CheckError> {
        let serving = self.serving();
        let provider = &serving.dialer.provider;
        provider.token().await.map_err(|error| CheckError::Token {
            token_source: provider.describe_source(),
            error,
        })?;
        let max_answer = serving.limits.max_rewritten_response;
        let brokers = run::probe_brokers(&serving.dialer, max_answer).await?;
        brokers
            .into_iter()
            .map(|b| {
                let port = serving.brokers.ports().port(b.node_id)?;
                Ok((b, port))
            })
            .collect()
    }

    /// Whether the proxy is ready (a token is cached and the bootstrap Metadata probe
    /// succeeded), with what was checked; or why not.
    pub fn readiness(&self) -> Result<String, NotReady> {
        let serving = self.serving();
        readiness(&serving.dialer.provider, &serving.readiness)
    }

    /// A handle on this proxy's readiness and metrics that stays usable while [`run`](Self::run)
    /// owns the proxy (for a health port serving several proxies).
    pub fn status(&self) -> ProxyStatus {
        let serving = self.serving();
        ProxyStatus {
            provider: serving.dialer.provider.clone(),
            bootstrap: serving.dialer.bootstrap.clone(),
            readiness: serving.readiness.clone(),
            metrics: serving.metrics.clone(),
            budget: serving.budget.clone(),
        }
    }

    /// This proxy's [`HealthPort`]: `/healthz` (`/liveness`), `/readyz` (`/readiness`),
    /// `/startup` and `/metrics` (the provider's metrics and the proxy's), behind the token
    /// endpoint's checks: loopback `Host`s only, browsers refused, `nosniff`.
    pub fn router(&self) -> Router {
        let port = HealthPort::new();
        port.set_provider(self.serving().dialer.provider.clone());
        // With one proxy, its label is shown nowhere.
        port.set_proxies([(String::new(), self.status())]);
        crate::endpoint::protect(port.router(), crate::endpoint::EndpointConfig::default())
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
            .listening
            .bind_ips
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = ips.clone();
        let serving = self.listening.serving.clone();
        // A node id whose port would be the bootstrap port is refused when first seen.
        serving.brokers.reserve_bootstrap_port(local.port());
        let Some(tracker) = self
            .listening
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
            bootstrap = ?serving.dialer.bootstrap,
            broker_port_base = self.broker_port_base,
            advertised_host = %self.advertised_host,
            sasl = serving.dialer.upstream.sasl.name(),
            tls = serving.dialer.upstream.tls.is_some(),
            "proxy listening; clients set only bootstrap.servers={local}"
        );
        if serving.dialer.upstream.tls.is_none() {
            tracing::warn!(
                "upstream TLS is off: broker connections are plaintext and tokens cross the network readable; use this only with a local test broker"
            );
        }
        let accept: Vec<_> = bootstrap
            .into_iter()
            .map(|listener| {
                tokio::spawn(run::accept_loop(
                    self.listening.clone(),
                    listener,
                    Target::Bootstrap,
                    tracker.clone(),
                ))
            })
            .collect();
        drop(tracker);
        let interval = self.probe_interval;
        let probe = tokio::spawn(async move {
            let max_answer = serving.limits.max_rewritten_response;
            health::probe_loop(&serving.readiness, interval, || {
                run::probe(
                    &serving.dialer,
                    &serving.brokers,
                    &serving.readiness,
                    max_answer,
                )
            })
            .await
        });
        shutdown.await;
        tracing::info!("shutting down: no new connections; answering requests in flight");
        let _ = self.shutdown_tx.send(true);
        probe.abort();
        for accept in accept {
            let _ = accept.await;
        }
        drop(
            self.listening
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
    provider: crate::KafkaTokenProvider,
    bootstrap: Vec<(String, u16)>,
    readiness: Arc<health::Readiness>,
    metrics: Arc<metrics::ProxyMetrics>,
    budget: limits::Budget,
}

impl std::fmt::Debug for ProxyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyStatus")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl ProxyStatus {
    /// As [`Proxy::readiness`].
    pub fn readiness(&self) -> Result<String, NotReady> {
        readiness(&self.provider, &self.readiness)
    }
}

fn readiness(
    provider: &crate::KafkaTokenProvider,
    readiness: &health::Readiness,
) -> Result<String, NotReady> {
    if !provider.is_ready() {
        return Err(NotReady::NoToken {
            token_source: provider.describe_source(),
        });
    }
    readiness.status()
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

impl health::HealthSource for ProxyStatus {
    fn readiness(&self) -> Result<String, NotReady> {
        readiness(&self.provider, &self.readiness)
    }

    fn families(&self) -> Vec<metrics::Family> {
        self.metrics.families(self.budget.in_use())
    }
}
