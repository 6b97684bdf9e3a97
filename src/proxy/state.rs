//! The state every listener and connection of one proxy shares, and its two operations
//! (the port map, recording broker addresses). A leaf below the modules that use it: the
//! accept loops it must start for a new node id are injected as a function
//! ([`Shared::listen`]), so it imports neither `run` nor `connection`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{Semaphore, mpsc, watch};

use super::health::Readiness;
use super::limits::{Budget, Limits};
use super::nodes::{BindError, Listeners, Nodes};
use super::rewrite::{BrokerAddress, PortMap};
use super::{dial_gate, log_limit, metrics, upstream};
use crate::KafkaTokenProvider;
use crate::connection_slots::Connections;

/// State shared by every listener and connection.
pub(crate) struct Shared {
    pub(super) provider: KafkaTokenProvider,
    pub(super) upstream: upstream::Upstream,
    pub(super) bootstrap: Vec<(String, u16)>,
    /// Set by `run`, which knows the bootstrap port.
    pub(super) ports: OnceLock<PortMap>,
    pub(super) broker_port_base: u16,
    pub(super) advertised_host: String,
    pub(super) nodes: Nodes,
    pub(super) metrics: metrics::ProxyMetrics,
    pub(super) max_frame: usize,
    pub(super) limits: Limits,
    /// Responses held whole, all connections together.
    pub(super) budget: Budget,
    pub(super) connections: Arc<Semaphore>,
    /// The connections being served, for making room at the limit.
    pub(super) slots: Connections,
    pub(super) dial_gate: dial_gate::DialGate,
    pub(super) log_limit: log_limit::LogLimit,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) readiness: Readiness,
    /// Held by every accept loop and connection; `run` waits for all clones to drop.
    pub(super) tracker: Mutex<Option<mpsc::Sender<()>>>,
    /// The addresses broker listeners bind (the bootstrap listeners' IPs).
    pub(super) bind_ips: Mutex<Vec<IpAddr>>,
    /// Binds and serves a new node id's listener (`run::listen`), injected so that this
    /// module and the connections need not know the accept loops.
    pub(super) listen: ListenFn,
}

/// Sets up node `broker.node_id`'s listener for the proxy whose state this is.
pub(crate) type ListenFn = fn(&Arc<Shared>, &BrokerAddress) -> Result<(), BindError>;

/// [`Shared::listen`] as the registry's [`Listeners`].
struct Bound<'a>(&'a Arc<Shared>);

impl Listeners for Bound<'_> {
    fn listen(&self, broker: &BrokerAddress) -> Result<(), BindError> {
        (self.0.listen)(self.0, broker)
    }
}

impl Shared {
    /// The node-id → port map (`run` sets the bootstrap port it must avoid).
    pub(super) fn ports(&self) -> &PortMap {
        self.ports
            .get_or_init(|| PortMap::new(&self.advertised_host, self.broker_port_base, 0))
    }

    /// Records the broker addresses in an answer, binding listeners for new node ids.
    pub(super) fn observe(self: &Arc<Self>, brokers: &[BrokerAddress]) -> Result<(), BindError> {
        self.nodes.observe(brokers, &Bound(self))
    }
}
