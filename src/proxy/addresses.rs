//! Broker-address rewriting, by node id, in every response that carries one: one
//! [`Addresses`] impl per response type, whose [`through`] its row in
//! [`versions::TABLE`](super::versions::TABLE) names; [`super::rewrite`] dispatches by row.
//!
//! The address a client is given for node `N` is `(advertised host, port_of(N))`, a pure
//! function of the node id, so it is the same after a restart and for every connection.
//! The real address is handed back to the caller, which makes sure node `N`'s local listener
//! exists and targets it before the rewritten response goes out.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{
    DescribeClusterResponse, DescribeConfigsResponse, FetchResponse, FindCoordinatorResponse,
    MetadataResponse, ProduceResponse, ShareAcknowledgeResponse, ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// A broker's real address, as the cluster advertised it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerAddress {
    /// The node id.
    pub node_id: i32,
    /// Host name (SNI and certificate verification use it).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Local ports by node id: `base + node_id`.
#[derive(Debug, Clone)]
pub struct PortMap {
    advertised_host: StrBytes,
    base: u16,
    bootstrap_port: u16,
}

/// A node id that has no local port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// base + node id is past 65535 (or the id is negative).
    #[error(
        "node id {node_id} has no local port: the broker port base {base} + {node_id} is outside 1..=65535; choose a base (ProxyBuilder::with_broker_port_base) so that base + the largest node id fits"
    )]
    OutOfRange {
        /// The node id.
        node_id: i32,
        /// The configured base.
        base: u16,
    },
    /// base + node id is the bootstrap listener's port.
    #[error(
        "node id {node_id} would listen on port {port}, which is the bootstrap listener's; choose a broker port base (ProxyBuilder::with_broker_port_base) that keeps base + node id away from it"
    )]
    Collision {
        /// The node id.
        node_id: i32,
        /// The port both would use.
        port: u16,
    },
}

impl PortMap {
    /// Node `N` is advertised as `advertised_host:(base + N)`; `bootstrap_port` is reserved.
    pub fn new(advertised_host: &str, base: u16, bootstrap_port: u16) -> Self {
        Self {
            advertised_host: StrBytes::from_string(advertised_host.to_owned()),
            base,
            bootstrap_port,
        }
    }

    /// The local port of node `node_id`.
    pub fn port(&self, node_id: i32) -> Result<u16, PortError> {
        let port = i64::from(self.base) + i64::from(node_id);
        if node_id < 0 || !(1..=65535).contains(&port) {
            return Err(PortError::OutOfRange {
                node_id,
                base: self.base,
            });
        }
        let port = port as u16;
        if port == self.bootstrap_port {
            return Err(PortError::Collision { node_id, port });
        }
        Ok(port)
    }
}

/// Why a response could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The broker's bytes do not decode as the expected response.
    #[error("cannot decode the broker's {key:?} v{version} response: {detail}")]
    Decode {
        /// Which API.
        key: ApiKey,
        /// Which version.
        version: i16,
        /// The decoder's complaint.
        detail: String,
    },
    /// Encoding the rewritten response failed.
    #[error("cannot encode the rewritten {key:?} v{version} response: {detail}")]
    Encode {
        /// Which API.
        key: ApiKey,
        /// Which version.
        version: i16,
        /// The encoder's complaint.
        detail: String,
    },
    /// A node id without a local port.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// A rewritten response body and the real addresses it carried.
#[derive(Debug)]
pub struct Rewritten {
    /// The response body (no header), re-encoded at the request's version.
    pub body: BytesMut,
    /// Every broker address that was replaced.
    pub brokers: Vec<BrokerAddress>,
    /// For ApiVersions: what was removed or capped.
    pub api_versions: Option<FilterReport>,
}

/// What the ApiVersions filter removed or cut, for the log and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilterReport {
    /// Keys removed: unknown, hidden, or undecodable at the broker's minimum.
    pub removed: Vec<i16>,
    /// Keys whose maximum was lowered.
    pub capped: Vec<i16>,
}

/// Replaces one address in place and records the real one.
fn swap(
    map: &PortMap,
    seen: &mut Vec<BrokerAddress>,
    node_id: i32,
    host: &mut StrBytes,
    port: &mut i32,
) -> Result<(), PortError> {
    let local = map.port(node_id)?;
    seen.push(BrokerAddress {
        node_id,
        host: host.as_str().to_owned(),
        port: u16::try_from(*port).unwrap_or(0),
    });
    *host = map.advertised_host.clone();
    *port = i32::from(local);
    Ok(())
}

/// Broker configurations whose values are broker or controller addresses. DescribeConfigs
/// answers them with the value hidden, as Kafka itself answers a password: `value` null and
/// `is_sensitive` true (synonyms too). Rewriting them instead would mean inventing listener
/// names and protocols for addresses the proxy does not front (the controllers).
pub const ADDRESS_CONFIGS: &[&str] = &[
    "listeners",
    "advertised.listeners",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "zookeeper.connect",
];

/// Whether DescribeConfigs hides the value of the configuration `name`.
pub fn is_address_config(name: &str) -> bool {
    ADDRESS_CONFIGS.contains(&name) || name.ends_with(".bootstrap.servers")
}

/// Hides the address-valued configurations in a DescribeConfigs answer; returns how many.
fn redact_address_configs(msg: &mut DescribeConfigsResponse) -> usize {
    let mut redacted = 0;
    for config in msg.results.iter_mut().flat_map(|r| r.configs.iter_mut()) {
        if is_address_config(config.name.as_str()) {
            config.value = None;
            config.is_sensitive = true;
            for synonym in &mut config.synonyms {
                synonym.value = None;
            }
            redacted += 1;
        }
    }
    redacted
}

/// How one rewritten key's response body is rewritten: decoded at the request's version, its
/// addresses replaced, re-encoded. The row of [`versions::TABLE`](super::versions::TABLE)
/// that names a key names its function of this type.
pub type RewriteBody = fn(i16, Bytes, &PortMap) -> Result<Rewritten, RewriteError>;

/// Swaps the broker addresses in a decoded response (or hides address-valued
/// configurations); [`through`] decodes and re-encodes around it.
pub(crate) trait Addresses: Decodable + Encodable {
    /// The key whose response this is.
    const KEY: ApiKey;
    /// Replaces every broker address, recording the real ones in `seen`.
    fn rewrite_addresses(
        &mut self,
        version: i16,
        map: &PortMap,
        seen: &mut Vec<BrokerAddress>,
    ) -> Result<(), PortError>;
}

/// The [`RewriteBody`] of a response type: decode, [`Addresses::rewrite_addresses`], encode.
pub(crate) fn through<M: Addresses>(
    version: i16,
    body: Bytes,
    map: &PortMap,
) -> Result<Rewritten, RewriteError> {
    let key = M::KEY;
    let mut buf = body;
    let mut msg = M::decode(&mut buf, version).map_err(|e| RewriteError::Decode {
        key,
        version,
        detail: format!("{e:#}"),
    })?;
    let mut seen = Vec::new();
    msg.rewrite_addresses(version, map, &mut seen)?;
    let mut out = BytesMut::new();
    msg.encode(&mut out, version)
        .map_err(|e| RewriteError::Encode {
            key,
            version,
            detail: format!("{e:#}"),
        })?;
    Ok(Rewritten {
        body: out,
        brokers: seen,
        api_versions: None,
    })
}

impl Addresses for MetadataResponse {
    const KEY: ApiKey = ApiKey::Metadata;
    fn rewrite_addresses(
        &mut self,
        _version: i16,
        map: &PortMap,
        seen: &mut Vec<BrokerAddress>,
    ) -> Result<(), PortError> {
        for b in &mut self.brokers {
            swap(map, seen, b.node_id.0, &mut b.host, &mut b.port)?;
        }
        Ok(())
    }
}

impl Addresses for FindCoordinatorResponse {
    const KEY: ApiKey = ApiKey::FindCoordinator;
    fn rewrite_addresses(
        &mut self,
        version: i16,
        map: &PortMap,
        seen: &mut Vec<BrokerAddress>,
    ) -> Result<(), PortError> {
        if version < 4 {
            if self.node_id.0 >= 0 {
                swap(map, seen, self.node_id.0, &mut self.host, &mut self.port)?;
            }
        } else {
            for c in self.coordinators.iter_mut().filter(|c| c.node_id.0 >= 0) {
                swap(map, seen, c.node_id.0, &mut c.host, &mut c.port)?;
            }
        }
        Ok(())
    }
}

impl Addresses for DescribeClusterResponse {
    const KEY: ApiKey = ApiKey::DescribeCluster;
    fn rewrite_addresses(
        &mut self,
        _version: i16,
        map: &PortMap,
        seen: &mut Vec<BrokerAddress>,
    ) -> Result<(), PortError> {
        for b in &mut self.brokers {
            swap(map, seen, b.broker_id.0, &mut b.host, &mut b.port)?;
        }
        Ok(())
    }
}

/// KIP-951 `node_endpoints` (Produce, Fetch) and KIP-932's (ShareFetch, ShareAcknowledge).
macro_rules! node_endpoints {
    ($($response:ty => $key:ident),* $(,)?) => {$(
        impl Addresses for $response {
            const KEY: ApiKey = ApiKey::$key;
            fn rewrite_addresses(
                &mut self,
                _version: i16,
                map: &PortMap,
                seen: &mut Vec<BrokerAddress>,
            ) -> Result<(), PortError> {
                for n in &mut self.node_endpoints {
                    swap(map, seen, n.node_id.0, &mut n.host, &mut n.port)?;
                }
                Ok(())
            }
        }
    )*};
}

node_endpoints! {
    ProduceResponse => Produce,
    FetchResponse => Fetch,
    ShareFetchResponse => ShareFetch,
    ShareAcknowledgeResponse => ShareAcknowledge,
}

/// DescribeConfigs names no node, but address-valued configurations: hidden, not rewritten.
impl Addresses for DescribeConfigsResponse {
    const KEY: ApiKey = ApiKey::DescribeConfigs;
    fn rewrite_addresses(
        &mut self,
        _version: i16,
        _map: &PortMap,
        _seen: &mut Vec<BrokerAddress>,
    ) -> Result<(), PortError> {
        redact_address_configs(self);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::rewrite::rewrite;
    use super::super::versions;
    use super::*;
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;

    fn map() -> PortMap {
        PortMap::new("127.0.0.1", 19000, 9092)
    }

    fn encode(msg: &impl Encodable, version: i16) -> Bytes {
        let mut out = BytesMut::new();
        msg.encode(&mut out, version).unwrap();
        out.freeze()
    }

    #[test]
    fn ports_are_base_plus_node_id_within_range_and_away_from_bootstrap() {
        let map = map();
        assert_eq!(map.port(0), Ok(19000));
        assert_eq!(map.port(7), Ok(19007));
        assert_eq!(map.port(46535), Ok(65535));
        assert_eq!(
            map.port(46536),
            Err(PortError::OutOfRange {
                node_id: 46536,
                base: 19000
            })
        );
        assert_eq!(
            map.port(-1),
            Err(PortError::OutOfRange {
                node_id: -1,
                base: 19000
            })
        );
        let clash = PortMap::new("127.0.0.1", 9090, 9092);
        assert_eq!(
            clash.port(2),
            Err(PortError::Collision {
                node_id: 2,
                port: 9092
            })
        );
        assert!(
            PortError::OutOfRange {
                node_id: 46536,
                base: 19000
            }
            .to_string()
            .contains("the broker port base 19000 + 46536")
        );
    }

    #[test]
    fn metadata_brokers_are_rewritten_at_every_version() {
        for version in 0..=13 {
            let upstream = MetadataResponse::default().with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("broker-1.kafka.invalid"))
                    .with_port(9092)
                    .with_rack((version >= 1).then(|| StrBytes::from_static_str("zone-a"))),
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(3))
                    .with_host(StrBytes::from_static_str("broker-3.kafka.invalid"))
                    .with_port(9093),
            ]);
            let out = rewrite(
                ApiKey::Metadata,
                version,
                encode(&upstream, version),
                &map(),
            )
            .unwrap();
            assert_eq!(
                out.brokers,
                [
                    BrokerAddress {
                        node_id: 1,
                        host: "broker-1.kafka.invalid".into(),
                        port: 9092
                    },
                    BrokerAddress {
                        node_id: 3,
                        host: "broker-3.kafka.invalid".into(),
                        port: 9093
                    }
                ]
            );
            let got = MetadataResponse::decode(&mut out.body.freeze(), version).unwrap();
            let brokers: Vec<(i32, &str, i32, Option<&str>)> = got
                .brokers
                .iter()
                .map(|b| {
                    (
                        b.node_id.0,
                        b.host.as_str(),
                        b.port,
                        b.rack.as_ref().map(|r| r.as_str()),
                    )
                })
                .collect();
            let rack = (version >= 1).then_some("zone-a");
            assert_eq!(
                brokers,
                [(1, "127.0.0.1", 19001, rack), (3, "127.0.0.1", 19003, None)],
                "v{version}"
            );
        }
    }

    #[test]
    fn find_coordinator_single_and_batch_skip_missing_nodes() {
        let single = FindCoordinatorResponse::default()
            .with_node_id(BrokerId(2))
            .with_host(StrBytes::from_static_str("b2.invalid"))
            .with_port(9092);
        let out = rewrite(ApiKey::FindCoordinator, 3, encode(&single, 3), &map()).unwrap();
        let got = FindCoordinatorResponse::decode(&mut out.body.freeze(), 3).unwrap();
        assert_eq!(
            (got.node_id.0, got.host.as_str(), got.port),
            (2, "127.0.0.1", 19002)
        );

        let batch = FindCoordinatorResponse::default().with_coordinators(vec![
            Coordinator::default()
                .with_key(StrBytes::from_static_str("group-a"))
                .with_node_id(BrokerId(4))
                .with_host(StrBytes::from_static_str("b4.invalid"))
                .with_port(9092),
            Coordinator::default()
                .with_key(StrBytes::from_static_str("group-b"))
                .with_node_id(BrokerId(-1))
                .with_error_code(kafka_protocol::ResponseError::CoordinatorNotAvailable.code()),
        ]);
        let out = rewrite(ApiKey::FindCoordinator, 6, encode(&batch, 6), &map()).unwrap();
        assert_eq!(out.brokers.len(), 1);
        let got = FindCoordinatorResponse::decode(&mut out.body.freeze(), 6).unwrap();
        let coords: Vec<(&str, i32, &str, i32)> = got
            .coordinators
            .iter()
            .map(|c| (c.key.as_str(), c.node_id.0, c.host.as_str(), c.port))
            .collect();
        assert_eq!(
            coords,
            [("group-a", 4, "127.0.0.1", 19004), ("group-b", -1, "", 0)]
        );
    }

    #[test]
    fn an_unsupported_version_api_versions_answer_is_decoded_at_v0() {
        let answer = versions::unsupported_api_versions_response();
        let bytes = encode(&answer, 0);
        // The client asked at v3; the broker answered at v0 (KIP-511).
        let out = rewrite(ApiKey::ApiVersions, 3, bytes.clone(), &map()).unwrap();
        assert_eq!(out.body.freeze(), bytes);
    }

    #[test]
    fn describe_configs_hides_addresses_and_keeps_everything_else() {
        use kafka_protocol::messages::describe_configs_response::{
            DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
        };
        let config = |name: &'static str, value: &'static str| {
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(name))
                .with_value(Some(StrBytes::from_static_str(value)))
                .with_config_source(1)
                .with_synonyms(vec![
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_value(Some(StrBytes::from_static_str(value)))
                        .with_source(5),
                ])
        };
        let answer = DescribeConfigsResponse::default()
            .with_throttle_time_ms(7)
            .with_results(vec![
                DescribeConfigsResult::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1"))
                    .with_configs(vec![
                        config(
                            "advertised.listeners",
                            "SASL_SSL://broker-1.kafka.invalid:9092",
                        ),
                        config("listeners", "SASL_SSL://:9092,CONTROLLER://:9093"),
                        config("controller.quorum.voters", "1@ctl.kafka.invalid:9093"),
                        config(
                            "controller.quorum.bootstrap.servers",
                            "ctl.kafka.invalid:9093",
                        ),
                        config("log.retention.hours", "168"),
                    ]),
            ]);
        for version in 1..=4 {
            let out = rewrite(
                ApiKey::DescribeConfigs,
                version,
                encode(&answer, version),
                &map(),
            )
            .unwrap();
            let text = String::from_utf8_lossy(&out.body);
            assert!(!text.contains("kafka.invalid"), "v{version}: {text}");
            assert!(!text.contains(":9092"), "v{version}: {text}");
            let got = DescribeConfigsResponse::decode(&mut out.body.freeze(), version).unwrap();
            let mut expected = answer.clone();
            for c in &mut expected.results[0].configs[..4] {
                c.value = None;
                c.is_sensitive = true;
                for s in &mut c.synonyms {
                    s.value = None;
                }
            }
            // documentation and config_type exist from v3.
            if version < 3 {
                let absent = DescribeConfigsResourceResult::default();
                for c in &mut expected.results[0].configs {
                    c.config_type = absent.config_type;
                    c.documentation = absent.documentation.clone();
                }
            }
            assert_eq!(got, expected, "v{version}");
            assert!(out.brokers.is_empty());
        }
    }

    #[test]
    fn garbage_is_a_decode_error_naming_the_api() {
        let err =
            rewrite(ApiKey::Metadata, 12, Bytes::from_static(&[1, 2, 3]), &map()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot decode the broker's Metadata v12 response"),
            "{err}"
        );
    }

    /// A timed loop for the KIP-951 decision (`cargo bench --bench proxy_decode` measures the
    /// same with criterion in an optimised build): opaque forwarding writes 4 bytes, rewriting
    /// decodes and re-encodes the whole Fetch response.
    #[test]
    #[ignore = "a measurement, not a check: run with --ignored --nocapture"]
    fn kip_951_fetch_rewrite_cost() {
        use kafka_protocol::messages::fetch_response::{
            FetchableTopicResponse, NodeEndpoint, PartitionData,
        };
        let records = Bytes::from(vec![0x5a; 32 * 1024]);
        let response = FetchResponse::default()
            .with_responses(
                (0..4)
                    .map(|_| {
                        FetchableTopicResponse::default().with_partitions(
                            (0..8)
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p)
                                        .with_records(Some(records.clone()))
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
            .with_node_endpoints(vec![
                NodeEndpoint::default()
                    .with_node_id(BrokerId(2))
                    .with_host(StrBytes::from_static_str("b2.invalid"))
                    .with_port(9092),
            ]);
        let body = encode(&response, 16);
        let mut frame = crate::proxy::frame::framed(&body);
        let rounds = 200u32;
        let started = std::time::Instant::now();
        for i in 0..rounds {
            crate::proxy::frame::set_response_correlation_id(&mut frame, i as i32);
        }
        let opaque = started.elapsed() / rounds;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(rewrite(ApiKey::Fetch, 16, body.clone(), &map()).unwrap());
        }
        let rewritten = started.elapsed() / rounds;
        println!(
            "Fetch v16 response of {} bytes: opaque {opaque:?}, decode+rewrite+encode {rewritten:?}",
            body.len()
        );
    }
}
