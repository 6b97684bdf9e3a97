//! What decoding a record-carrying response would cost the proxy: `cargo bench --bench
//! proxy_decode`.
//!
//! KIP-951 put broker addresses (`node_endpoints`) into Produce v10+ and Fetch v16+
//! responses. The proxy either rewrites them, decoding and re-encoding every Fetch response
//! (records are copied into the new frame), or offers clients Fetch ≤ 15 / Produce ≤ 9 and
//! forwards those responses opaquely (a 4-byte correlation-id write). This measures both on
//! a realistic consumer Fetch response: 4 topics × 8 partitions × 32 KiB of record batches
//! (1 MiB, a `fetch.max.bytes`-sized answer at moderate load), and on a small one
//! (1 partition, 1 KiB).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};
use gcp_kafka_auth_handler::proxy::bench_hooks::{self, Rewriter};
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchResponse};
use kafka_protocol::protocol::{Encodable, StrBytes};

fn fetch_response(topics: usize, partitions: i32, record_bytes: usize) -> Bytes {
    let records = Bytes::from(vec![0x5a; record_bytes]);
    let response = FetchResponse::default()
        .with_responses(
            (0..topics)
                .map(|_| {
                    FetchableTopicResponse::default().with_partitions(
                        (0..partitions)
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p)
                                    .with_high_watermark(1_000_000)
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
                .with_host(StrBytes::from_static_str("broker-2.kafka.invalid"))
                .with_port(9092),
        ]);
    let mut out = BytesMut::new();
    response.encode(&mut out, 16).unwrap();
    out.freeze()
}

fn benches(c: &mut Criterion) {
    let rewriter = Rewriter::new("127.0.0.1", 9093, 9092);
    for (name, body) in [
        ("fetch_1mib", fetch_response(4, 8, 32 * 1024)),
        ("fetch_1kib", fetch_response(1, 1, 1024)),
    ] {
        let mut framed = bench_hooks::framed(&[&[0, 0, 0, 7][..], &body[..]].concat());
        c.bench_function(&format!("proxy/opaque/{name}"), |b| {
            b.iter(|| {
                bench_hooks::set_response_correlation_id(black_box(&mut framed[..]), 42);
            })
        });
        c.bench_function(&format!("proxy/rewrite/{name}"), |b| {
            b.iter(|| {
                black_box(
                    rewriter
                        .rewrite(ApiKey::Fetch as i16, 16, body.clone())
                        .unwrap(),
                )
            })
        });
    }
}

criterion_group!(proxy, benches);
criterion_main!(proxy);
