//! `schema-registry`: the local schema registry endpoint (library module `registry`) on
//! `127.0.0.1:8081` and `[::1]:8081`, until SIGTERM or SIGINT; and `RegistryFlags`, the same
//! endpoint as `--schema-registry` of `serve` and `proxy`, from their provider.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use gcp_kafka_auth_handler::registry::{RegistryError, RegistryName, SchemaRegistryEndpoint};
use gcp_kafka_auth_handler::{KafkaTokenProvider, server};
use tokio::net::TcpListener;

use crate::commands::args::{LogArgs, ProviderArgs, parse_duration};
use crate::commands::endpoint_errors::Port;
use crate::commands::registry_errors;

#[derive(Debug, Args)]
pub struct SchemaRegistryArgs {
    /// The Managed Kafka schema registry, by resource name.
    #[arg(
        env = "GCP_KAFKA_AUTH_SCHEMA_REGISTRY",
        value_name = "projects/P/locations/L/schemaRegistries/R",
        value_parser = parse_registry_name
    )]
    pub registry: RegistryName,

    /// Where clients reach the endpoint; 127.0.0.1 (the default) also holds [::1] on the same
    /// port, so neither half of `localhost` can be squatted.
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_SCHEMA_REGISTRY_LISTEN",
        default_value = "127.0.0.1:8081",
        value_name = "ADDR:PORT"
    )]
    pub listen: SocketAddr,

    /// The Managed Kafka API base URL (default https://managedkafka.UNIVERSE_DOMAIN, from the
    /// credentials): a private endpoint or a test server.
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_SCHEMA_REGISTRY_ENDPOINT",
        value_name = "URL"
    )]
    pub schema_registry_endpoint: Option<String>,

    /// The project billed for the registry calls (sent as x-goog-user-project).
    #[arg(long, env = "GCP_KAFKA_AUTH_QUOTA_PROJECT", value_name = "PROJECT")]
    pub quota_project: Option<String>,

    /// Also answer requests whose Host is this name or address (repeatable; the environment
    /// variable takes a comma-separated list). Loopback names and addresses are always answered.
    #[arg(
        long = "allowed-host",
        env = "GCP_KAFKA_AUTH_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    #[command(flatten)]
    pub provider: ProviderArgs,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "GCP_KAFKA_AUTH_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub log: LogArgs,
}

/// `--schema-registry` and its companions on `serve` and `proxy`.
#[derive(Debug, Args)]
pub struct RegistryFlags {
    /// Also serve a local schema registry endpoint for this Managed Kafka schema registry
    /// (same provider, one token cache), on --schema-registry-listen.
    #[arg(
        long = "schema-registry",
        env = "GCP_KAFKA_AUTH_SCHEMA_REGISTRY",
        value_name = "projects/P/locations/L/schemaRegistries/R",
        value_parser = parse_registry_name
    )]
    pub schema_registry: Option<RegistryName>,

    /// Where the schema registry endpoint listens (127.0.0.1 also holds [::1]).
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_SCHEMA_REGISTRY_LISTEN",
        default_value = "127.0.0.1:8081",
        value_name = "ADDR:PORT"
    )]
    pub schema_registry_listen: SocketAddr,

    /// The Managed Kafka API base URL for the schema registry (default
    /// https://managedkafka.UNIVERSE_DOMAIN): a private endpoint or a test server.
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_SCHEMA_REGISTRY_ENDPOINT",
        value_name = "URL"
    )]
    pub schema_registry_endpoint: Option<String>,
}

fn parse_registry_name(text: &str) -> Result<RegistryName, String> {
    text.trim().parse().map_err(|e| format!("{e}"))
}

/// A bound, checked endpoint, ready to serve.
pub struct Prepared {
    pub listeners: Vec<TcpListener>,
    pub endpoint: SchemaRegistryEndpoint,
}

/// Binds `listen` (both loopback families for 127.0.0.1), builds the endpoint (a taken port
/// and a refused `Host` worded for `port`, the command serving it) and checks
/// that the registry exists and may be read, retrying what may pass (5xx, network) twice.
pub async fn prepare(
    provider: KafkaTokenProvider,
    name: RegistryName,
    listen: SocketAddr,
    endpoint_url: Option<&str>,
    quota_project: Option<&str>,
    allowed_hosts: &[String],
    port: Port,
) -> anyhow::Result<Prepared> {
    let listeners = if listen.ip() == Ipv4Addr::LOCALHOST {
        super::endpoint_errors::bind_loopback(listen.port(), port).await
    } else {
        TcpListener::bind(listen).await.map(|l| vec![l])
    }
    .with_context(|| format!("cannot listen on {listen} for the schema registry endpoint"))?;
    let mut config = super::endpoint_errors::endpoint_config_on(port, listen.ip());
    for host in allowed_hosts {
        anyhow::ensure!(
            gcp_kafka_auth_handler::endpoint::host_without_port(host).is_some(),
            "--allowed-host `{host}` is not a host name or address (write e.g. registry.internal or 10.0.0.7)"
        );
        config = config.with_allowed_host(host);
    }
    let mut builder = SchemaRegistryEndpoint::builder(provider, name.clone())
        .with_endpoint_config(config)
        .with_error_wording(registry_errors::registry_message);
    if let Some(url) = endpoint_url {
        builder = builder.with_endpoint(url);
    }
    if let Some(project) = quota_project {
        builder = builder.with_quota_project(project);
    }
    let endpoint = builder.build()?;
    let mut backoff = Duration::from_millis(500);
    for attempt in 1.. {
        match endpoint.check().await {
            Ok(()) => break,
            Err(
                err @ (RegistryError::Unreachable { .. }
                | RegistryError::Status {
                    status: 500..=599, ..
                }),
            ) if attempt < 3 => {
                let err = registry_errors::registry_message(&err);
                tracing::warn!("{err}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(err) => return Err(anyhow::anyhow!(registry_errors::registry_message(&err))),
        }
    }
    let local = listeners[0].local_addr()?;
    let base = endpoint.base_url().await?;
    if !listen.ip().is_loopback() {
        tracing::warn!(
            address = %local,
            "the schema registry endpoint is not on loopback: every host that can reach it uses {name} with these credentials"
        );
    }
    tracing::info!(
        target: super::LOG_TARGET,
        address = %local,
        registry = %name,
        upstream = %base,
        "listening; schema registry endpoint is http://{local} (clients set only schema.registry.url)"
    );
    Ok(Prepared {
        listeners,
        endpoint,
    })
}

/// Serves a prepared endpoint until `shutdown`.
pub async fn serve(
    prepared: Prepared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> anyhow::Result<()> {
    // Longer than the endpoint's 60 s upstream timeout, so a slow registry is answered in
    // Confluent's shape (502 from the endpoint), not with the server's generic deadline 503.
    let limits = server::Limits {
        request_deadline: Duration::from_secs(65),
        ..server::Limits::default()
    };
    server::serve(
        prepared.listeners,
        prepared.endpoint.router(),
        limits,
        shutdown,
        drain,
    )
    .await
    .context("schema registry endpoint failed")
}

/// Runs the command inside a tokio runtime.
pub async fn run(args: SchemaRegistryArgs) -> anyhow::Result<()> {
    let shutdown = server::shutdown_signal();
    let provider = super::credentials::build_provider(&args.provider, None)?;
    let prepared = prepare(
        provider,
        args.registry.clone(),
        args.listen,
        args.schema_registry_endpoint.as_deref(),
        args.quota_project.as_deref(),
        &args.allowed_hosts,
        Port::SchemaRegistry,
    )
    .await?;
    serve(prepared, shutdown, args.shutdown_timeout).await?;
    tracing::info!(target: super::LOG_TARGET, "stopped");
    Ok(())
}
