//! `wait`: blocks until the proxy (or sidecar) at an address is ready, for init ordering
//! where native sidecars are not available: exit 0 once `/readyz` answers 200, 1 after
//! `--timeout`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::commands::args::parse_duration;

/// How long one poll may take, and the pause between polls.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Address of the health port (`0.0.0.0` and `::` are asked on loopback). Shares the
    /// proxy's variable so one environment configures both.
    #[arg(long, env = "GCP_KAFKA_AUTH_HTTP_ADDRESS", default_value = "127.0.0.1")]
    pub http_address: IpAddr,

    /// Port of the health port (the proxy's --http-port; 14293 for `serve`).
    #[arg(long, env = "GCP_KAFKA_AUTH_HTTP_PORT", default_value_t = 9090)]
    pub http_port: u16,

    /// Give up (exit 1) after this long.
    #[arg(long, alias = "max", env = "GCP_KAFKA_AUTH_WAIT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Polls `/readyz` until 200 or the timeout.
pub fn run(args: &WaitArgs) -> ExitCode {
    let host = match args.http_address {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}/readyz", SocketAddr::new(host, args.http_port));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(async {
        let client = match reqwest::Client::builder().no_proxy().timeout(POLL).build() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wait: cannot build an HTTP client: {e}");
                return ExitCode::FAILURE;
            }
        };
        let deadline = tokio::time::Instant::now() + args.timeout;
        let mut last: String;
        loop {
            match client.get(&url).send().await {
                Ok(response) if response.status().is_success() => {
                    let body = response.text().await.unwrap_or_default();
                    println!("{url}: 200 {}", body.trim());
                    return ExitCode::SUCCESS;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    last = format!("{status} {}", body.trim());
                }
                Err(e) => last = format!("no answer ({e})"),
            }
            if tokio::time::Instant::now() + POLL >= deadline {
                eprintln!(
                    "{url}: not ready after {}: last answer {last}",
                    humantime::format_duration(args.timeout)
                );
                return ExitCode::FAILURE;
            }
            tokio::time::sleep(POLL).await;
        }
    })
}
