//! Rich responses for the fake broker (`Script::rich`): every field that exists at the version
//! holds a non-default value (error codes, throttle, ids, offsets, nested entries, unknown
//! tagged fields at flexible versions), so a proxy that re-encodes a response and loses or
//! changes anything but a broker's host and port is caught by
//! `proxy::rewritten_responses_keep_every_field_but_host_and_port`.
//!
//! Numbers avoid the four bytes `00 00 hi lo` of an ephemeral port (32768..=60999): the leak
//! check in `proxy_support::Client` treats those as a fake broker's port.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

/// A fake broker's node: (node id, host, port).
pub type Node = (i32, String, i32);

/// Unknown tagged fields (tags far above any the protocol defines), only where the version is
/// flexible: elsewhere they are not on the wire.
fn tags(flexible: bool, n: i32) -> BTreeMap<i32, Bytes> {
    if flexible {
        BTreeMap::from([(9000 + n, Bytes::from(format!("tag-{n}")))])
    } else {
        BTreeMap::new()
    }
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn topic_id<T: std::str::FromStr>(n: u8) -> T
where
    T::Err: std::fmt::Debug,
{
    format!("6ba7b81{n}-9dad-11d1-a0b4-11c04fd430c8")
        .parse()
        .unwrap()
}

/// Whether `version` of `key`'s response is flexible (tagged fields on the wire).
pub fn flexible(key: ApiKey, version: i16) -> bool {
    key.response_header_version(version) >= 1 || (key == ApiKey::ApiVersions && version >= 3)
}

macro_rules! node_endpoints {
    ($module:ident, $nodes:expr, $flex:expr) => {
        $nodes
            .iter()
            .map(|(id, host, port)| {
                $module::NodeEndpoint::default()
                    .with_node_id(BrokerId(*id))
                    .with_host(s(host))
                    .with_port(*port)
                    .with_rack(Some(s(&format!("rack-{id}"))))
                    .with_unknown_tagged_fields(tags($flex, 40 + id))
            })
            .collect()
    };
}

/// The rich response body to `key` at `version`, encoded; `None` for a key this module does
/// not build. `api_versions` is the broker's ApiVersions list: (key, min, max).
pub fn body(
    key: ApiKey,
    version: i16,
    nodes: &[Node],
    api_versions: &[(i16, i16, i16)],
) -> Option<Bytes> {
    let flex = flexible(key, version);
    let mut out = BytesMut::new();
    let v = version;
    let last = nodes.last().map_or(-1, |n| n.0);
    let encoded = match key {
        ApiKey::ApiVersions => {
            use api_versions_response::*;
            // error_code stays 0: the proxy's own connection handshake reads this answer too,
            // and the error-35 path has its own test.
            let mut r = ApiVersionsResponse::default()
                .with_api_keys(
                    api_versions
                        .iter()
                        .map(|(k, min, max)| {
                            ApiVersion::default()
                                .with_api_key(*k)
                                .with_min_version(*min)
                                .with_max_version(*max)
                                .with_unknown_tagged_fields(tags(flex, i32::from(*k)))
                        })
                        .collect(),
                )
                .with_unknown_tagged_fields(tags(flex, 1));
            if v >= 1 {
                r = r.with_throttle_time_ms(1234);
            }
            if v >= 3 {
                r = r
                    .with_supported_features(vec![
                        SupportedFeatureKey::default()
                            .with_name(s("group.version"))
                            .with_min_version(1)
                            .with_max_version(3)
                            .with_unknown_tagged_fields(tags(flex, 2)),
                        SupportedFeatureKey::default()
                            .with_name(s("share.version"))
                            .with_min_version(2)
                            .with_max_version(4),
                    ])
                    .with_finalized_features_epoch(987_654_321)
                    .with_finalized_features(vec![
                        FinalizedFeatureKey::default()
                            .with_name(s("group.version"))
                            .with_min_version_level(2)
                            .with_max_version_level(3)
                            .with_unknown_tagged_fields(tags(flex, 3)),
                    ])
                    .with_zk_migration_ready(true);
            }
            r.encode(&mut out, v)
        }
        ApiKey::Metadata => {
            use metadata_response::*;
            let partition = |index: i32| {
                let mut p = MetadataResponsePartition::default()
                    .with_error_code(if index == 0 { 0 } else { 9 })
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(last))
                    .with_replica_nodes(nodes.iter().map(|n| BrokerId(n.0)).collect())
                    .with_isr_nodes(vec![BrokerId(last)])
                    .with_unknown_tagged_fields(tags(flex, 10 + index));
                if v >= 7 {
                    p = p.with_leader_epoch(17 + index);
                }
                if v >= 5 {
                    p = p.with_offline_replicas(vec![BrokerId(nodes[0].0)]);
                }
                p
            };
            let topic = |name: &str, n: u8| {
                let mut t = MetadataResponseTopic::default()
                    .with_error_code(i16::from(n) * 29)
                    .with_name(Some(TopicName(s(name))))
                    .with_partitions(vec![partition(0), partition(1)])
                    .with_unknown_tagged_fields(tags(flex, 20 + i32::from(n)));
                if v >= 10 {
                    t = t.with_topic_id(topic_id(n));
                }
                if v >= 1 {
                    t = t.with_is_internal(n == 1);
                }
                if v >= 8 {
                    t = t.with_topic_authorized_operations(0x0ff8 + i32::from(n));
                }
                t
            };
            let mut r = MetadataResponse::default()
                .with_brokers(
                    nodes
                        .iter()
                        .map(|(id, host, port)| {
                            MetadataResponseBroker::default()
                                .with_node_id(BrokerId(*id))
                                .with_host(s(host))
                                .with_port(*port)
                                .with_rack((v >= 1).then(|| s(&format!("rack-{id}"))))
                                .with_unknown_tagged_fields(tags(flex, 30 + id))
                        })
                        .collect(),
                )
                .with_topics(vec![topic("orders", 0), topic("audit", 1)])
                .with_unknown_tagged_fields(tags(flex, 1));
            if v >= 3 {
                r = r.with_throttle_time_ms(1234);
            }
            if v >= 2 {
                r = r.with_cluster_id(Some(s("rich-cluster")));
            }
            if v >= 1 {
                r = r.with_controller_id(BrokerId(last));
            }
            if (8..=10).contains(&v) {
                r = r.with_cluster_authorized_operations(0x0bb8);
            }
            if v >= 13 {
                r = r.with_error_code(29);
            }
            r.encode(&mut out, v)
        }
        ApiKey::FindCoordinator => {
            use find_coordinator_response::*;
            let (id, host, port) = nodes[1 % nodes.len()].clone();
            let mut r =
                FindCoordinatorResponse::default().with_unknown_tagged_fields(tags(flex, 1));
            if v >= 1 {
                r = r.with_throttle_time_ms(1234);
            }
            if v < 4 {
                r = r
                    .with_error_code(14)
                    .with_node_id(BrokerId(id))
                    .with_host(s(&host))
                    .with_port(port);
                if v >= 1 {
                    r = r.with_error_message(Some(s("loading")));
                }
            } else {
                r = r.with_coordinators(vec![
                    Coordinator::default()
                        .with_key(s("group-a"))
                        .with_node_id(BrokerId(id))
                        .with_host(s(&host))
                        .with_port(port)
                        .with_error_code(14)
                        .with_error_message(Some(s("loading")))
                        .with_unknown_tagged_fields(tags(flex, 2)),
                    Coordinator::default()
                        .with_key(s("group-b"))
                        .with_node_id(BrokerId(last))
                        .with_host(s(&nodes.last().unwrap().1))
                        .with_port(nodes.last().unwrap().2)
                        .with_error_code(0),
                    // As Kafka answers a coordinator it cannot find: no node, nothing to rewrite.
                    Coordinator::default()
                        .with_key(s("group-c"))
                        .with_node_id(BrokerId(-1))
                        .with_host(s(""))
                        .with_port(-1)
                        .with_error_code(15)
                        .with_error_message(Some(s("not available"))),
                ]);
            }
            r.encode(&mut out, v)
        }
        ApiKey::DescribeCluster => {
            use describe_cluster_response::*;
            let mut r = DescribeClusterResponse::default()
                .with_throttle_time_ms(1234)
                .with_error_code(31)
                .with_error_message(Some(s("partly authorised")))
                .with_cluster_id(s("rich-cluster"))
                .with_controller_id(BrokerId(last))
                .with_brokers(
                    nodes
                        .iter()
                        .map(|(id, host, port)| {
                            DescribeClusterBroker::default()
                                .with_broker_id(BrokerId(*id))
                                .with_host(s(host))
                                .with_port(*port)
                                .with_rack(Some(s(&format!("rack-{id}"))))
                                .with_is_fenced(v >= 2 && *id == last)
                                .with_unknown_tagged_fields(tags(flex, 30 + id))
                        })
                        .collect(),
                )
                .with_cluster_authorized_operations(0x0bb8)
                .with_unknown_tagged_fields(tags(flex, 1));
            if v >= 1 {
                r = r.with_endpoint_type(2);
            }
            r.encode(&mut out, v)
        }
        ApiKey::Produce => {
            use produce_response::*;
            let mut t = TopicProduceResponse::default()
                .with_partition_responses(vec![
                    PartitionProduceResponse::default()
                        .with_index(3)
                        .with_error_code(6)
                        .with_base_offset(9_876_543_210)
                        .with_log_append_time_ms(1_700_000_000_123)
                        .with_log_start_offset(77)
                        .with_record_errors(vec![
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(5)
                                .with_batch_index_error_message(Some(s("bad batch")))
                                .with_unknown_tagged_fields(tags(flex, 2)),
                        ])
                        .with_error_message(Some(s("not the leader")))
                        .with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(last))
                                .with_leader_epoch(17)
                                .with_unknown_tagged_fields(tags(flex, 3)),
                        )
                        .with_unknown_tagged_fields(tags(flex, 4)),
                ])
                .with_unknown_tagged_fields(tags(flex, 5));
            t = if v >= 13 {
                t.with_topic_id(topic_id(1))
            } else {
                t.with_name(TopicName(s("orders")))
            };
            ProduceResponse::default()
                .with_responses(vec![t])
                .with_throttle_time_ms(1234)
                .with_node_endpoints(if v >= 10 {
                    node_endpoints!(produce_response, nodes, flex)
                } else {
                    Vec::new()
                })
                .with_unknown_tagged_fields(tags(flex, 1))
                .encode(&mut out, v)
        }
        ApiKey::Fetch => {
            use fetch_response::*;
            let partition = PartitionData::default()
                .with_partition_index(1)
                .with_error_code(6)
                .with_high_watermark(5000)
                .with_last_stable_offset(4990)
                .with_log_start_offset(10)
                .with_diverging_epoch(
                    EpochEndOffset::default()
                        .with_epoch(5)
                        .with_end_offset(4321),
                )
                .with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(last))
                        .with_leader_epoch(17),
                )
                .with_snapshot_id(SnapshotId::default().with_end_offset(99).with_epoch(3))
                .with_aborted_transactions(Some(vec![
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(12_345_678))
                        .with_first_offset(4000)
                        .with_unknown_tagged_fields(tags(flex, 2)),
                ]))
                .with_preferred_read_replica(BrokerId(nodes[0].0))
                .with_records(Some(Bytes::from_static(b"record batches, opaque")))
                .with_unknown_tagged_fields(tags(flex, 3));
            let mut t = FetchableTopicResponse::default()
                .with_partitions(vec![partition])
                .with_unknown_tagged_fields(tags(flex, 4));
            t = if v >= 13 {
                t.with_topic_id(topic_id(2))
            } else {
                t.with_topic(TopicName(s("orders")))
            };
            FetchResponse::default()
                .with_throttle_time_ms(1234)
                .with_error_code(70)
                .with_session_id(424_242)
                .with_responses(vec![t])
                .with_node_endpoints(if v >= 16 {
                    node_endpoints!(fetch_response, nodes, flex)
                } else {
                    Vec::new()
                })
                .with_unknown_tagged_fields(tags(flex, 1))
                .encode(&mut out, v)
        }
        ApiKey::ShareFetch => {
            use share_fetch_response::*;
            ShareFetchResponse::default()
                .with_throttle_time_ms(1234)
                .with_error_code(58)
                .with_error_message(Some(s("share fetch note")))
                .with_acquisition_lock_timeout_ms(30_000)
                .with_responses(vec![
                    ShareFetchableTopicResponse::default()
                        .with_topic_id(topic_id(3))
                        .with_partitions(vec![
                            PartitionData::default()
                                .with_partition_index(2)
                                .with_error_code(6)
                                .with_error_message(Some(s("not the leader")))
                                .with_acknowledge_error_code(87)
                                .with_acknowledge_error_message(Some(s("ack refused")))
                                .with_current_leader(
                                    LeaderIdAndEpoch::default()
                                        .with_leader_id(last)
                                        .with_leader_epoch(17),
                                )
                                .with_records(Some(Bytes::from_static(b"share records")))
                                .with_acquired_records(vec![
                                    AcquiredRecords::default()
                                        .with_first_offset(100)
                                        .with_last_offset(199)
                                        .with_delivery_count(2)
                                        .with_unknown_tagged_fields(tags(flex, 2)),
                                ])
                                .with_unknown_tagged_fields(tags(flex, 3)),
                        ])
                        .with_unknown_tagged_fields(tags(flex, 4)),
                ])
                .with_node_endpoints(node_endpoints!(share_fetch_response, nodes, flex))
                .with_unknown_tagged_fields(tags(flex, 1))
                .encode(&mut out, v)
        }
        ApiKey::ShareAcknowledge => {
            use share_acknowledge_response::*;
            ShareAcknowledgeResponse::default()
                .with_throttle_time_ms(1234)
                .with_error_code(58)
                .with_error_message(Some(s("share ack note")))
                .with_responses(vec![
                    ShareAcknowledgeTopicResponse::default()
                        .with_topic_id(topic_id(4))
                        .with_partitions(vec![
                            PartitionData::default()
                                .with_partition_index(2)
                                .with_error_code(6)
                                .with_error_message(Some(s("not the leader")))
                                .with_current_leader(
                                    LeaderIdAndEpoch::default()
                                        .with_leader_id(last)
                                        .with_leader_epoch(17),
                                )
                                .with_unknown_tagged_fields(tags(flex, 3)),
                        ])
                        .with_unknown_tagged_fields(tags(flex, 4)),
                ])
                .with_node_endpoints(node_endpoints!(share_acknowledge_response, nodes, flex))
                .with_unknown_tagged_fields(tags(flex, 1))
                .encode(&mut out, v)
        }
        _ => return None,
    };
    encoded.unwrap_or_else(|e| panic!("the rich {key:?} v{version} does not encode: {e:#}"));
    Some(out.freeze())
}

/// The response header the fake sends with a rich body: unknown tagged fields when the
/// header is flexible, which the proxy must pass on byte for byte.
pub fn header(key: ApiKey, version: i16, correlation: i32) -> Bytes {
    let mut out = BytesMut::new();
    let header_version = key.response_header_version(version);
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .with_unknown_tagged_fields(tags(header_version >= 1, 99))
        .encode(&mut out, header_version)
        .unwrap();
    out.freeze()
}
