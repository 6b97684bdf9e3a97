//! `serve`: the token endpoint on a listener, until SIGTERM or SIGINT.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use gcp_kafka_auth_handler::endpoint::{ClientCredentials, EndpointConfig};
use gcp_kafka_auth_handler::files;
use gcp_kafka_auth_handler::server;

use crate::commands::args::{LogArgs, ProviderArgs, Secret, parse_duration};
use crate::commands::endpoint_errors::Port;
use crate::commands::schema_registry::{self, RegistryFlags};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1 and ::1 on the same port, so that no other
    /// local process can take the IPv6 half of `localhost`]. Anything but loopback lets other
    /// hosts fetch tokens.
    #[arg(long, env = "GCP_KAFKA_AUTH_BIND")]
    pub bind: Option<IpAddr>,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "GCP_KAFKA_AUTH_PORT", default_value_t = 14293)]
    pub port: u16,

    #[command(flatten)]
    pub provider: ProviderArgs,

    /// Principal (`sub`) to put in tokens instead of the one the credentials name.
    #[arg(long, env = "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL")]
    pub principal: Option<String>,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "GCP_KAFKA_AUTH_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub security: SecurityArgs,

    #[command(flatten)]
    pub registry: RegistryFlags,

    /// The project billed for the schema registry calls (sent as x-goog-user-project; with
    /// --schema-registry).
    #[arg(long, env = "GCP_KAFKA_AUTH_QUOTA_PROJECT", value_name = "PROJECT")]
    pub quota_project: Option<String>,

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

    /// Also require the client id and secret (HTTP Basic) on /readyz and /metrics, which show
    /// the principal, the token's expiry and upstream failure reasons. /healthz stays open.
    #[arg(long, env = "GCP_KAFKA_AUTH_AUTHENTICATE_OPERATIONS")]
    pub authenticate_operations: bool,

    /// Connections served at once. At the limit the longest-idle connection is closed for each
    /// new one; while all have a request in flight, more wait in the listen backlog.
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
    // One signal stops both the token endpoint and, with --schema-registry, the registry's.
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
    // Listen first: building the provider loads the system's root certificates for the HTTPS
    // clients (tens of milliseconds), and clients that connect meanwhile wait in the backlog
    // instead of being refused.
    let listeners = match args.bind {
        None => super::endpoint_errors::bind_loopback(args.port, Port::Serve).await?,
        Some(ip) => {
            let addr = SocketAddr::new(ip, args.port);
            vec![
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?,
            ]
        }
    };
    let provider = super::credentials::build_provider(&args.provider, args.principal.as_deref())?;
    let addresses = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<std::io::Result<Vec<_>>>()?;
    let local = addresses[0];
    let also: String = addresses[1..]
        .iter()
        .map(|a| format!(" (also http://{a})"))
        .collect();
    if args.bind.is_some_and(|ip| !ip.is_loopback()) {
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
        refresh_margin_s = args.provider.refresh_margin.as_secs(),
        shutdown_timeout_s = args.shutdown_timeout.as_secs(),
        principal_override = args.principal.as_deref(),
        "listening; token endpoint is http://{local}{also}"
    );
    let registry = match args.registry.schema_registry.clone() {
        Some(name) => {
            let prepared = schema_registry::prepare(
                provider.clone(),
                name,
                args.registry.schema_registry_listen,
                args.registry.schema_registry_endpoint.as_deref(),
                args.quota_project.as_deref(),
                &args.security.allowed_hosts,
                Port::ServeSchemaRegistry,
            )
            .await?;
            Some(tokio::spawn(schema_registry::serve(
                prepared,
                stopped(),
                args.shutdown_timeout,
            )))
        }
        None => None,
    };
    server::serve(
        listeners,
        provider.router_with(endpoint),
        limits,
        stopped(),
        args.shutdown_timeout,
    )
    .await
    .context("server failed")?;
    if let Some(registry) = registry {
        registry.await.context("schema registry endpoint task")??;
    }
    tracing::info!(target: super::LOG_TARGET, "stopped");
    Ok(())
}

/// Allowed hosts and client credentials from the flags (a specific bind address is allowed as
/// a `Host` too: `endpoint_config_on`).
fn endpoint_config(args: &ServeArgs) -> anyhow::Result<EndpointConfig> {
    let security = &args.security;
    let mut config = super::endpoint_errors::endpoint_config_on(
        Port::Serve,
        args.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    );
    for host in &security.allowed_hosts {
        anyhow::ensure!(
            gcp_kafka_auth_handler::endpoint::host_without_port(host).is_some(),
            "--allowed-host `{host}` is not a host name or address (write e.g. kafka-auth.internal or 10.0.0.7)"
        );
        config = config.with_allowed_host(host);
    }
    let secret = match (&security.client_secret, &security.client_secret_file) {
        (Some(secret), _) => Some(secret.0.clone()),
        (None, Some(path)) => Some(read_secret_file(path)?),
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
    if security.authenticate_operations {
        anyhow::ensure!(
            config.client_credentials_required(),
            "--authenticate-operations needs --client-id and a client secret: it requires them on /readyz and /metrics"
        );
        config = config.with_authenticated_operations();
    }
    Ok(config)
}

/// The client secret in `path` without its trailing newline: a regular file of at most
/// [`files::MAX_SECRET_FILE_BYTES`] (a FIFO or `/dev/zero` is refused, not read), in UTF-8.
/// A file every user may read is served anyway, with a warning: the secret is then shared with
/// every local account, which is what client authentication is meant to prevent.
fn read_secret_file(path: &std::path::Path) -> anyhow::Result<String> {
    let what = || format!("cannot read the client secret file {}", path.display());
    let bytes = files::read_capped(path, files::MAX_SECRET_FILE_BYTES, "a client secret file")
        .with_context(what)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: it is not UTF-8 text", what()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o004 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the client secret file {} is readable by every user on this host (mode {mode:o}); restrict it with chmod 600",
                    path.display()
                );
            }
        }
    }
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}
