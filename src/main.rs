//! The `gcp-kafka-auth-handler` binary: parses flags, sets up logging, builds the endpoint
//! from the library and serves it until SIGTERM or SIGINT.
#![forbid(unsafe_code)]

mod cli;

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use gcp_kafka_auth_handler::{Env, KafkaTokenProvider, doctor, server};

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
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("the tokio runtime starts");
            match runtime.block_on(serve(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err:#}");
                    eprintln!("error: {err:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn init_logging(args: &LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|e| {
        eprintln!(
            "warning: invalid log filter `{}` ({e}); using `info`",
            args.log
        );
        tracing_subscriber::EnvFilter::new("info")
    });
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
    let mut builder = KafkaTokenProvider::builder()
        .with_env(Env::from_process())
        .with_refresh_margin(args.refresh_margin);
    if let Some(principal) = &args.principal {
        builder = builder.with_principal(principal);
    }
    if let Some(chain) = args.impersonation.impersonate_service_account {
        builder = builder.with_impersonation(chain);
    }
    let provider = builder.build().context("invalid configuration")?;
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
    tracing::info!(address = %local, version = env!("CARGO_PKG_VERSION"), "listening; token endpoint is http://{local}");
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
