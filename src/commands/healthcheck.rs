//! `healthcheck`: asks a running sidecar whether it is ready (or alive), for container health
//! checks in images without curl (distroless, scratch). Exit 0 when it answers 200, else 1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::commands::args::parse_duration;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Address the sidecar listens on (`0.0.0.0` and `::` are checked on loopback). Shares
    /// `serve`'s variable so one environment configures both.
    #[arg(long, env = "GCP_KAFKA_AUTH_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Port the sidecar listens on.
    #[arg(long, env = "GCP_KAFKA_AUTH_PORT", default_value_t = 14293)]
    pub port: u16,

    /// Check liveness (`/healthz`: the process answers) instead of readiness (`/readyz`: a
    /// token can be served).
    #[arg(long, env = "GCP_KAFKA_AUTH_HEALTHCHECK_LIVENESS")]
    pub liveness: bool,

    /// How long to wait for the answer.
    #[arg(long, env = "GCP_KAFKA_AUTH_HEALTHCHECK_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Checks the sidecar; prints its answer (or why there is none) and exits 0 on 200.
pub fn run(args: &HealthcheckArgs) -> ExitCode {
    let host = match args.bind {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let path = if args.liveness { "/healthz" } else { "/readyz" };
    let url = format!("http://{}{path}", SocketAddr::new(host, args.port));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let outcome = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(args.timeout)
            .build()?;
        let response = client.get(&url).send().await?;
        let status = response.status();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    match outcome {
        Ok((status, body)) => {
            println!("{url}: {} {}", status.as_u16(), body.trim());
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            println!("{url}: no answer ({})", with_causes(&err));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `a: b: c`: reqwest's own message names only the URL.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
