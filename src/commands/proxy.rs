//! `proxy`: the Kafka-protocol proxy (library module `proxy`), its health/metrics port and,
//! with `--token-endpoint`, the token endpoint from the same provider.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Args, ValueEnum};
use gcp_kafka_auth_handler::proxy::{Proxy, SaslMechanism};
use gcp_kafka_auth_handler::server;

use crate::commands::args::{ImpersonationArgs, LogArgs, parse_duration};

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// A broker to bootstrap from, HOST:PORT (repeatable, or comma-separated as in
    /// bootstrap.servers): the cluster's bootstrapAddress.
    #[arg(
        long = "bootstrap-server",
        env = "GCP_KAFKA_AUTH_BOOTSTRAP_SERVER",
        value_delimiter = ',',
        required = true,
        value_name = "HOST:PORT"
    )]
    pub bootstrap_servers: Vec<String>,

    /// The bootstrap listener clients put in bootstrap.servers (plaintext, no SASL).
    #[arg(long, env = "GCP_KAFKA_AUTH_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

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

    /// Address of the /healthz, /readyz and /metrics port.
    #[arg(long, env = "GCP_KAFKA_AUTH_HTTP_ADDRESS", default_value = "127.0.0.1")]
    pub http_address: IpAddr,

    /// Port of /healthz, /readyz and /metrics (0 picks a free one).
    #[arg(long, env = "GCP_KAFKA_AUTH_HTTP_PORT", default_value_t = 9090)]
    pub http_port: u16,

    /// Also serve the token endpoint (same provider, one token cache), by default on
    /// 127.0.0.1:14293.
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_TOKEN_ENDPOINT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "127.0.0.1:14293",
        value_name = "ADDR:PORT"
    )]
    pub token_endpoint: Option<SocketAddr>,

    /// Client connections served at once over all listeners; more wait in the backlog.
    #[arg(long, env = "GCP_KAFKA_AUTH_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Refresh the Google token when this much of its life is left (e.g. 300s, 5m).
    #[arg(long, env = "GCP_KAFKA_AUTH_REFRESH_MARGIN", default_value = "5m", value_parser = parse_duration)]
    pub refresh_margin: Duration,

    /// Principal (`sub`, and the PLAIN username) instead of the one the credentials name.
    #[arg(long, env = "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL")]
    pub principal: Option<String>,

    #[command(flatten)]
    pub impersonation: ImpersonationArgs,

    /// How long requests in flight may take to be answered after SIGTERM/SIGINT.
    #[arg(long, env = "GCP_KAFKA_AUTH_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Check once instead of serving: token, TCP, TLS, SASL and a bootstrap Metadata round
    /// trip; print what was found (or what failed and the fix) and exit 0 or 1.
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

/// Runs the command inside a tokio runtime.
pub async fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    if args.check {
        return check(args).await;
    }
    // One signal, three servers.
    let signal = server::shutdown_signal();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on --listen {}", args.listen))?;
    let http_addr = SocketAddr::new(args.http_address, args.http_port);
    let http = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-address/--http-port {http_addr}"))?;
    let provider = super::build_provider(
        args.principal.as_deref(),
        args.refresh_margin,
        args.impersonation.impersonate_service_account.clone(),
    )?;
    let proxy = builder(&args, provider.clone())?.build()?;
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "the Kafka listener is not on loopback: every host that can reach it uses the cluster as {}",
            provider.describe_source()
        );
    }
    let limits = server::Limits {
        max_connections: 64,
        ..server::Limits::default()
    };
    let http_local = http.local_addr()?;
    tracing::info!(address = %http_local, "listening for health checks and metrics: http://{http_local}/readyz");
    let ops = tokio::spawn(server::serve(
        http,
        proxy.router(),
        limits,
        stopped(),
        Duration::from_secs(1),
    ));
    let token = match args.token_endpoint {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on --token-endpoint {addr}"))?;
            tracing::info!(address = %listener.local_addr()?, "token endpoint is http://{}", listener.local_addr()?);
            Some(tokio::spawn(server::serve(
                listener,
                provider.router(),
                server::Limits::default(),
                stopped(),
                args.shutdown_timeout,
            )))
        }
        None => None,
    };
    proxy.run(listener, stopped()).await?;
    if let Some(token) = token {
        token
            .await
            .context("token endpoint task")?
            .context("token endpoint failed")?;
    }
    ops.await
        .context("health server task")?
        .context("health server failed")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `--check`: the start-up probe once, reported on stdout.
async fn check(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let provider = super::build_provider(
        args.principal.as_deref(),
        args.refresh_margin,
        args.impersonation.impersonate_service_account.clone(),
    )?;
    let proxy = builder(&args, provider)?.build()?;
    match proxy.check().await {
        Ok(brokers) => {
            println!(
                "ok: bootstrap Metadata round trip succeeded; {} brokers",
                brokers.len()
            );
            for (broker, port) in brokers {
                println!(
                    "  node {} at {}:{} -> {}:{port}",
                    broker.node_id, broker.host, broker.port, args.advertised_host
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!("not ready: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The library configuration the flags describe.
fn builder(
    args: &ProxyArgs,
    provider: gcp_kafka_auth_handler::KafkaTokenProvider,
) -> anyhow::Result<gcp_kafka_auth_handler::proxy::ProxyBuilder> {
    let mut builder = Proxy::builder(provider)
        .with_bootstrap_servers(&args.bootstrap_servers)
        .with_broker_port_base(args.broker_port_base)
        .with_advertised_host(&args.advertised_host)
        .with_upstream_tls(args.upstream_tls)
        .with_sasl(match args.upstream_sasl {
            UpstreamSasl::Oauthbearer => SaslMechanism::OauthBearer,
            UpstreamSasl::Plain => SaslMechanism::Plain,
        })
        .with_max_connections(args.max_connections)
        .with_drain_timeout(args.shutdown_timeout);
    for (host, ip) in &args.resolve {
        builder = builder.with_resolve(host, *ip);
    }
    if let Some(path) = &args.upstream_ca_file {
        builder = builder.with_upstream_ca_file(path)?;
    }
    Ok(builder)
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
