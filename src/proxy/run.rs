//! Run-and-drain's moving parts: the accept loops (within `--max-connections`, making room
//! by closing the connection idle longest), a new node id's listeners, and the bootstrap
//! probe (open a broker connection, ask Metadata, record the brokers).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::connection::{self, Target};
use super::errors::ProbeError;
use super::nodes::BindError;
use super::rewrite::BrokerAddress;
use super::state::Shared;
use super::{upstream, wire};
use crate::connection_slots::MAKE_ROOM_RETRY;

/// The proxy's [`ListenFn`](super::state::ListenFn): node `N` listens on `base + N` on every
/// address the bootstrap listener holds, with an accept loop of its own.
pub(super) fn listen(shared: &Arc<Shared>, broker: &BrokerAddress) -> Result<(), BindError> {
    let port = shared.ports().port(broker.node_id)?;
    let mut ips = shared
        .bind_ips
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if ips.is_empty() {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    // Every address the bootstrap listener holds, so that no other local process can
    // take the other half of `localhost` for a broker port.
    let mut listeners = Vec::with_capacity(ips.len());
    for ip in ips {
        let addr = SocketAddr::new(ip, port);
        let listener = crate::server::bind_listener(addr).map_err(|e| BindError::Bind {
            node_id: broker.node_id,
            addr,
            detail: e.to_string(),
        })?;
        tracing::info!(
            node_id = broker.node_id,
            listen = %addr,
            broker = %format_args!("{}:{}", broker.host, broker.port),
            "listening for broker"
        );
        listeners.push(listener);
    }
    if let Some(tracker) = shared
        .tracker
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        for listener in listeners {
            tokio::spawn(accept_loop(
                shared.clone(),
                listener,
                Target::Node(broker.node_id),
                tracker.clone(),
            ));
        }
    }
    Ok(())
}

async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Accepts clients on one listener until shutdown, within the connection limit.
pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    target: Target,
    tracker: mpsc::Sender<()>,
) {
    let stop = wait_shutdown(shared.shutdown.clone());
    tokio::pin!(stop);
    let max = shared.limits.max_connections;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if let Some(suppressed) = shared.log_limit.allow("accept") {
                        tracing::warn!(suppressed, "accept failed on the {} listener: {e}{}", target.label(), fd_hint(&e));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => return,
        };
        // Accepted before its permit, so at the limit exactly one connection per listener
        // waits here while the rest wait in the kernel's backlog; the connection idle
        // longest makes room for it, so idle connections cannot lock real clients out.
        let permit = match shared.connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let mut asked = shared.slots.make_room(max);
                let permit = loop {
                    tokio::select! {
                        permit = shared.connections.clone().acquire_owned() => break permit.ok(),
                        () = tokio::time::sleep(MAKE_ROOM_RETRY), if !asked => {
                            asked = shared.slots.make_room(max);
                        }
                        () = &mut stop => break None,
                    }
                };
                match permit {
                    Some(permit) => permit,
                    None => return,
                }
            }
        };
        let shared = shared.clone();
        let tracker = tracker.clone();
        tokio::spawn(async move {
            let slot = shared.slots.register();
            connection::serve(shared.clone(), stream, target, slot.clone()).await;
            shared.slots.remove(slot.id);
            drop(permit);
            drop(tracker);
        });
    }
}

/// The fix for running out of file descriptors, when that is the error.
fn fd_hint(err: &std::io::Error) -> String {
    if super::upstream::out_of_descriptors(err) {
        format!("; {}", super::wire::UpstreamHint::OutOfDescriptors)
    } else {
        String::new()
    }
}

/// Connects to a bootstrap server, authenticates, asks Metadata and binds every broker's
/// listener. Returns the broker count.
pub(super) async fn probe(shared: &Arc<Shared>) -> Result<usize, ProbeError> {
    let brokers = probe_brokers(shared).await?;
    if brokers.is_empty() {
        return Err(ProbeError::NoBrokers);
    }
    shared.readiness.brokers_seen(brokers.len());
    shared.observe(&brokers)?;
    Ok(brokers.len())
}

/// One bootstrap round trip: the first bootstrap server that connects, authenticates and
/// answers Metadata names the brokers.
pub(super) async fn probe_brokers(shared: &Arc<Shared>) -> Result<Vec<BrokerAddress>, ProbeError> {
    let mut last = ProbeError::NoBootstrapServer;
    for (host, port) in &shared.bootstrap {
        let mut seq = wire::Sequence::default();
        let opened = shared
            .upstream
            .open(&shared.provider, &shared.metrics, host, *port, &mut seq)
            .await;
        let (mut stream, _) = match opened {
            Ok(ok) => ok,
            Err(e) => {
                last = ProbeError::Upstream(e);
                continue;
            }
        };
        let max = shared.limits.max_rewritten_response;
        match upstream::probe_metadata(&mut stream, host, *port, &mut seq, max).await {
            Ok(brokers) => return Ok(brokers),
            Err(e) => last = ProbeError::Metadata(e),
        }
    }
    Err(last)
}
