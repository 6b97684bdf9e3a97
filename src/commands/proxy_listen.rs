//! Where `proxy` may listen and how many clients it holds: the refusal of addresses other
//! hosts can reach (without `--allow-remote-clients`), binding (127.0.0.1 holds ::1 on the same
//! port too), and the `--max-connections` default the file-descriptor limit allows.

use std::net::{IpAddr, SocketAddr};

use anyhow::anyhow;
use tokio::net::TcpListener;

use crate::commands::endpoint_errors::Port;

/// Binds `addr` for `port` (the Kafka listener or the token endpoint, whose flag a taken
/// port names); 127.0.0.1 also binds ::1 on the same port, so no other local process can
/// squat the half of `localhost` left free.
pub async fn bind(addr: SocketAddr, port: Port) -> std::io::Result<Vec<TcpListener>> {
    if addr.ip() == std::net::Ipv4Addr::LOCALHOST {
        super::endpoint_errors::bind_loopback(addr.port(), port).await
    } else {
        TcpListener::bind(addr).await.map(|l| vec![l])
    }
}

/// Refuses listeners other hosts can reach unless `--allow-remote-clients` says so: the
/// Kafka port hands the proxy's Google identity to whoever connects, and the health port
/// tells them about it.
pub fn refuse_remote(
    allow_remote_clients: bool,
    listen: IpAddr,
    others: &[(&str, Option<IpAddr>)],
) -> anyhow::Result<()> {
    if allow_remote_clients {
        for (flag, ip) in others {
            if let Some(ip) = ip.filter(|ip| !ip.is_loopback()) {
                tracing::warn!(
                    target: super::PROXY_LOG_TARGET,
                    "--allow-remote-clients: {flag} {ip} is reachable from other hosts"
                );
            }
        }
        return Ok(());
    }
    for (flag, ip) in std::iter::once(&("--listen", Some(listen))).chain(others) {
        if let Some(ip) = ip.filter(|ip| !ip.is_loopback()) {
            return Err(anyhow!(
                "{flag} {ip} is not a loopback address: every host that can reach it could use the cluster as the proxy's Google identity (or read its health and metrics). Keep it on 127.0.0.1, or pass --allow-remote-clients if a network policy or firewall limits who can connect"
            ));
        }
    }
    Ok(())
}

/// `--max-connections`, or the default the file-descriptor limit allows: the soft limit is
/// raised to the hard one first, and each client costs two descriptors (its socket and the
/// broker's), plus a reserve for listeners, logs and the token fetches.
pub fn max_connections(flag: Option<usize>) -> usize {
    const DEFAULT: usize = 1024;
    const RESERVE: u64 = 64;
    let limit = raise_nofile_limit();
    let fits = limit.map(|n| usize::try_from(n.saturating_sub(RESERVE) / 2).unwrap_or(usize::MAX));
    match (flag, fits) {
        (Some(n), Some(fits)) if n > fits => {
            tracing::warn!(
                target: super::PROXY_LOG_TARGET,
                max_connections = n,
                nofile = limit,
                "--max-connections {n} needs {} file descriptors, more than the limit of {}; raise it (ulimit -n, LimitNOFILE=) or the proxy will refuse connections beyond ~{fits}",
                2 * n as u64 + RESERVE,
                limit.unwrap_or_default()
            );
            n
        }
        (Some(n), _) => n,
        (None, Some(fits)) => DEFAULT.min(fits.max(1)),
        (None, None) => DEFAULT,
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force.
fn raise_nofile_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::debug!(target: super::PROXY_LOG_TARGET, "cannot raise the file-descriptor limit: {e}");
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .ok()
                    .map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}
