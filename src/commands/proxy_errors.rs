//! The proxy library's errors in the binary's words. The library says what is wrong in its own
//! terms (the `ProxyBuilder` method to call); here each variant whose fix is a setting names
//! the flag instead, from the data the variant carries, as `build_provider` does for the
//! provider's `BuildError`. Variants whose message names no setting keep the library's text.

use anyhow::anyhow;
use gcp_kafka_auth_handler::proxy::cluster_name::{BadClusterName, LookupError, NAME_FORM};
use gcp_kafka_auth_handler::proxy::{
    BindError, CheckError, NotReady, PortError, ProbeError, ProxyBuildError, TlsProblem,
    UpstreamError, UpstreamHint,
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

/// A cluster argument that is not a cluster name, naming the flag for any other Kafka.
pub fn bad_cluster_name(err: &BadClusterName) -> String {
    let BadClusterName { text, why } = err;
    format!(
        "`{text}` is not a Managed Kafka cluster name ({why}): write {NAME_FORM}, e.g. projects/my-project/locations/us-central1/clusters/my-cluster (`gcloud managed-kafka clusters list --location=REGION` lists them); for any other Kafka use --bootstrap-server HOST:PORT"
    )
}

/// Why a cluster's bootstrap address could not be looked up, naming the flag to change.
pub fn lookup_message(err: &LookupError) -> String {
    match err {
        LookupError::ServiceDisabled {
            consumer,
            activation,
        } => format!(
            "the Managed Kafka API (managedkafka.googleapis.com) is disabled in project {consumer}: enable it with `gcloud services enable managedkafka.googleapis.com --project={consumer}`{activation} (the consumer project is the quota project when --quota-project is set), then retry"
        ),
        LookupError::Unreachable { url, detail } => format!(
            "cannot reach the Managed Kafka API at {url}: {detail} (set --managed-kafka-endpoint for a private endpoint)"
        ),
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
        UpstreamError::Resolve { host, detail, hint } => format!(
            "cannot resolve broker host {host}: {detail}; {}",
            hint_message(*hint, host)
        ),
        UpstreamError::Connect {
            host,
            port,
            addr,
            detail,
            hint,
        } => format!(
            "cannot connect to broker {host}:{port} ({addr}): {detail}; {}",
            hint_message(*hint, host)
        ),
        UpstreamError::Tls { host, problem } => format!(
            "TLS handshake with broker {host} failed: {}",
            tls_message(problem)
        ),
        other => other.to_string(),
    }
}

fn hint_message(hint: UpstreamHint, host: &str) -> String {
    match hint {
        UpstreamHint::OutOfDescriptors => "the proxy is out of file descriptors (each client uses two): raise its limit (ulimit -n, LimitNOFILE=) or lower --max-connections".to_owned(),
        UpstreamHint::OutsideVpc => "Managed Kafka brokers are reachable only from the cluster's VPC (use a VPN, bastion or Private Service Connect endpoint, or --forward-proxy), and the port is 9092".to_owned(),
        UpstreamHint::CheckName => format!("check the name, or map it with --resolve {host}=IP"),
        other => other.to_string(),
    }
}

fn tls_message(problem: &TlsProblem) -> String {
    match problem {
        TlsProblem::UnknownIssuer => "the broker's certificate is signed by an unknown issuer; if the cluster uses a private CA, pass its PEM with --upstream-ca-file".to_owned(),
        TlsProblem::NotValidForName { host } => format!(
            "the broker's certificate is not valid for the name `{host}`; connect by the name the cluster advertises (map it with --resolve {host}=IP instead of dialling an IP)"
        ),
        TlsProblem::NotTls(detail) => format!(
            "the broker did not answer with TLS ({detail}); if this is a plaintext test broker, use --upstream-tls=false"
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
        let unresolved = UpstreamError::Resolve {
            host: "b.invalid".to_owned(),
            detail: "no addresses".to_owned(),
            hint: UpstreamHint::CheckName,
        };
        assert_eq!(
            check_error(&CheckError::Probe(ProbeError::Upstream(unresolved))),
            "cannot resolve broker host b.invalid: no addresses; check the name, or map it with --resolve b.invalid=IP"
        );
        let unknown_issuer = UpstreamError::Tls {
            host: "bootstrap.kafka.invalid".to_owned(),
            problem: TlsProblem::UnknownIssuer,
        };
        assert_eq!(
            not_ready(&NotReady::Probe(ProbeError::Upstream(unknown_issuer))),
            "TLS handshake with broker bootstrap.kafka.invalid failed: the broker's certificate is signed by an unknown issuer; if the cluster uses a private CA, pass its PEM with --upstream-ca-file"
        );
    }
}
