//! `proxy`'s flags and what they mean to the library: `ProxyArgs` (with their help text,
//! environment variables and parsers), and their translation into a `ProxyBuilder` for one
//! cluster and into the cluster lookup's `LookupOptions`. Apart from `proxy.rs`, so that the
//! command reads as parse → build → run, and `--check` builds each proxy from the flags
//! exactly as serving does.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use gcp_kafka_auth_handler::KafkaTokenProvider;
use gcp_kafka_auth_handler::proxy::cluster_name::LookupOptions;
use gcp_kafka_auth_handler::proxy::dial::ForwardProxy;
use gcp_kafka_auth_handler::proxy::{Proxy, ProxyBuilder, SaslMechanism};

use crate::commands::args::{LogArgs, ProviderArgs, parse_duration};
use crate::commands::proxy_errors;
use crate::commands::proxy_plan::{ClusterArg, parse_cluster_arg};
use crate::commands::schema_registry::RegistryFlags;

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Managed Kafka clusters to serve, by resource name; the bootstrap address is looked up
    /// with the Managed Kafka API. Cluster i (from 0) listens on the --listen port + 100·i, its
    /// brokers on --broker-port-base + 100·i + node id; `?port=N&broker-port-base=M` after a
    /// name sets its own.
    #[arg(
        env = "GCP_KAFKA_AUTH_CLUSTERS",
        value_delimiter = ',',
        value_name = "projects/P/locations/L/clusters/C[?port=N&broker-port-base=M]",
        value_parser = parse_cluster_arg,
        required_unless_present = "bootstrap_servers",
        conflicts_with = "bootstrap_servers"
    )]
    pub clusters: Vec<ClusterArg>,

    /// A broker to bootstrap from, HOST:PORT (repeatable, or comma-separated as in
    /// bootstrap.servers), for a cluster not named by its Managed Kafka resource name.
    #[arg(
        long = "bootstrap-server",
        env = "GCP_KAFKA_AUTH_BOOTSTRAP_SERVER",
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    pub bootstrap_servers: Vec<String>,

    /// The Managed Kafka API base URL (default https://managedkafka.UNIVERSE_DOMAIN, from the
    /// credentials): a private endpoint or a test server.
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_MANAGED_KAFKA_ENDPOINT",
        value_name = "URL"
    )]
    pub managed_kafka_endpoint: Option<String>,

    /// The project billed for the Managed Kafka API call (sent as x-goog-user-project).
    #[arg(long, env = "GCP_KAFKA_AUTH_QUOTA_PROJECT", value_name = "PROJECT")]
    pub quota_project: Option<String>,

    /// Reach the brokers through this proxy (a bastion, an IAP or SSH tunnel):
    /// socks5://[USER:PASS@]HOST:PORT (names resolved by the proxy) or
    /// http://[USER:PASS@]HOST:PORT (CONNECT).
    #[arg(long, env = "GCP_KAFKA_AUTH_FORWARD_PROXY", value_name = "URL", value_parser = parse_forward_proxy)]
    pub forward_proxy: Option<ForwardProxy>,

    /// A TOML file with flags as keys (`listen = "127.0.0.1:9092"`, `clusters = [...]`);
    /// flags win over environment variables, which win over the file.
    #[arg(long, env = "GCP_KAFKA_AUTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub provider: ProviderArgs,

    #[command(flatten)]
    pub registry: RegistryFlags,

    /// The bootstrap listener clients put in bootstrap.servers (plaintext, no SASL). The
    /// default 127.0.0.1 holds [::1] on the same ports too, so no other local process can
    /// take the IPv6 half of `localhost`.
    #[arg(long, env = "GCP_KAFKA_AUTH_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

    /// Allow --listen, --http-address or --token-endpoint on an address other hosts can
    /// reach. Anyone who reaches the Kafka port uses the cluster as the proxy's Google
    /// identity; without this flag such an address is refused.
    #[arg(long, env = "GCP_KAFKA_AUTH_ALLOW_REMOTE_CLIENTS")]
    pub allow_remote_clients: bool,

    /// Broker node N listens on PORT + N, on the --listen address.
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_BROKER_PORT_BASE",
        default_value_t = 9093,
        value_name = "PORT"
    )]
    pub broker_port_base: u16,

    /// The host clients are told the brokers are at (the proxy's address as clients see it).
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_ADVERTISED_HOST",
        default_value = "127.0.0.1"
    )]
    pub advertised_host: String,

    /// Verify brokers with the CA certificates in this PEM file instead of the system roots.
    #[arg(long, env = "GCP_KAFKA_AUTH_UPSTREAM_CA_FILE", value_name = "PEM")]
    pub upstream_ca_file: Option<PathBuf>,

    /// TLS to the brokers. `false` only for local test brokers: tokens then cross the
    /// network in the clear.
    #[arg(long, env = "GCP_KAFKA_AUTH_UPSTREAM_TLS", default_value_t = true, action = ArgAction::Set, value_name = "true|false")]
    pub upstream_tls: bool,

    /// The SASL mechanism towards the brokers.
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_UPSTREAM_SASL",
        default_value = "oauthbearer"
    )]
    pub upstream_sasl: UpstreamSasl,

    /// Dial IP for broker host HOST, keeping HOST for TLS SNI and verification (repeatable;
    /// the environment variable takes a comma-separated list).
    #[arg(long, env = "GCP_KAFKA_AUTH_RESOLVE", value_delimiter = ',', value_name = "HOST=IP", value_parser = parse_resolve)]
    pub resolve: Vec<(String, IpAddr)>,

    /// Address of the health port: /startup, /readiness (/readyz), /liveness (/healthz),
    /// /metrics.
    #[arg(long, env = "GCP_KAFKA_AUTH_HTTP_ADDRESS", default_value = "127.0.0.1")]
    pub http_address: IpAddr,

    /// Port of /startup, /readiness, /liveness and /metrics (0 picks a free one).
    #[arg(long, env = "GCP_KAFKA_AUTH_HTTP_PORT", default_value_t = 9090)]
    pub http_port: u16,

    /// Also serve the token endpoint (same provider, one token cache), by default on
    /// 127.0.0.1:14293 (and [::1] on the same port, so neither can be squatted).
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_TOKEN_ENDPOINT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "127.0.0.1:14293",
        value_name = "ADDR:PORT"
    )]
    pub token_endpoint: Option<SocketAddr>,

    /// Client connections served at once over all listeners; at the limit the one idle
    /// longest is closed for a new one. Default: 1024, or less when the file-descriptor
    /// limit (raised to its hard limit at start) holds fewer than two per connection.
    #[arg(long, env = "GCP_KAFKA_AUTH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Bytes of each direction's buffer per connection: the largest request header and the
    /// chunk bodies are forwarded in (requests and responses stream through it).
    #[arg(long, env = "GCP_KAFKA_AUTH_CONNECTION_BUFFER_BYTES", default_value_t = gcp_kafka_auth_handler::proxy::limits::DEFAULT_CONNECTION_BUFFER)]
    pub connection_buffer_bytes: usize,

    /// Bytes of broker responses held whole for rewriting, all connections together
    /// (charged 3 times their size); more wait. See docs/security.md for the memory bound.
    #[arg(long, env = "GCP_KAFKA_AUTH_MAX_BUFFERED_BYTES", default_value_t = gcp_kafka_auth_handler::proxy::limits::DEFAULT_MAX_BUFFERED_BYTES)]
    pub max_buffered_bytes: usize,

    /// Largest broker response the proxy decodes to rewrite addresses (Metadata and the like).
    #[arg(long, env = "GCP_KAFKA_AUTH_MAX_REWRITTEN_RESPONSE_BYTES", default_value_t = gcp_kafka_auth_handler::proxy::limits::DEFAULT_MAX_REWRITTEN_RESPONSE)]
    pub max_rewritten_response_bytes: usize,

    /// Requests one connection may have in flight before the proxy stops reading from it.
    #[arg(long, env = "GCP_KAFKA_AUTH_MAX_IN_FLIGHT", default_value_t = gcp_kafka_auth_handler::proxy::limits::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,

    /// Time a new client connection has to send its first request header.
    #[arg(long, env = "GCP_KAFKA_AUTH_FIRST_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub first_request_timeout: Duration,

    /// A client connection with nothing in flight and no traffic for this long is closed
    /// (Kafka's connections.max.idle.ms).
    #[arg(long, env = "GCP_KAFKA_AUTH_IDLE_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Principal (`sub`, and the PLAIN username) instead of the one the credentials name.
    #[arg(long, env = "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL")]
    pub principal: Option<String>,

    /// After SIGTERM (and the --min-sigterm-delay), how long open connections may take to
    /// be drained (requests in flight answered) before they are closed.
    #[arg(long, alias = "shutdown-timeout", env = "GCP_KAFKA_AUTH_MAX_SIGTERM_DELAY", default_value = "10s", value_parser = parse_duration)]
    pub max_sigterm_delay: Duration,

    /// After SIGTERM, keep accepting new connections this long before draining (so a
    /// Kubernetes Service stops routing to the pod first).
    #[arg(long, env = "GCP_KAFKA_AUTH_MIN_SIGTERM_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub min_sigterm_delay: Duration,

    /// Exit 0 instead of 143 after SIGTERM (Kubernetes Jobs count 143 as failure).
    #[arg(long, env = "GCP_KAFKA_AUTH_EXIT_ZERO_ON_SIGTERM")]
    pub exit_zero_on_sigterm: bool,

    /// Serve POST /quitquitquit on the admin port (127.0.0.1:--admin-port): it stops the
    /// proxy and exits 0, for the last container of a Kubernetes Job.
    #[arg(long, env = "GCP_KAFKA_AUTH_QUITQUITQUIT")]
    pub quitquitquit: bool,

    /// Port of the admin server on 127.0.0.1 (only with --quitquitquit; 0 picks a free one).
    #[arg(long, env = "GCP_KAFKA_AUTH_ADMIN_PORT", default_value_t = 9091)]
    pub admin_port: u16,

    /// Check once instead of serving: token, cluster lookup, TCP, TLS, SASL and a bootstrap
    /// Metadata round trip; print what was found (or what failed and the fix) and exit 0 or 1.
    #[arg(long)]
    pub check: bool,

    #[command(flatten)]
    pub log: LogArgs,
}

/// `--upstream-sasl`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UpstreamSasl {
    /// SASL/OAUTHBEARER with the Kafka token.
    Oauthbearer,
    /// SASL/PLAIN: the principal and the raw Google access token.
    Plain,
}

impl ProxyArgs {
    /// The library configuration the flags describe, for one cluster.
    pub fn builder(
        &self,
        provider: KafkaTokenProvider,
        bootstrap: &[String],
        broker_port_base: u16,
    ) -> anyhow::Result<ProxyBuilder> {
        let mut builder = Proxy::builder(provider)
            .with_bootstrap_servers(bootstrap)
            .with_broker_port_base(broker_port_base)
            .with_advertised_host(&self.advertised_host)
            .with_upstream_tls(self.upstream_tls)
            .with_sasl(match self.upstream_sasl {
                UpstreamSasl::Oauthbearer => SaslMechanism::OauthBearer,
                UpstreamSasl::Plain => SaslMechanism::Plain,
            })
            .with_connection_buffer_bytes(self.connection_buffer_bytes)
            .with_max_buffered_bytes(self.max_buffered_bytes)
            .with_max_rewritten_response_bytes(self.max_rewritten_response_bytes)
            .with_max_in_flight(self.max_in_flight)
            .with_first_request_timeout(self.first_request_timeout)
            .with_idle_timeout(self.idle_timeout)
            .with_drain_timeout(self.max_sigterm_delay);
        for (host, ip) in &self.resolve {
            builder = builder.with_resolve(host, *ip);
        }
        if let Some(forward) = &self.forward_proxy {
            builder = builder.with_forward_proxy(forward.clone());
        }
        if let Some(path) = &self.upstream_ca_file {
            builder = builder
                .with_upstream_ca_file(path)
                .map_err(proxy_errors::build_error)?;
        }
        Ok(builder)
    }

    /// Where cluster names are looked up (`--managed-kafka-endpoint`) and which project is
    /// billed for it (`--quota-project`).
    pub fn lookup_options(&self) -> LookupOptions {
        LookupOptions {
            endpoint: self.managed_kafka_endpoint.clone(),
            quota_project: self.quota_project.clone(),
            timeout: None,
        }
    }
}

fn parse_forward_proxy(text: &str) -> Result<ForwardProxy, String> {
    text.parse().map_err(|e| format!("{e}"))
}

fn parse_resolve(text: &str) -> Result<(String, IpAddr), String> {
    let (host, ip) = text.split_once('=').ok_or_else(|| {
        format!("`{text}` is not HOST=IP (write e.g. broker-0.kafka.invalid=10.0.0.5)")
    })?;
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("`{ip}` in `{text}` is not an IP address"))?;
    let host = host.trim();
    if host.is_empty() {
        return Err(format!("`{text}` has no host before `=`"));
    }
    Ok((host.to_owned(), ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_entries_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_resolve("broker-0.kafka.invalid=127.0.0.2"),
            Ok((
                "broker-0.kafka.invalid".to_owned(),
                "127.0.0.2".parse().unwrap()
            ))
        );
        assert_eq!(
            parse_resolve("b=::1"),
            Ok(("b".to_owned(), "::1".parse().unwrap()))
        );
        assert!(
            parse_resolve("broker")
                .unwrap_err()
                .contains("is not HOST=IP")
        );
        assert!(
            parse_resolve("b=x")
                .unwrap_err()
                .contains("is not an IP address")
        );
    }
}
