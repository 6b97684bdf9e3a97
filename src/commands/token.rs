//! `token`: the Kafka token for scripts, once on stdout, or kept fresh in a file.
//!
//! `--output FILE` is for clients that read the token from a file: Kafka's `file://` token
//! endpoint URLs (kafka-clients 4.1+ re-read the file when it changes) and tools such as kcat.
//! Every write goes to a temporary file in the same directory, created with mode 0600, which
//! is then renamed over FILE: readers see the old token or the new one, never a partial file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use gcp_kafka_auth_handler::{KafkaToken, KafkaTokenProvider, server};

use crate::commands::args::{LogArgs, parse_duration};

/// How often `--output` checks the cache for a refreshed token. Reading the cache costs a
/// lock-free borrow; the refresh itself happens on the cache's own schedule, minutes before
/// expiry, so a second of delay is immaterial.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Print the whole OAuth2 token response (JSON) instead of the bare token; with
    /// `--output`, write that JSON to the file.
    #[arg(long, env = "GCP_KAFKA_AUTH_TOKEN_JSON")]
    pub json: bool,

    /// Write the token to FILE (atomically, mode 0600) and keep it fresh until SIGTERM/SIGINT.
    #[arg(long, value_name = "FILE", env = "GCP_KAFKA_AUTH_TOKEN_OUTPUT")]
    pub output: Option<PathBuf>,

    /// Refresh the Google token when this much of its life is left (e.g. 300s, 5m).
    #[arg(long, env = "GCP_KAFKA_AUTH_REFRESH_MARGIN", default_value = "5m", value_parser = parse_duration)]
    pub refresh_margin: Duration,

    /// Principal (`sub`) to put in tokens instead of the one the credentials name.
    #[arg(long, env = "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL")]
    pub principal: Option<String>,

    #[command(flatten)]
    pub impersonation: crate::commands::args::ImpersonationArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Runs the command inside a tokio runtime.
pub async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let provider = super::build_provider(
        args.principal.as_deref(),
        args.refresh_margin,
        args.impersonation.impersonate_service_account.clone(),
    )?;
    match &args.output {
        None => {
            let token = provider
                .token()
                .await
                .context("no Kafka token could be had")?;
            println!("{}", render(&token, args.json));
            Ok(ExitCode::SUCCESS)
        }
        Some(path) => {
            keep_fresh(&provider, path, args.json, server::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The file or stdout content: the bare token, or the OAuth2 response the endpoint serves.
fn render(token: &KafkaToken, json: bool) -> String {
    if !json {
        return token.expose().to_owned();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    serde_json::json!({
        "access_token": token.expose(),
        "token_type": "Bearer",
        "expires_in": token.expires_at_unix().saturating_sub(now),
    })
    .to_string()
}

/// Writes every new token to `path` until `shutdown` completes.
async fn keep_fresh(
    provider: &KafkaTokenProvider,
    path: &Path,
    json: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    // The token last written, compared by value: a refresh always brings a new token.
    let mut written: Option<KafkaToken> = None;
    let mut failing = false;
    loop {
        let outcome = tokio::select! {
            _ = &mut shutdown => break,
            outcome = provider.token() => outcome,
        };
        match outcome {
            Ok(token)
                if written
                    .as_ref()
                    .is_some_and(|w| w.expose() == token.expose()) => {}
            Ok(token) => {
                write_atomically(path, render(&token, json).as_bytes())
                    .with_context(|| format!("cannot write the token to {}", path.display()))?;
                tracing::info!(
                    path = %path.display(),
                    principal = %token.principal(),
                    expires_at = token.expires_at_unix(),
                    "wrote a fresh token"
                );
                written = Some(token);
                failing = false;
            }
            // The refresh task logs each failure; here only the change of state is news.
            Err(err) if !failing => {
                tracing::warn!(error = %err, path = %path.display(), "no fresh token to write yet; the file keeps the last one");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    tracing::info!(path = %path.display(), "stopped; the file keeps the last token");
    Ok(())
}

/// Replaces `path` with `content`: a temporary file (mode 0600) in the same directory,
/// flushed to disk, then renamed over `path`, which is atomic within one file system.
fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // tempfile creates the file with O_EXCL and mode 0600 on Unix.
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(content)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable; a failure here does not undo a completed rename.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_file_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["token"]);
    }
}
