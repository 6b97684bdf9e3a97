//! Command-line syntax (clap). `main` turns these into validated library configuration.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gcp_kafka_auth_handler::ImpersonationChain;

/// OAuth2 token endpoint for Kafka clients of Google Cloud Managed Service for Apache Kafka.
///
/// Turns Google Application Default Credentials into the SASL/OAUTHBEARER token Managed
/// Kafka accepts, caches it and refreshes it ahead of expiry.
#[derive(Debug, Parser)]
#[command(name = "gcp-kafka-auth-handler", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the token endpoint (default: http://127.0.0.1:14293).
    Serve(Box<ServeArgs>),
    /// Print the Kafka token once (for scripts), or keep a file fresh with it (--output).
    Token(crate::commands::token::TokenArgs),
    /// Print ready-to-paste Kafka client configuration for the endpoint.
    ClientConfig(crate::commands::client_config::ClientConfigArgs),
    /// Ask a running sidecar whether it is ready (exit 0) or not (exit 1), for container
    /// health checks in images without curl.
    Healthcheck(crate::commands::healthcheck::HealthcheckArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(crate::commands::completions::CompletionsArgs),
    /// Explain which credentials would be used and whether a token can be served.
    Doctor(DoctorArgs),
    /// Print the version, target and git commit as JSON.
    Version,
}

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

    /// Also require the client id and secret (HTTP Basic) on /readyz and /metrics, which show
    /// the principal, the token's expiry and upstream failure reasons. /healthz stays open.
    #[arg(long, env = "GCP_KAFKA_AUTH_AUTHENTICATE_OPERATIONS")]
    pub authenticate_operations: bool,

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

/// A secret from the command line or environment, censored in `Debug`.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[censored]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Debug, Args)]
pub struct ImpersonationArgs {
    /// Impersonate this service account with the credentials found (like gcloud's flag):
    /// EMAIL, or DELEGATE,...,EMAIL for a delegation chain whose last entry is the target.
    #[arg(long, env = "GCP_KAFKA_AUTH_IMPERSONATE_SERVICE_ACCOUNT", value_name = "[DELEGATE,...,]EMAIL", value_parser = parse_chain)]
    pub impersonate_service_account: Option<ImpersonationChain>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Principal (`sub`) to check instead of the one the credentials name.
    #[arg(long, env = "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL")]
    pub principal: Option<String>,

    #[command(flatten)]
    pub impersonation: ImpersonationArgs,
}

fn parse_chain(text: &str) -> Result<ImpersonationChain, String> {
    ImpersonationChain::parse(text)
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "GCP_KAFKA_AUTH_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax (e.g. `info`, `gcp_kafka_auth_handler=debug`).
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = parse_log_filter)]
    pub log: String,
}

/// A filter `tracing_subscriber` accepts, refused at start otherwise.
pub fn parse_log_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("`{text}` is not a log filter ({e}); write e.g. info, warn or gcp_kafka_auth_handler=debug"))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `300`, `300s`, `5m`, `1h 30m`: a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 300s, 5m or 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_bare_seconds_and_units() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("`soon` is not a duration")
        );
    }
}
