//! `fake-google`: the fake as a process, for the interop suite and the demo.
//!
//! Prints one JSON line with its URLs on stdout, then serves until SIGTERM or SIGINT.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use fake_google::FakeGoogle;
use serde_json::json;

/// Loopback fake of Google's metadata server, OAuth2 token endpoint, tokeninfo, IAM
/// Credentials and STS.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one; read it from the JSON line).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long)]
    token_lifetime_secs: Option<u64>,
    /// Identity the metadata server reports.
    #[arg(long)]
    metadata_email: Option<String>,
    /// Hand out the metadata server's cached token while more than half its life is left,
    /// as the real metadata server does.
    #[arg(long)]
    metadata_cache: bool,
    /// Write a service-account key file (registered with this fake) to PATH.
    #[arg(long, value_name = "PATH", requires = "service_account_email")]
    write_service_account_key: Option<PathBuf>,
    /// client_email of the key written by --write-service-account-key.
    #[arg(long, value_name = "EMAIL", requires = "write_service_account_key")]
    service_account_email: Option<String>,
    /// Write an authorized_user ADC file (registered with this fake) to PATH.
    #[arg(long, value_name = "PATH", requires = "user_email")]
    write_authorized_user: Option<PathBuf>,
    /// Email of the user written by --write-authorized-user.
    #[arg(long, value_name = "EMAIL", requires = "write_authorized_user")]
    user_email: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fake-google: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let google = FakeGoogle::start_on(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    if let Some(secs) = args.token_lifetime_secs {
        google.set_token_lifetime(Duration::from_secs(secs));
    }
    if let Some(email) = &args.metadata_email {
        google.set_metadata_email(email);
    }
    google.set_metadata_cache(args.metadata_cache);
    if let (Some(path), Some(email)) =
        (&args.write_service_account_key, &args.service_account_email)
    {
        write_json(path, &google.service_account_key_json(email))?;
    }
    if let (Some(path), Some(email)) = (&args.write_authorized_user, &args.user_email) {
        write_json(path, &google.authorized_user_json(email))?;
    }
    // Files first, then the line: whoever waits for the line may use the files at once.
    let line = json!({
        "base_url": google.base_url(),
        "metadata_host": google.metadata_host(),
        "token_uri": google.token_uri(),
        "tokeninfo_url": google.tokeninfo_url(),
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(stdout);
    wait_for_signal().await?;
    google.shutdown().await;
    Ok(())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => Ok(()),
        result = tokio::signal::ctrl_c() => result.map_err(|e| e.to_string()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), String> {
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())
}
