//! The node registry: broker node ids seen so far and their real addresses.
//!
//! It knows no sockets: a new node id is handed to the [`Listeners`] it is given ("bind a
//! listener for node N and serve it", as kroxylicious injects its `EndpointReconciler`), so
//! it is unit-tested with a fake and the proxy's state stays out of it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use super::rewrite::{BrokerAddress, PortError};

/// Sets up the local listener of a node id the registry has not seen.
pub(crate) trait Listeners {
    /// Binds and serves node `broker.node_id`'s local listener, which forwards to `broker`
    /// (looked up again in the registry for every new client connection).
    fn listen(&self, broker: &BrokerAddress) -> Result<(), BindError>;
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

/// Broker node ids seen so far: their real address (each has a local listener).
#[derive(Default)]
pub(crate) struct Nodes {
    inner: Mutex<HashMap<i32, BrokerAddress>>,
}

impl Nodes {
    /// Node `id`'s current real address.
    pub fn address(&self, id: i32) -> Option<BrokerAddress> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Records the addresses in an answer; has `listeners` set up a listener for each new
    /// node id (before the answer is forwarded, so the client never learns a port nobody
    /// listens on) and retargets an id whose host moved. An id whose listener fails stays
    /// unknown, so the next answer naming it tries again.
    pub fn observe(
        &self,
        brokers: &[BrokerAddress],
        listeners: &dyn Listeners,
    ) -> Result<(), BindError> {
        if brokers.is_empty() {
            return Ok(());
        }
        let mut known = self.inner.lock().unwrap_or_else(|p| p.into_inner());
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
                    listeners.listen(broker)?;
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
    use std::cell::RefCell;

    /// Records the node ids it is asked to listen for; refuses `refuse`.
    #[derive(Default)]
    struct Fake {
        asked: RefCell<Vec<i32>>,
        refuse: Option<i32>,
    }

    impl Listeners for Fake {
        fn listen(&self, broker: &BrokerAddress) -> Result<(), BindError> {
            self.asked.borrow_mut().push(broker.node_id);
            if self.refuse == Some(broker.node_id) {
                return Err(BindError::Bind {
                    node_id: broker.node_id,
                    addr: "127.0.0.1:9094".parse().unwrap(),
                    detail: "address in use".to_owned(),
                });
            }
            Ok(())
        }
    }

    fn broker(node_id: i32, host: &str) -> BrokerAddress {
        BrokerAddress {
            node_id,
            host: host.to_owned(),
            port: 9092,
        }
    }

    #[test]
    fn each_new_node_id_gets_one_listener_and_a_moved_one_is_retargeted() {
        let nodes = Nodes::default();
        let fake = Fake::default();
        nodes
            .observe(&[broker(1, "b1.invalid"), broker(2, "b2.invalid")], &fake)
            .unwrap();
        nodes
            .observe(
                &[broker(2, "b2-new.invalid"), broker(3, "b3.invalid")],
                &fake,
            )
            .unwrap();
        nodes.observe(&[], &fake).unwrap();
        assert_eq!(*fake.asked.borrow(), [1, 2, 3]);
        assert_eq!(nodes.address(2), Some(broker(2, "b2-new.invalid")));
        assert_eq!(nodes.address(1), Some(broker(1, "b1.invalid")));
        assert_eq!(nodes.address(4), None);
    }

    #[test]
    fn a_node_whose_listener_fails_stays_unknown_and_is_tried_again() {
        let nodes = Nodes::default();
        let fake = Fake {
            refuse: Some(2),
            ..Fake::default()
        };
        let err = nodes
            .observe(&[broker(1, "b1.invalid"), broker(2, "b2.invalid")], &fake)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot listen for broker node 2 on 127.0.0.1:9094: address in use"),
            "{err}"
        );
        assert_eq!(nodes.address(1), Some(broker(1, "b1.invalid")));
        assert_eq!(nodes.address(2), None);
        let _ = nodes.observe(&[broker(2, "b2.invalid")], &fake);
        assert_eq!(*fake.asked.borrow(), [1, 2, 2]);
    }
}
