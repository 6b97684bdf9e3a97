//! The `gcp-kafka-auth-handler` binary: parses flags, sets up logging, builds the endpoint
//! from the library and serves it until SIGTERM or SIGINT.
#![forbid(unsafe_code)]

mod cli;
mod commands;

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use gcp_kafka_auth_handler::{Env, doctor, server};

use cli::{Cli, Command, LogArgs, LogFormat, ServeArgs};
use gcp_kafka_auth_handler::endpoint::{ClientCredentials, EndpointConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!(
                "{}",
                serde_json::json!({
                    "name": env!("CARGO_PKG_NAME"),
                    "version": env!("CARGO_PKG_VERSION"),
                    "target": env!("GKAH_TARGET"),
                    "git_commit": env!("GKAH_GIT_COMMIT"),
                })
            );
            ExitCode::SUCCESS
        }
        Command::Doctor(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the tokio runtime starts");
            let options = doctor::Options {
                principal: args.principal,
                impersonate: args.impersonation.impersonate_service_account,
            };
            let report = runtime.block_on(doctor::examine(Env::from_process(), options));
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if report.can_serve() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Serve(args) => {
            init_logging(&args.log);
            run_async(async move { serve(*args).await.map(|()| ExitCode::SUCCESS) })
        }
        Command::Token(args) => {
            init_logging(&args.log);
            run_async(commands::token::run(args))
        }
        Command::ClientConfig(args) => commands::client_config::run(&args),
        Command::Healthcheck(args) => commands::healthcheck::run(&args),
        Command::Completions(args) => {
            commands::completions::run(&args);
            ExitCode::SUCCESS
        }
    }
}

/// Runs `task` on a multi-threaded runtime; an error is logged, printed and exits with 2.
fn run_async(task: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(task) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(args: &LogArgs) {
    // `--log` was checked by `cli::parse_log_filter`.
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
    let provider = commands::build_provider(
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
            address = %local,
            credentials = %provider.describe_source(),
            "listening on a non-loopback address: {who} can fetch Kafka tokens for these Google credentials; bind 127.0.0.1 or ::1 unless that is intended, and consider --client-id/--client-secret"
        );
    }
    tracing::info!(
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
    tracing::info!("stopped");
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
    if security.authenticate_operations {
        anyhow::ensure!(
            config.client_credentials_required(),
            "--authenticate-operations needs --client-id and a client secret: it requires them on /readyz and /metrics"
        );
        config = config.with_authenticated_operations();
    }
    Ok(config)
}
