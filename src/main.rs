//! The `gcp-kafka-auth-handler` binary: parses the command line and hands it to the
//! subcommand's module in `commands/`, which holds everything else.
#![forbid(unsafe_code)]

mod commands;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

/// OAuth2 token endpoint for Kafka clients of Google Cloud Managed Service for Apache Kafka.
///
/// Turns Google Application Default Credentials into the SASL/OAUTHBEARER token Managed
/// Kafka accepts, caches it and refreshes it ahead of expiry.
#[derive(Debug, Parser)]
#[command(name = "gcp-kafka-auth-handler", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the token endpoint (default: http://localhost:14293, on 127.0.0.1 and ::1).
    Serve(Box<commands::serve::ServeArgs>),
    /// Print the Kafka token once (for scripts), or keep a file fresh with it (--output).
    Token(commands::token::TokenArgs),
    /// Print ready-to-paste Kafka client configuration for the endpoint.
    ClientConfig(commands::client_config::ClientConfigArgs),
    /// Ask a running sidecar whether it is ready (exit 0) or not (exit 1), for container
    /// health checks in images without curl.
    Healthcheck(commands::healthcheck::HealthcheckArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(commands::completions::CompletionsArgs),
    /// Explain which credentials would be used and whether a token can be served.
    Doctor(commands::doctor::DoctorArgs),
    /// Run a Kafka-protocol proxy: clients connect in plaintext with only bootstrap.servers
    /// set; the proxy authenticates every broker connection and rewrites broker addresses.
    Proxy(Box<commands::proxy::ProxyArgs>),
    /// Serve a local, Confluent-compatible schema registry endpoint (default
    /// http://localhost:8081) for a Managed Kafka schema registry: clients set only
    /// schema.registry.url; the endpoint adds Google's bearer token.
    SchemaRegistry(Box<commands::schema_registry::SchemaRegistryArgs>),
    /// Wait until the proxy (or sidecar) on the health port is ready: exit 0 then, 1 after
    /// --timeout. For init ordering where native sidecars are not available.
    Wait(commands::wait::WaitArgs),
    /// Print the version, target and git commit as JSON.
    Version,
}

fn main() -> ExitCode {
    let cli: Cli = commands::config_file::parse();
    match cli.command {
        Command::Version => {
            commands::version::run();
            ExitCode::SUCCESS
        }
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Serve(args) => {
            commands::init_logging(&args.log);
            commands::run_async(async move {
                commands::serve::run(*args)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            })
        }
        Command::Proxy(args) => {
            commands::init_logging(&args.log);
            commands::run_async(commands::proxy::run(*args))
        }
        Command::SchemaRegistry(args) => {
            commands::init_logging(&args.log);
            commands::run_async(async move {
                commands::schema_registry::run(*args)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            })
        }
        Command::Token(args) => {
            commands::init_logging(&args.log);
            commands::run_async(commands::token::run(args))
        }
        Command::ClientConfig(args) => commands::client_config::run(&args),
        Command::Healthcheck(args) => commands::healthcheck::run(&args),
        Command::Wait(args) => commands::wait::run(&args),
        Command::Completions(args) => {
            commands::completions::run(&args, Cli::command());
            ExitCode::SUCCESS
        }
    }
}
