//! The binary's subcommands, one module each. Each owns its clap arguments and its `run`;
//! argument groups several commands share live in the leaf `args`. Adding a command means a
//! module here and a variant in `main.rs`'s `Command`.

pub mod args;
pub mod client_config;
pub mod completions;
pub mod config_file;
pub mod credentials;
pub mod doctor;
pub mod endpoint_errors;
pub mod healthcheck;
pub mod proxy;
pub mod proxy_args;
pub mod proxy_check;
pub mod proxy_errors;
pub mod proxy_listen;
pub mod proxy_lookup;
pub mod proxy_plan;
pub mod proxy_ports;
pub mod proxy_stop;
pub mod registry_errors;
pub mod schema_registry;
pub mod serve;
pub mod token;
pub mod version;
pub mod wait;

use std::process::ExitCode;

use crate::commands::args::{LogArgs, LogFormat};

/// The log target of the process's own lines (listening, stopped, fatal errors): the crate's
/// name, as it was when they were logged from `main.rs`, so `--log gcp_kafka_auth_handler=...`
/// filters and log searches keep matching them wherever the code lives.
const LOG_TARGET: &str = "gcp_kafka_auth_handler";

/// The log target of `proxy`'s lines, as when they were all logged from `commands/proxy.rs`,
/// for the files it was split into.
const PROXY_LOG_TARGET: &str = "gcp_kafka_auth_handler::commands::proxy";

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
