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
            run_async(async move { serve(args).await.map(|()| ExitCode::SUCCESS) })
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
    let provider = commands::build_provider(
        args.principal.as_deref(),
        args.refresh_margin,
        args.impersonation.impersonate_service_account,
    )?;
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    if !args.bind.is_loopback() {
        tracing::warn!(
            address = %local,
            "listening on a non-loopback address: every host that can reach it can fetch Kafka tokens for these credentials"
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
        provider.router(),
        server::shutdown_signal(),
        args.shutdown_timeout,
    )
    .await
    .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}
