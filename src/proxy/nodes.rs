//! The node registry: broker node ids seen so far, their real addresses and local ports.
//!
//! It knows no sockets: a new node id is handed to the [`Listeners`] it was built with ("bind
//! a listener for node N on this port and serve it", as kroxylicious injects its
//! `EndpointReconciler`), so it is unit-tested with a fake, and a connection that records the
//! brokers an answer names reaches only this registry, never the listeners' state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use super::rewrite::{BrokerAddress, PortError, PortMap};

/// Sets up the local listener of a node id the registry has not seen.
pub(crate) trait Listeners: Send + Sync {
    /// Binds and serves node `broker.node_id`'s local listener on `port`, which forwards to
    /// `broker` (looked up again in the registry for every new client connection).
    fn listen(&self, broker: &BrokerAddress, port: u16) -> Result<(), BindError>;
}

/// Why a broker listener could not be set up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BindError {
    /// The node id has no port.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The port is taken.
    #[error(
        "cannot listen for broker node {node_id} on {addr}: {detail}; another process holds the port, or choose another broker port base (ProxyBuilder::with_broker_port_base)"
    )]
    Bind {
        /// The node id.
        node_id: i32,
        /// The address.
        addr: SocketAddr,
        /// The error.
        detail: String,
    },
}

/// Broker node ids seen so far: their real address (each has a local listener) and the
/// node id → local port map the answers are rewritten with.
pub(crate) struct Registry {
    known: Mutex<HashMap<i32, BrokerAddress>>,
    /// Set once: by `reserve_bootstrap_port`, or on first use without a reserved port.
    ports: OnceLock<PortMap>,
    advertised_host: String,
    base: u16,
    listeners: Box<dyn Listeners>,
}

impl Registry {
    /// Node `N` is advertised as `advertised_host:(base + N)`; `listeners` binds and serves
    /// the local listener of each new node id.
    pub fn new(advertised_host: &str, base: u16, listeners: Box<dyn Listeners>) -> Self {
        Self {
            known: Mutex::default(),
            ports: OnceLock::new(),
            advertised_host: advertised_host.to_owned(),
            base,
            listeners,
        }
    }

    /// Refuses a port to any node id whose port would be `bootstrap_port` (the bootstrap
    /// listener's); has no effect once the port map is in use.
    pub fn reserve_bootstrap_port(&self, bootstrap_port: u16) {
        let _ = self.ports.set(PortMap::new(
            &self.advertised_host,
            self.base,
            bootstrap_port,
        ));
    }

    /// The node id → port map.
    pub fn ports(&self) -> &PortMap {
        self.ports
            .get_or_init(|| PortMap::new(&self.advertised_host, self.base, 0))
    }

    /// Node `id`'s current real address.
    pub fn address(&self, id: i32) -> Option<BrokerAddress> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Records the addresses in an answer; has the listeners set up a listener for each new
    /// node id (before the answer is forwarded, so the client never learns a port nobody
    /// listens on) and retargets an id whose host moved. An id without a port, or whose
    /// listener fails, stays unknown, so the next answer naming it tries again.
    pub fn observe(&self, brokers: &[BrokerAddress]) -> Result<(), BindError> {
        if brokers.is_empty() {
            return Ok(());
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for broker in brokers {
            match known.get_mut(&broker.node_id) {
                Some(current) if current == broker => {}
                Some(current) => {
                    tracing::info!(
                        node_id = broker.node_id,
                        from = %format_args!("{}:{}", current.host, current.port),
                        to = %format_args!("{}:{}", broker.host, broker.port),
                        "broker moved; new connections to its listener go to the new address"
                    );
                    *current = broker.clone();
                }
                None => {
                    let port = self.ports().port(broker.node_id)?;
                    self.listeners.listen(broker, port)?;
                    known.insert(broker.node_id, broker.clone());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Records the node ids and ports it is asked to listen for; refuses node `refuse`.
    #[derive(Clone, Default)]
    struct Fake {
        asked: Arc<Mutex<Vec<(i32, u16)>>>,
        refuse: Option<i32>,
    }

    impl Fake {
        fn asked(&self) -> Vec<(i32, u16)> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl Listeners for Fake {
        fn listen(&self, broker: &BrokerAddress, port: u16) -> Result<(), BindError> {
            self.asked.lock().unwrap().push((broker.node_id, port));
            if self.refuse == Some(broker.node_id) {
                return Err(BindError::Bind {
                    node_id: broker.node_id,
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    detail: "address in use".to_owned(),
                });
            }
            Ok(())
        }
    }

    fn registry(fake: &Fake) -> Registry {
        Registry::new("127.0.0.1", 9093, Box::new(fake.clone()))
    }

    fn broker(node_id: i32, host: &str) -> BrokerAddress {
        BrokerAddress {
            node_id,
            host: host.to_owned(),
            port: 9092,
        }
    }

    #[test]
    fn each_new_node_id_gets_one_listener_on_its_port_and_a_moved_one_is_retargeted() {
        let fake = Fake::default();
        let nodes = registry(&fake);
        nodes
            .observe(&[broker(1, "b1.invalid"), broker(2, "b2.invalid")])
            .unwrap();
        nodes
            .observe(&[broker(2, "b2-new.invalid"), broker(3, "b3.invalid")])
            .unwrap();
        nodes.observe(&[]).unwrap();
        assert_eq!(fake.asked(), [(1, 9094), (2, 9095), (3, 9096)]);
        assert_eq!(nodes.address(2), Some(broker(2, "b2-new.invalid")));
        assert_eq!(nodes.address(1), Some(broker(1, "b1.invalid")));
        assert_eq!(nodes.address(4), None);
    }

    #[test]
    fn a_node_whose_listener_fails_stays_unknown_and_is_tried_again() {
        let fake = Fake {
            refuse: Some(2),
            ..Fake::default()
        };
        let nodes = registry(&fake);
        let err = nodes
            .observe(&[broker(1, "b1.invalid"), broker(2, "b2.invalid")])
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot listen for broker node 2 on 127.0.0.1:9095: address in use"),
            "{err}"
        );
        assert_eq!(nodes.address(1), Some(broker(1, "b1.invalid")));
        assert_eq!(nodes.address(2), None);
        let _ = nodes.observe(&[broker(2, "b2.invalid")]);
        assert_eq!(fake.asked(), [(1, 9094), (2, 9095), (2, 9095)]);
    }

    #[test]
    fn a_node_whose_port_is_the_bootstrap_port_is_refused_before_any_listener_is_asked() {
        let fake = Fake::default();
        let nodes = Registry::new("127.0.0.1", 9090, Box::new(fake.clone()));
        nodes.reserve_bootstrap_port(9092);
        // Once in use, the map is not replaced.
        nodes.reserve_bootstrap_port(9099);
        let err = nodes
            .observe(&[broker(1, "b1.invalid"), broker(2, "b2.invalid")])
            .unwrap_err();
        assert!(matches!(err, BindError::Port(_)), "{err}");
        assert_eq!(fake.asked(), [(1, 9091)]);
        assert_eq!(nodes.address(2), None);
        assert_eq!(nodes.ports().port(9), Ok(9099));
    }

    #[test]
    fn without_a_reserved_port_every_node_id_in_range_has_one() {
        let nodes = registry(&Fake::default());
        assert_eq!(nodes.ports().port(0), Ok(9093));
        // Reserved too late: the map in use stays.
        nodes.reserve_bootstrap_port(9093);
        assert_eq!(nodes.ports().port(0), Ok(9093));
    }
}
