//! Argument groups and value parsers shared by several subcommands (a leaf: it imports no
//! command, so every command can import it).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use gcp_kafka_auth_handler::ImpersonationChain;

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

/// Where the provider of `serve`, `token`, `proxy` and `schema-registry` gets its Google
/// credentials, and when it refreshes them; `credentials::build_provider` turns it into a
/// provider. `--principal` is not here: its meaning differs per command (and the schema
/// registry has none).
#[derive(Debug, Args)]
pub struct ProviderArgs {
    /// Use this credentials JSON file (service account key, authorized_user,
    /// external_account, impersonated_service_account) instead of the ADC search; the same
    /// as setting GOOGLE_APPLICATION_CREDENTIALS.
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_CREDENTIALS_FILE",
        value_name = "FILE",
        conflicts_with = "token"
    )]
    pub credentials_file: Option<PathBuf>,

    /// Use this OAuth2 access token as is, for short jobs: it is never refreshed, and since
    /// Google access tokens live at most an hour, no Kafka token is handed out after that.
    #[arg(
        long,
        env = "GCP_KAFKA_AUTH_TOKEN",
        value_name = "ACCESS_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<Secret>,

    #[command(flatten)]
    pub impersonation: ImpersonationArgs,

    /// Refresh the Google token when this much of its life is left (e.g. 300s, 5m).
    #[arg(long, env = "GCP_KAFKA_AUTH_REFRESH_MARGIN", default_value = "5m", value_parser = parse_duration)]
    pub refresh_margin: Duration,
}

#[derive(Debug, Args)]
pub struct ImpersonationArgs {
    /// Impersonate this service account with the credentials found (like gcloud's flag):
    /// EMAIL, or DELEGATE,...,EMAIL for a delegation chain whose last entry is the target.
    #[arg(long, env = "GCP_KAFKA_AUTH_IMPERSONATE_SERVICE_ACCOUNT", value_name = "[DELEGATE,...,]EMAIL", value_parser = parse_chain)]
    pub impersonate_service_account: Option<ImpersonationChain>,
}

fn parse_chain(text: &str) -> Result<ImpersonationChain, String> {
    ImpersonationChain::parse(text).map_err(|err| err.to_string())
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
