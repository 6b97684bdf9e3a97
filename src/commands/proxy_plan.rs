//! Which clusters `proxy` serves and on which ports: the positional cluster names (with their
//! `?port=N&broker-port-base=M` options) or `--bootstrap-server`, planned one listener set
//! each.

use std::net::SocketAddr;

use anyhow::anyhow;
use gcp_kafka_auth_handler::proxy::cluster_name::ClusterName;

use crate::commands::proxy_errors;

/// Ports between one cluster's bootstrap (or broker port base) and the next cluster's.
pub const CLUSTER_PORT_STRIDE: u16 = 100;

/// A cluster name with optional per-cluster ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterArg {
    /// The resource name.
    pub name: ClusterName,
    /// `?port=N`: its bootstrap listener's port.
    pub port: Option<u16>,
    /// `?broker-port-base=M`: its broker listeners' base.
    pub broker_port_base: Option<u16>,
}

pub fn parse_cluster_arg(text: &str) -> Result<ClusterArg, String> {
    let (name, query) = match text.split_once('?') {
        Some((name, query)) => (name, Some(query)),
        None => (text, None),
    };
    let name: ClusterName = name
        .trim()
        .parse()
        .map_err(|e| proxy_errors::bad_cluster_name(&e))?;
    let mut arg = ClusterArg {
        name,
        port: None,
        broker_port_base: None,
    };
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let port = value
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{pair}` in `{text}`: `{value}` is not a port (1-65535)"))?;
        match key {
            "port" => arg.port = Some(port),
            "broker-port-base" => arg.broker_port_base = Some(port),
            _ => {
                return Err(format!(
                    "`{key}` in `{text}` is not a cluster option: write NAME?port=N&broker-port-base=M"
                ));
            }
        }
    }
    Ok(arg)
}

/// One proxied cluster: how it is named in logs and metrics, and where it listens.
pub struct Plan {
    pub label: String,
    pub listen: SocketAddr,
    pub broker_port_base: u16,
    pub target: Target,
}

/// Where a cluster's bootstrap address comes from.
pub enum Target {
    Bootstrap(Vec<String>),
    Cluster(ClusterName),
}

/// One plan per cluster name (cluster i on the ports + [`CLUSTER_PORT_STRIDE`]·i unless it
/// names its own), or one for `--bootstrap-server`s.
pub fn plans(
    clusters: &[ClusterArg],
    bootstrap_servers: &[String],
    listen: SocketAddr,
    broker_port_base: u16,
) -> anyhow::Result<Vec<Plan>> {
    if clusters.is_empty() {
        return Ok(vec![Plan {
            label: bootstrap_servers.join(","),
            listen,
            broker_port_base,
            target: Target::Bootstrap(bootstrap_servers.to_vec()),
        }]);
    }
    let mut plans = Vec::new();
    for (i, cluster) in clusters.iter().enumerate() {
        let offset = u16::try_from(i)
            .ok()
            .and_then(|i| i.checked_mul(CLUSTER_PORT_STRIDE));
        let shifted = |base: u16, what: &str| {
            offset
                .and_then(|o| base.checked_add(o))
                .ok_or_else(|| anyhow!("cluster {} (number {i}) has no {what}: {base} + {CLUSTER_PORT_STRIDE}·{i} is past 65535; give it one with ?port=N&broker-port-base=M", cluster.name))
        };
        let port = match cluster.port {
            Some(p) => p,
            None if listen.port() == 0 => 0,
            None => shifted(listen.port(), "bootstrap port")?,
        };
        let broker_port_base = match cluster.broker_port_base {
            Some(b) => b,
            None => shifted(broker_port_base, "broker port base")?,
        };
        plans.push(Plan {
            label: cluster.name.to_string(),
            listen: SocketAddr::new(listen.ip(), port),
            broker_port_base,
            target: Target::Cluster(cluster.name.clone()),
        });
    }
    Ok(plans)
}
