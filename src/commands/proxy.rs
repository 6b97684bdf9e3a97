//! `proxy`: the Kafka-protocol proxy (library module `proxy`), its health/metrics port and,
//! with `--token-endpoint`, the token endpoint from the same provider.
//!
//! Conventions of Google's own auth proxies (Cloud SQL, AlloyDB): Managed Kafka cluster names
//! as positional arguments (bootstrap address looked up with the Managed Kafka API, one
//! bootstrap port and broker port block per cluster), `/startup`, `/readiness` and
//! `/liveness`, the opt-in `POST /quitquitquit` admin endpoint, `--exit-zero-on-sigterm`,
//! `--min-sigterm-delay` and `--max-sigterm-delay`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Args, ValueEnum};
use gcp_kafka_auth_handler::endpoint;
use gcp_kafka_auth_handler::proxy::cluster_name::{self, ClusterName, LookupError, LookupOptions};
use gcp_kafka_auth_handler::proxy::dial::ForwardProxy;
use gcp_kafka_auth_handler::proxy::{HealthPort, Proxy, SaslMechanism};
use gcp_kafka_auth_handler::{KafkaTokenProvider, server};

use crate::commands::args::{LogArgs, ProviderArgs, parse_duration};
use crate::commands::proxy_listen::{bind, max_connections, refuse_remote};
use crate::commands::proxy_plan::{ClusterArg, Target, parse_cluster_arg, plans};
use crate::commands::proxy_stop::Stop;
use crate::commands::schema_registry::{self, RegistryFlags};
use crate::commands::{endpoint_errors, proxy_errors};

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

/// Looks a cluster's bootstrap address up, retrying what may pass (5xx, network) twice.
async fn lookup(
    provider: &KafkaTokenProvider,
    name: &ClusterName,
    options: &LookupOptions,
) -> anyhow::Result<String> {
    let mut backoff = Duration::from_millis(500);
    for attempt in 1.. {
        match cluster_name::lookup_bootstrap(provider, name, options).await {
            Ok(address) => {
                tracing::info!(cluster = %name, bootstrap = %address, "looked up the cluster's bootstrap address");
                return Ok(address);
            }
            Err(
                err @ (LookupError::Unreachable { .. }
                | LookupError::Status {
                    status: 500..=599, ..
                }),
            ) if attempt < 3 => {
                let err = proxy_errors::lookup_message(&err);
                tracing::warn!("{err}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(err) => return Err(anyhow::anyhow!(proxy_errors::lookup_message(&err))),
        }
    }
    unreachable!("the loop returns")
}

/// Runs the command inside a tokio runtime; the exit code says what stopped it.
pub async fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    if args.check {
        return check(args).await;
    }
    let stop = Stop::start(args.min_sigterm_delay);
    let plans = plans(
        &args.clusters,
        &args.bootstrap_servers,
        args.listen,
        args.broker_port_base,
    )?;
    refuse_remote(
        args.allow_remote_clients,
        args.listen.ip(),
        &[
            ("--http-address", Some(args.http_address)),
            ("--token-endpoint", args.token_endpoint.map(|a| a.ip())),
            (
                "--schema-registry-listen",
                args.registry
                    .schema_registry
                    .is_some()
                    .then_some(args.registry.schema_registry_listen.ip()),
            ),
        ],
    )?;
    let max_connections = max_connections(args.max_connections);
    let mut listeners = Vec::new();
    for plan in &plans {
        let bound = bind(plan.listen)
            .await
            .with_context(|| format!("cannot listen on {} for {}", plan.listen, plan.label))?;
        listeners.push(bound);
    }
    let http_addr = SocketAddr::new(args.http_address, args.http_port);
    let http = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-address/--http-port {http_addr}"))?;
    let admin = if args.quitquitquit {
        let addr = SocketAddr::from(([127, 0, 0, 1], args.admin_port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on --admin-port {addr}"))?;
        tracing::info!(address = %listener.local_addr()?, "admin server: POST http://{}/quitquitquit stops the proxy", listener.local_addr()?);
        Some(tokio::spawn(server::serve(
            vec![listener],
            endpoint::protect(stop.admin_router(), endpoint_errors::endpoint_config()),
            server::Limits {
                max_connections: 8,
                ..server::Limits::default()
            },
            stop.stopped(),
            Duration::from_secs(1),
        )))
    } else {
        None
    };
    let health = HealthPort::new();
    health.set_not_ready_wording(proxy_errors::not_ready);
    let http_local = http.local_addr()?;
    tracing::info!(address = %http_local, "listening for health checks and metrics: http://{http_local}/readyz");
    // Loopback: the token endpoint's Host check against DNS rebinding. Elsewhere (a pod's
    // address, for kubelet probes) any Host, but browsers are refused everywhere.
    let ops_guard = if args.http_address.is_loopback() {
        endpoint_errors::endpoint_config()
    } else {
        endpoint_errors::endpoint_config().allow_any_host()
    };
    let ops = tokio::spawn(server::serve(
        vec![http],
        endpoint::protect(health.router(), ops_guard),
        server::Limits {
            max_connections: 64,
            ..server::Limits::default()
        },
        stop.stopped(),
        Duration::from_secs(1),
    ));
    let provider = super::credentials::build_provider(&args.provider, args.principal.as_deref())?;
    health.set_provider(provider.clone());
    let token = match args.token_endpoint {
        Some(addr) => {
            // 127.0.0.1 (the default) holds ::1 on the same port too, as `serve` does.
            let listeners = bind(addr)
                .await
                .with_context(|| format!("cannot listen on --token-endpoint {addr}"))?;
            let local = listeners[0].local_addr()?;
            tracing::info!(address = %local, "token endpoint is http://{local}");
            Some(tokio::spawn(server::serve(
                listeners,
                provider.router_with(endpoint_errors::endpoint_config()),
                server::Limits::default(),
                stop.stopped(),
                args.max_sigterm_delay,
            )))
        }
        None => None,
    };
    let registry = match args.registry.schema_registry.clone() {
        Some(name) => {
            let prepared = schema_registry::prepare(
                provider.clone(),
                name,
                args.registry.schema_registry_listen,
                args.registry.schema_registry_endpoint.as_deref(),
                args.quota_project.as_deref(),
                &[],
            )
            .await?;
            Some(tokio::spawn(schema_registry::serve(
                prepared,
                stop.stopped(),
                args.max_sigterm_delay,
            )))
        }
        None => None,
    };

    let options = LookupOptions {
        endpoint: args.managed_kafka_endpoint.clone(),
        quota_project: args.quota_project.clone(),
        timeout: None,
    };
    let mut proxies = Vec::new();
    let mut statuses = Vec::new();
    for plan in &plans {
        let bootstrap = match &plan.target {
            Target::Bootstrap(servers) => servers.clone(),
            Target::Cluster(name) => {
                tokio::select! {
                    found = lookup(&provider, name, &options) => vec![found?],
                    () = stop.stopped() => return Ok(stop.exit_code(args.exit_zero_on_sigterm)),
                }
            }
        };
        let proxy = builder(&args, provider.clone(), &bootstrap, plan.broker_port_base)?
            .with_max_connections(max_connections)
            .build()
            .map_err(proxy_errors::build_error)?;
        statuses.push((plan.label.clone(), proxy.status()));
        proxies.push(proxy);
    }
    health.set_proxies(statuses);
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            identity = %provider.describe_source(),
            "--allow-remote-clients: the Kafka listener is not on loopback; every host that can reach it uses the cluster as this identity, without authenticating"
        );
    }
    let mut running = Vec::new();
    for (proxy, listeners) in proxies.into_iter().zip(listeners) {
        running.push(tokio::spawn(proxy.run_on(listeners, stop.stopped())));
    }
    for task in running {
        task.await.context("proxy task")??;
    }
    if let Some(token) = token {
        token
            .await
            .context("token endpoint task")?
            .context("token endpoint failed")?;
    }
    if let Some(registry) = registry {
        registry.await.context("schema registry endpoint task")??;
    }
    if let Some(admin) = admin {
        admin
            .await
            .context("admin server task")?
            .context("admin server failed")?;
    }
    ops.await
        .context("health server task")?
        .context("health server failed")?;
    tracing::info!(reason = ?stop.reason(), "stopped");
    Ok(stop.exit_code(args.exit_zero_on_sigterm))
}

/// The library configuration the flags describe, for one cluster.
fn builder(
    args: &ProxyArgs,
    provider: KafkaTokenProvider,
    bootstrap: &[String],
    broker_port_base: u16,
) -> anyhow::Result<gcp_kafka_auth_handler::proxy::ProxyBuilder> {
    let mut builder = Proxy::builder(provider)
        .with_bootstrap_servers(bootstrap)
        .with_broker_port_base(broker_port_base)
        .with_advertised_host(&args.advertised_host)
        .with_upstream_tls(args.upstream_tls)
        .with_sasl(match args.upstream_sasl {
            UpstreamSasl::Oauthbearer => SaslMechanism::OauthBearer,
            UpstreamSasl::Plain => SaslMechanism::Plain,
        })
        .with_connection_buffer_bytes(args.connection_buffer_bytes)
        .with_max_buffered_bytes(args.max_buffered_bytes)
        .with_max_rewritten_response_bytes(args.max_rewritten_response_bytes)
        .with_max_in_flight(args.max_in_flight)
        .with_first_request_timeout(args.first_request_timeout)
        .with_idle_timeout(args.idle_timeout)
        .with_drain_timeout(args.max_sigterm_delay);
    for (host, ip) in &args.resolve {
        builder = builder.with_resolve(host, *ip);
    }
    if let Some(forward) = &args.forward_proxy {
        builder = builder.with_forward_proxy(forward.clone());
    }
    if let Some(path) = &args.upstream_ca_file {
        builder = builder
            .with_upstream_ca_file(path)
            .map_err(proxy_errors::build_error)?;
    }
    Ok(builder)
}

/// `--check`: for each cluster, the lookup and the start-up probe once, reported on stdout.
async fn check(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let provider = super::credentials::build_provider(&args.provider, args.principal.as_deref())?;
    let options = LookupOptions {
        endpoint: args.managed_kafka_endpoint.clone(),
        quota_project: args.quota_project.clone(),
        timeout: None,
    };
    let mut code = ExitCode::SUCCESS;
    let plans = plans(
        &args.clusters,
        &args.bootstrap_servers,
        args.listen,
        args.broker_port_base,
    )?;
    let many = plans.len() > 1;
    for plan in plans {
        let label = if many {
            format!("{}: ", plan.label)
        } else {
            String::new()
        };
        let bootstrap = match &plan.target {
            Target::Bootstrap(servers) => servers.clone(),
            Target::Cluster(name) => match lookup(&provider, name, &options).await {
                Ok(found) => vec![found],
                Err(why) => {
                    println!("not ready: {label}{why:#}");
                    code = ExitCode::from(1);
                    continue;
                }
            },
        };
        let proxy = builder(&args, provider.clone(), &bootstrap, plan.broker_port_base)?
            .build()
            .map_err(proxy_errors::build_error)?;
        match proxy.check().await {
            Ok(brokers) => {
                println!(
                    "ok: {label}bootstrap Metadata round trip succeeded; {} brokers",
                    brokers.len()
                );
                for (broker, port) in brokers {
                    println!(
                        "  node {} at {}:{} -> {}:{port}",
                        broker.node_id, broker.host, broker.port, args.advertised_host
                    );
                }
            }
            Err(why) => {
                println!("not ready: {label}{}", proxy_errors::check_error(&why));
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
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
