//! The binary's subcommands, one module each. Each owns its clap arguments and its `run`;
//! argument groups several commands share live in the leaf `args`. Adding a command means a
//! module here and a variant in `main.rs`'s `Command`.

pub mod args;
pub mod client_config;
pub mod completions;
pub mod config_file;
pub mod credentials;
pub mod doctor;
pub mod healthcheck;
pub mod proxy;
pub mod proxy_errors;
pub mod registry_errors;
pub mod schema_registry;
pub mod serve;
pub mod token;
pub mod version;
pub mod wait;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use gcp_kafka_auth_handler::BuildError;
use gcp_kafka_auth_handler::ImpersonationChain;
use gcp_kafka_auth_handler::{Env, KafkaTokenProvider};

use crate::commands::args::{LogArgs, LogFormat};

/// The log target of the process's own lines (listening, stopped, fatal errors): the crate's
/// name, as it was when they were logged from `main.rs`, so `--log gcp_kafka_auth_handler=...`
/// filters and log searches keep matching them wherever the code lives.
const LOG_TARGET: &str = "gcp_kafka_auth_handler";

/// A provider for the process environment, with errors that name the option to fix.
pub fn build_provider(
    principal: Option<&str>,
    refresh_margin: Duration,
    impersonation: Option<ImpersonationChain>,
) -> anyhow::Result<KafkaTokenProvider> {
    let mut builder = KafkaTokenProvider::builder()
        .with_env(Env::from_process())
        .with_refresh_margin(refresh_margin);
    if let Some(principal) = principal {
        builder = builder.with_principal(principal);
    }
    if let Some(chain) = impersonation {
        builder = builder.with_impersonation(chain);
    }
    builder.build().map_err(|err| match err {
        BuildError::Principal(_) => {
            anyhow!("invalid --principal (GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL): {err}")
        }
        BuildError::RefreshMargin { .. } => {
            anyhow!("invalid --refresh-margin (GCP_KAFKA_AUTH_REFRESH_MARGIN): {err}")
        }
        _ => anyhow!("{err}"),
    })
}

/// Runs `task` on a multi-threaded runtime; an error is logged, printed and exits with 2.
pub fn run_async(task: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(task) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(target: LOG_TARGET, "{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Installs the tracing subscriber `--log` and `--log-format` describe, writing to stderr.
pub fn init_logging(args: &LogArgs) {
    // `--log` was checked by `args::parse_log_filter`.
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
