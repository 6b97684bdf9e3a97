//! The proxy library's errors in the binary's words. The library says what is wrong in its own
//! terms (the `ProxyBuilder` method to call); here each variant whose fix is a setting names
//! the flag instead, from the data the variant carries, as `build_provider` does for the
//! provider's `BuildError`. Variants whose message names no setting keep the library's text.

use anyhow::anyhow;
use gcp_kafka_auth_handler::proxy::{
    BindError, CheckError, NotReady, PortError, ProbeError, ProxyBuildError, UpstreamError,
};

/// Why the proxy could not be built, naming the flag to change.
pub fn build_error(err: ProxyBuildError) -> anyhow::Error {
    anyhow!(build_message(&err))
}

fn build_message(err: &ProxyBuildError) -> String {
    match err {
        ProxyBuildError::NoBootstrap => "no bootstrap server: set --bootstrap-server HOST:PORT (GCP_KAFKA_AUTH_BOOTSTRAP_SERVER), the cluster's bootstrapAddress, e.g. bootstrap.CLUSTER.REGION.managedkafka.PROJECT.cloud.goog:9092".to_owned(),
        ProxyBuildError::CaFile { path, detail } => format!("--upstream-ca-file {path}: {detail}"),
        ProxyBuildError::NoRoots(why) => format!(
            "no system root certificates found to verify the brokers ({why}); install the ca-certificates package or pass --upstream-ca-file"
        ),
        ProxyBuildError::AdvertisedHost(host, why) => format!("--advertised-host `{host}`: {why}"),
        other => other.to_string(),
    }
}

/// Why `proxy --check` failed, naming the flag to change.
pub fn check_error(err: &CheckError) -> String {
    match err {
        CheckError::Probe(probe) => probe_message(probe),
        CheckError::Port(port) => port_message(port),
        other => other.to_string(),
    }
}

/// Why a proxy is not ready (`/readyz`, `/startup`), naming the flag to change.
pub fn not_ready(err: &NotReady) -> String {
    match err {
        NotReady::Probe(probe) => probe_message(probe),
        NotReady::ClientConnection(upstream) => format!(
            "a client's broker connection failed: {}",
            upstream_message(upstream)
        ),
        other => other.to_string(),
    }
}

fn probe_message(err: &ProbeError) -> String {
    match err {
        ProbeError::Upstream(upstream) => upstream_message(upstream),
        ProbeError::Listener(bind) => bind_message(bind),
        other => other.to_string(),
    }
}

fn bind_message(err: &BindError) -> String {
    match err {
        BindError::Port(port) => port_message(port),
        BindError::Bind {
            node_id,
            addr,
            detail,
        } => format!(
            "cannot listen for broker node {node_id} on {addr}: {detail}; another process holds the port, or choose another --broker-port-base"
        ),
    }
}

fn port_message(err: &PortError) -> String {
    match err {
        PortError::OutOfRange { node_id, base } => format!(
            "node id {node_id} has no local port: --broker-port-base {base} + {node_id} is outside 1..=65535; choose a base so that base + the largest node id fits"
        ),
        PortError::Collision { node_id, port } => format!(
            "node id {node_id} would listen on port {port}, which is the bootstrap listener's (--listen); choose a --broker-port-base that keeps base + node id away from it"
        ),
    }
}

fn upstream_message(err: &UpstreamError) -> String {
    match err {
        UpstreamError::Mechanism {
            host,
            mechanism,
            offered,
        } => format!(
            "broker {host} does not enable SASL mechanism {mechanism} (it offers: {offered}); choose one with --upstream-sasl"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_named_by_their_flags() {
        assert_eq!(
            port_message(&PortError::OutOfRange {
                node_id: 46536,
                base: 19000
            }),
            "node id 46536 has no local port: --broker-port-base 19000 + 46536 is outside 1..=65535; choose a base so that base + the largest node id fits"
        );
        let mechanism = UpstreamError::Mechanism {
            host: "b1.invalid".to_owned(),
            mechanism: "PLAIN",
            offered: "OAUTHBEARER".to_owned(),
        };
        assert_eq!(
            not_ready(&NotReady::ClientConnection(mechanism)),
            "a client's broker connection failed: broker b1.invalid does not enable SASL mechanism PLAIN (it offers: OAUTHBEARER); choose one with --upstream-sasl"
        );
        assert!(
            build_message(&ProxyBuildError::NoBootstrap)
                .contains("set --bootstrap-server HOST:PORT")
        );
    }
}
