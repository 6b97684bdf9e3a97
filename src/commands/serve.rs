//! `serve`: the token endpoint on a listener, until SIGTERM or SIGINT.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use gcp_kafka_auth_handler::endpoint::{ClientCredentials, EndpointConfig};
use gcp_kafka_auth_handler::server;

use crate::commands::args::{ImpersonationArgs, LogArgs, Secret, parse_duration};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback lets other hosts fetch tokens.
    #[arg(long, env = "GCP_KAFKA_AUTH_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "GCP_KAFKA_AUTH_PORT", default_value_t = 14293)]
    pub port: u16,

    /// Refresh the Google token when this much of its life is left (e.g. 300s, 5m).
    #[arg(long, env = "GCP_KAFKA_AUTH_REFRESH_MARGIN", default_value = "5m", value_parser = parse_duration)]
    pub refresh_margin: Duration,

    /// Principal (`sub`) to put in tokens instead of the one the credentials name.
    #[arg(long, env = "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL")]
    pub principal: Option<String>,

    #[command(flatten)]
    pub impersonation: ImpersonationArgs,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "GCP_KAFKA_AUTH_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub security: SecurityArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Also answer requests whose Host is this name or address (repeatable; the environment
    /// variable takes a comma-separated list). Loopback names and addresses are always answered.
    #[arg(
        long = "allowed-host",
        env = "GCP_KAFKA_AUTH_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Require this client id (with --client-secret or --client-secret-file) on token requests.
    #[arg(long, env = "GCP_KAFKA_AUTH_CLIENT_ID")]
    pub client_id: Option<String>,

    /// The client secret token requests must carry. Prefer the environment variable or
    /// --client-secret-file: a flag shows in the process list.
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_CLIENT_SECRET",
        hide_env_values = true,
        conflicts_with = "client_secret_file"
    )]
    pub client_secret: Option<Secret>,

    /// File holding the client secret (a trailing newline is ignored).
    #[arg(long, env = "GCP_KAFKA_AUTH_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,

    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, env = "GCP_KAFKA_AUTH_MAX_CONNECTIONS", default_value_t = 2048)]
    pub max_connections: usize,

    /// Time a client has to send a request's headers; also the idle timeout of a connection.
    #[arg(long, env = "GCP_KAFKA_AUTH_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Time from a request's headers to its response (503 temporarily_unavailable after it).
    #[arg(long, env = "GCP_KAFKA_AUTH_REQUEST_DEADLINE", default_value = "18s", value_parser = parse_duration)]
    pub request_deadline: Duration,
}

/// Runs the command inside a tokio runtime.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let endpoint = endpoint_config(&args)?;
    let limits = server::Limits {
        max_connections: args.security.max_connections,
        header_read_timeout: args.security.header_read_timeout,
        request_deadline: args.security.request_deadline,
        ..server::Limits::default()
    };
    // Before the listener exists, so no SIGTERM after "listening" can kill us ungracefully.
    let shutdown = server::shutdown_signal();
    // Listen first: building the provider loads the system's root certificates for the HTTPS
    // clients (tens of milliseconds), and clients that connect meanwhile wait in the backlog
    // instead of being refused.
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let provider = super::build_provider(
        args.principal.as_deref(),
        args.refresh_margin,
        args.impersonation.impersonate_service_account,
    )?;
    let local = listener.local_addr()?;
    if !args.bind.is_loopback() {
        let who = if endpoint.client_credentials_required() {
            "every host that can reach this address and knows the client id and secret"
        } else {
            "every host that can reach this address, without authentication"
        };
        tracing::warn!(
            target: super::LOG_TARGET,
            address = %local,
            credentials = %provider.describe_source(),
            "listening on a non-loopback address: {who} can fetch Kafka tokens for these Google credentials; bind 127.0.0.1 or ::1 unless that is intended, and consider --client-id/--client-secret"
        );
    }
    tracing::info!(
        target: super::LOG_TARGET,
        address = %local,
        version = env!("CARGO_PKG_VERSION"),
        refresh_margin_s = args.refresh_margin.as_secs(),
        shutdown_timeout_s = args.shutdown_timeout.as_secs(),
        principal_override = args.principal.as_deref(),
        "listening; token endpoint is http://{local}"
    );
    server::serve(
        listener,
        provider.router_with(endpoint),
        limits,
        shutdown,
        args.shutdown_timeout,
    )
    .await
    .context("server failed")?;
    tracing::info!(target: super::LOG_TARGET, "stopped");
    Ok(())
}

/// Allowed hosts and client credentials from the flags. A specific bind address is allowed
/// as a `Host` too: clients that reach the sidecar by that IP must be able to use it, and an
/// IP literal cannot be rebound by DNS.
fn endpoint_config(args: &ServeArgs) -> anyhow::Result<EndpointConfig> {
    let security = &args.security;
    let mut config = EndpointConfig::default();
    if !args.bind.is_unspecified() && !args.bind.is_loopback() {
        config = config.with_allowed_host(args.bind.to_string());
    }
    for host in &security.allowed_hosts {
        anyhow::ensure!(
            gcp_kafka_auth_handler::endpoint::host_without_port(host).is_some(),
            "--allowed-host `{host}` is not a host name or address (write e.g. kafka-auth.internal or 10.0.0.7)"
        );
        config = config.with_allowed_host(host);
    }
    let secret = match (&security.client_secret, &security.client_secret_file) {
        (Some(secret), _) => Some(secret.0.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the client secret file {}", path.display())
            })?;
            Some(text.trim_end_matches(['\r', '\n']).to_owned())
        }
        (None, None) => None,
    };
    match (&security.client_id, secret) {
        (Some(id), Some(secret)) => {
            anyhow::ensure!(
                !id.is_empty() && !secret.is_empty(),
                "--client-id and the client secret must not be empty"
            );
            config = config.with_client_credentials(ClientCredentials::new(id, secret));
        }
        (None, None) => {}
        (Some(_), None) => anyhow::bail!(
            "--client-id needs a secret: set --client-secret-file, GCP_KAFKA_AUTH_CLIENT_SECRET or --client-secret"
        ),
        (None, Some(_)) => anyhow::bail!(
            "a client secret is set but no --client-id (GCP_KAFKA_AUTH_CLIENT_ID); set both"
        ),
    }
    Ok(config)
}
