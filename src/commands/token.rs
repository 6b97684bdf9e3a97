//! `token`: the Kafka token for scripts, once on stdout, or kept fresh in a file.
//!
//! `--output FILE` is for clients that read the token from a file: Kafka's `file://` token
//! endpoint URLs (kafka-clients 4.1+ re-read the file when it changes) and tools such as kcat.
//! Every write goes to a temporary file in the same directory, created with mode 0600, which
//! is then renamed over FILE: readers see the old token or the new one, never a partial file.
//!
//! FILE must be a regular file or not exist: a rename over `/dev/null` run as root would turn
//! the device into a token file, so a device, FIFO, socket, directory or symbolic link there
//! is refused (a link is written through with `--follow-symlink`). A write that fails (disk
//! full, a file another user planted in a sticky directory) leaves the old file in place, is
//! logged and retried with backoff like an upstream failure; `--once` turns it into the exit
//! status instead.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use gcp_kafka_auth_handler::{KafkaToken, KafkaTokenProvider, files, server};

use crate::commands::args::{LogArgs, ProviderArgs};

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

    /// With `--output`: write the token once and exit; the exit status says whether the token
    /// could be fetched and written (without it, failures are logged and retried).
    #[arg(long, requires = "output")]
    pub once: bool,

    /// With `--output`: when FILE is a symbolic link, write to the file it points at (which
    /// must be a regular file) instead of refusing.
    #[arg(long, requires = "output")]
    pub follow_symlink: bool,

    #[command(flatten)]
    pub provider: ProviderArgs,

    /// Principal (`sub`) to put in tokens instead of the one the credentials name.
    #[arg(long, env = "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL")]
    pub principal: Option<String>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Runs the command inside a tokio runtime.
pub async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let provider = super::credentials::build_provider(&args.provider, args.principal.as_deref())?;
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
            // A wrong path is a mistake to report now, not a write to retry.
            output_target(path, args.follow_symlink)
                .with_context(|| format!("cannot write the token to {}", path.display()))?;
            if args.once {
                let token = provider
                    .token()
                    .await
                    .context("no Kafka token could be had")?;
                write_token(path, args.follow_symlink, &token, args.json)?;
                return Ok(ExitCode::SUCCESS);
            }
            keep_fresh(
                &provider,
                path,
                args.follow_symlink,
                args.json,
                server::shutdown_signal(),
            )
            .await?;
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

/// Where a token for `path` is written: `path` itself when it is a regular file or does not
/// exist; with `follow_symlink`, the regular file a link at `path` points at. Anything else is
/// refused, naming what is there.
fn output_target(path: &Path, follow_symlink: bool) -> anyhow::Result<PathBuf> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(path.to_owned()),
        Err(e) => return Err(e.into()),
    };
    if metadata.is_file() {
        return Ok(path.to_owned());
    }
    if metadata.file_type().is_symlink() {
        anyhow::ensure!(
            follow_symlink,
            "it is a symbolic link, not a regular file; pass --follow-symlink to write to the file it points at"
        );
        let resolved = std::fs::canonicalize(path)
            .map_err(|e| anyhow::anyhow!("it is a symbolic link that cannot be followed ({e})"))?;
        let target = std::fs::metadata(&resolved)?;
        anyhow::ensure!(
            target.is_file(),
            "it is a symbolic link to {}, which is {}, not a regular file",
            resolved.display(),
            files::file_kind(&target.file_type())
        );
        return Ok(resolved);
    }
    anyhow::bail!(
        "it is {}, not a regular file; --output replaces the file at that path, so name a regular file or a path that does not exist",
        files::file_kind(&metadata.file_type())
    )
}

/// Checks `path` again (it may have changed since the start) and writes `token` there.
fn write_token(
    path: &Path,
    follow_symlink: bool,
    token: &KafkaToken,
    json: bool,
) -> anyhow::Result<()> {
    let context = || format!("cannot write the token to {}", path.display());
    let target = output_target(path, follow_symlink).with_context(context)?;
    write_atomically(&target, render(token, json).as_bytes()).with_context(context)?;
    tracing::info!(
        path = %path.display(),
        principal = %token.principal(),
        expires_at = token.expires_at_unix(),
        "wrote a fresh token"
    );
    Ok(())
}

/// First wait after a failed write, doubled after each further failure up to
/// [`WRITE_RETRY_CAP`], with 50–100 % jitter: the schedule of the token cache's own retries.
const WRITE_RETRY_FIRST: Duration = Duration::from_secs(1);
const WRITE_RETRY_CAP: Duration = Duration::from_secs(10);

fn write_retry_delay(failures: u32) -> Duration {
    let exponential = WRITE_RETRY_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(WRITE_RETRY_CAP);
    exponential.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Writes every new token to `path` until `shutdown` completes. A failed write keeps the old
/// file, is logged, and is retried after a backoff; it never ends the loop.
async fn keep_fresh(
    provider: &KafkaTokenProvider,
    path: &Path,
    follow_symlink: bool,
    json: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    // The token last written, compared by value: a refresh always brings a new token.
    let mut written: Option<KafkaToken> = None;
    let mut failing = false;
    let mut write_failures = 0u32;
    loop {
        let outcome = tokio::select! {
            _ = &mut shutdown => break,
            outcome = provider.token() => outcome,
        };
        let mut pause = POLL;
        match outcome {
            Ok(token)
                if written
                    .as_ref()
                    .is_some_and(|w| w.expose() == token.expose()) => {}
            Ok(token) => match write_token(path, follow_symlink, &token, json) {
                Ok(()) => {
                    written = Some(token);
                    failing = false;
                    write_failures = 0;
                }
                Err(err) => {
                    write_failures += 1;
                    pause = write_retry_delay(write_failures);
                    tracing::error!(
                        path = %path.display(),
                        failures = write_failures,
                        "{err:#}; the file keeps the last token written; retrying in {:.1} s",
                        pause.as_secs_f64()
                    );
                }
            },
            // The refresh task logs each failure; here only the change of state is news.
            Err(err) if !failing => {
                tracing::warn!(error = %err, path = %path.display(), "no fresh token to write yet; the file keeps the last one");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(pause) => {}
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
    fn write_retries_back_off_from_half_a_second_to_at_most_ten() {
        for (failures, low, high) in [
            (1, 500, 1000),
            (2, 1000, 2000),
            (3, 2000, 4000),
            (4, 4000, 8000),
            (5, 5000, 10_000),
            (30, 5000, 10_000),
        ] {
            let delay = write_retry_delay(failures).as_millis();
            assert!((low..=high).contains(&delay), "{failures}: {delay} ms");
        }
    }

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
