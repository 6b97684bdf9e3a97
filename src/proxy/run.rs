//! Run-and-drain's moving parts: the accept loops (within `--max-connections`, making room
//! by closing the connection idle longest), a new node id's listeners (the node registry's
//! injected [`Listeners`]), and the bootstrap probe (open a broker connection, ask Metadata,
//! record the brokers).
//!
//! The owner of the listeners' state ([`Listening`]); each connection is handed only its
//! [`ConnectionContext`], the probe only the dialer, the registry and readiness.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use super::connection::{self, ConnectionContext, Target};
use super::errors::ProbeError;
use super::health::Readiness;
use super::nodes::{BindError, Listeners, Registry};
use super::rewrite::BrokerAddress;
use super::upstream::{self, Dialer};
use super::wire;
use crate::connection_slots::{Connections, MAKE_ROOM_RETRY};

/// What the accept loops share: the connection limit and the connections it counts, the
/// drain tracker, the addresses broker listeners bind, and the context every connection is
/// handed.
pub(super) struct Listening {
    pub serving: Arc<ConnectionContext>,
    connections: Arc<Semaphore>,
    /// The connections being served, for making room at the limit.
    slots: Connections,
    /// Held by every accept loop and connection; `run` waits for all clones to drop.
    pub tracker: Mutex<Option<mpsc::Sender<()>>>,
    /// The addresses broker listeners bind (the bootstrap listeners' IPs).
    pub bind_ips: Mutex<Vec<IpAddr>>,
}

/// The registry's [`Listeners`]: binds on the proxy's addresses and starts an accept loop.
/// Weak: the registry lives in the context [`Listening`] owns, so a strong reference would
/// be a cycle that outlives the proxy.
struct BrokerListeners(Weak<Listening>);

impl Listeners for BrokerListeners {
    fn listen(&self, broker: &BrokerAddress, port: u16) -> Result<(), BindError> {
        match self.0.upgrade() {
            Some(listening) => listening.listen(broker, port),
            // The proxy and its accept loops are gone: nothing would accept.
            None => Ok(()),
        }
    }
}

impl Listening {
    /// The listeners' state around the connection context `serving` builds from the node
    /// registry (node `N` advertised as `advertised_host:(base + N)`), whose new node ids
    /// get listeners from this state.
    pub fn new(
        advertised_host: &str,
        base: u16,
        tracker: mpsc::Sender<()>,
        serving: impl FnOnce(Registry) -> ConnectionContext,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| {
            let brokers =
                Registry::new(advertised_host, base, Box::new(BrokerListeners(me.clone())));
            let serving = serving(brokers);
            Self {
                connections: Arc::new(Semaphore::new(serving.limits.max_connections)),
                serving: Arc::new(serving),
                slots: Connections::new(),
                tracker: Mutex::new(Some(tracker)),
                bind_ips: Mutex::new(Vec::new()),
            }
        })
    }

    /// Node `broker.node_id`'s listener: `port` on every address the bootstrap listener
    /// holds, with an accept loop of its own.
    fn listen(self: Arc<Self>, broker: &BrokerAddress, port: u16) -> Result<(), BindError> {
        let mut ips = self
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
        if let Some(tracker) = self
            .tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            for listener in listeners {
                tokio::spawn(accept_loop(
                    self.clone(),
                    listener,
                    Target::Node(broker.node_id),
                    tracker.clone(),
                ));
            }
        }
        Ok(())
    }
}

async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Accepts clients on one listener until shutdown, within the connection limit.
pub(super) async fn accept_loop(
    listening: Arc<Listening>,
    listener: TcpListener,
    target: Target,
    tracker: mpsc::Sender<()>,
) {
    let serving = &listening.serving;
    let stop = wait_shutdown(serving.shutdown.clone());
    tokio::pin!(stop);
    let max = serving.limits.max_connections;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if let Some(suppressed) = serving.log_limit.allow("accept") {
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
        let permit = match listening.connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let mut asked = listening.slots.make_room(max);
                let permit = loop {
                    tokio::select! {
                        permit = listening.connections.clone().acquire_owned() => break permit.ok(),
                        () = tokio::time::sleep(MAKE_ROOM_RETRY), if !asked => {
                            asked = listening.slots.make_room(max);
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
        let listening = listening.clone();
        let tracker = tracker.clone();
        tokio::spawn(async move {
            let slot = listening.slots.register();
            connection::serve(listening.serving.clone(), stream, target, slot.clone()).await;
            listening.slots.remove(slot.id);
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

/// Connects to a bootstrap server, authenticates, asks Metadata (an answer of at most
/// `max_answer` bytes) and has `brokers` record every broker, binding its listener. Returns
/// the broker count.
pub(super) async fn probe(
    dialer: &Dialer,
    brokers: &Registry,
    readiness: &Readiness,
    max_answer: usize,
) -> Result<usize, ProbeError> {
    let seen = probe_brokers(dialer, max_answer).await?;
    if seen.is_empty() {
        return Err(ProbeError::NoBrokers);
    }
    readiness.brokers_seen(seen.len());
    brokers.observe(&seen)?;
    Ok(seen.len())
}

/// One bootstrap round trip: the first of the dialer's bootstrap servers that connects,
/// authenticates and answers Metadata (within `max_answer` bytes) names the brokers.
pub(super) async fn probe_brokers(
    dialer: &Dialer,
    max_answer: usize,
) -> Result<Vec<BrokerAddress>, ProbeError> {
    let mut last = ProbeError::NoBootstrapServer;
    for (host, port) in &dialer.bootstrap {
        let mut seq = wire::Sequence::default();
        let (mut stream, _) = match dialer.open(host, *port, &mut seq).await {
            Ok(ok) => ok,
            Err(e) => {
                last = ProbeError::Upstream(e);
                continue;
            }
        };
        match upstream::probe_metadata(&mut stream, host, *port, &mut seq, max_answer).await {
            Ok(brokers) => return Ok(brokers),
            Err(e) => last = ProbeError::Metadata(e),
        }
    }
    Err(last)
}
