//! The proxy against hostile, slow and misbehaving clients: memory stays under the
//! documented bound (`proxy::limits`), connections that never speak or sit idle give way,
//! requests the proxy does not offer never reach a broker, and a broken request stream closes
//! at once. In process against the fake broker, and (for memory) the real binary.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fake_google::FakeGoogle;
use gcp_kafka_auth_handler::proxy::Limits;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::proxy::{LOOPBACK, host, port_base, start, start_proxy};
use crate::proxy_support::{Client, FakeBroker, RAW_ECHO, RAW_SIZED, Script, Seen};
use crate::support::{Sidecar, SidecarEnv, free_port, memory_kib};

const MIB: usize = 1024 * 1024;

fn connections(seen: &[Seen]) -> usize {
    seen.iter()
        .filter(|s| matches!(s, Seen::Connected(_)))
        .count()
}

fn requests_with_key(seen: &[Seen], key: i16) -> usize {
    seen.iter()
        .filter(|s| matches!(s, Seen::Request(_, k, _, _) if *k == key))
        .count()
}

/// A raw request header (v1: key, version, correlation id, null client id) and `body`.
fn raw_request(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut out = key.to_be_bytes().to_vec();
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&[0xff, 0xff]);
    out.extend_from_slice(body);
    out
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn a_connection_that_never_completes_a_request_is_closed_and_never_reaches_a_broker() {
    let broker = FakeBroker::start(Script::default()).await;
    let port = i32::from(broker.addr.port());
    broker.set(|s| s.brokers = vec![(1, host(1), port)]);
    let proxy = start_proxy(&broker, &[1], |b| {
        b.with_upstream_tls(false)
            .with_first_request_timeout(Duration::from_millis(300))
    })
    .await;
    proxy.wait_readyz(200).await;
    // The readiness probe's own connection is the only one so far.
    let probe = connections(&broker.seen());
    // 200 connect-and-close cycles: no broker connection, no authentication (the proxy
    // opens the broker connection on the first request, not at accept).
    for _ in 0..200 {
        // not a client of the proxy: connects and closes at once, reads nothing.
        drop(TcpStream::connect(proxy.bootstrap).await.unwrap());
    }
    // Silent, and half a request header: both closed after the first-request timeout.
    let mut silent = Client::connect(proxy.bootstrap).await;
    let mut partial = Client::connect(proxy.bootstrap).await;
    partial.send_unframed(&[0, 0, 0, 40, 0, 3]).await;
    let started = Instant::now();
    assert!(silent.closed().await);
    assert!(partial.closed().await);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert_eq!(connections(&broker.seen()), probe, "{:?}", broker.seen());
    // The first real request opens exactly one broker connection.
    let mut client = Client::connect(proxy.bootstrap).await;
    client.send(&ApiVersionsRequest::default(), 3).await;
    let (_, answer) = client.recv::<ApiVersionsRequest>(3).await;
    assert_eq!(answer.error_code, 0);
    assert_eq!(connections(&broker.seen()), probe + 1);
    proxy.stop().await;
}

#[tokio::test]
async fn idle_connections_give_way_at_the_connection_limit_and_time_out() {
    let (broker, proxy) = {
        let broker = FakeBroker::start(Script::default()).await;
        let port = i32::from(broker.addr.port());
        broker.set(|s| s.brokers = vec![(1, host(1), port)]);
        let proxy = start_proxy(&broker, &[1], |b| {
            b.with_upstream_tls(false).with_max_connections(3)
        })
        .await;
        (broker, proxy)
    };
    proxy.wait_readyz(200).await;
    let probe = connections(&broker.seen());
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(proxy.bootstrap).await;
        client.send(&ApiVersionsRequest::default(), 3).await;
        client.recv::<ApiVersionsRequest>(3).await;
        idle.push(client);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every slot is held by an idle connection: a new client is still served, and the
    // connection idle longest (the first) is the one closed for it.
    let mut newcomer = Client::connect(proxy.bootstrap).await;
    newcomer.send(&ApiVersionsRequest::default(), 3).await;
    let started = Instant::now();
    let (_, answer) = newcomer.recv::<ApiVersionsRequest>(3).await;
    assert_eq!(answer.error_code, 0);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        idle[0].closed().await,
        "the longest-idle connection gave way"
    );
    // The others still work.
    for client in &mut idle[1..] {
        client.send(&ApiVersionsRequest::default(), 3).await;
        assert_eq!(client.recv::<ApiVersionsRequest>(3).await.1.error_code, 0);
    }
    assert_eq!(connections(&broker.seen()), probe + 4);
    proxy.stop().await;

    // The idle timeout.
    let (_broker, proxy) = {
        let broker = FakeBroker::start(Script::default()).await;
        let port = i32::from(broker.addr.port());
        broker.set(|s| s.brokers = vec![(1, host(1), port)]);
        let proxy = start_proxy(&broker, &[1], |b| {
            b.with_upstream_tls(false)
                .with_idle_timeout(Duration::from_millis(400))
        })
        .await;
        (broker, proxy)
    };
    let mut client = Client::connect(proxy.bootstrap).await;
    client.send(&ApiVersionsRequest::default(), 3).await;
    client.recv::<ApiVersionsRequest>(3).await;
    let started = Instant::now();
    assert!(client.closed().await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn hidden_keys_are_answered_locally_and_unknown_ones_close_without_reaching_the_broker() {
    let (broker, proxy) = start(Script::default(), &[1]).await;
    let mut client = Client::connect(proxy.bootstrap).await;
    let id = client.send(&DescribeQuorumRequest::default(), 2).await;
    let (got, answer) = client.recv::<DescribeQuorumRequest>(2).await;
    assert_eq!(got, id);
    assert_eq!(answer.error_code, 31, "CLUSTER_AUTHORIZATION_FAILED");
    assert_eq!(
        answer.error_message.as_deref(),
        Some("the gcp-kafka-auth-handler proxy does not forward DescribeQuorum")
    );
    for version in 1..=3 {
        let id = client
            .send(&CreateDelegationTokenRequest::default(), version)
            .await;
        let (got, answer) = client.recv::<CreateDelegationTokenRequest>(version).await;
        assert_eq!(got, id);
        assert_eq!(
            answer.error_code, 64,
            "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED"
        );
    }
    let id = client
        .send(&DescribeDelegationTokenRequest::default(), 3)
        .await;
    assert_eq!(
        client.recv::<DescribeDelegationTokenRequest>(3).await,
        (
            id,
            DescribeDelegationTokenResponse::default().with_error_code(64)
        )
    );
    // The connection still works; then a request the proxy never offers: the one before it
    // is answered, then the connection closes.
    let meta = client
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 12)
        .await;
    client.send_raw(&raw_request(999, 0, 7, b"x")).await;
    assert_eq!(client.recv::<MetadataRequest>(12).await.0, meta);
    assert!(client.closed().await);
    for (key, version) in [(10_000, 0), (3, 99), (0, 14)] {
        let mut client = Client::connect(proxy.bootstrap).await;
        client.send_raw(&raw_request(key, version, 1, b"")).await;
        assert!(client.closed().await, "key {key} v{version}");
    }
    let seen = broker.seen();
    for key in [55, 38, 41, 999, 10_000] {
        assert_eq!(requests_with_key(&seen, key), 0, "key {key}: {seen:?}");
    }
    // The client's Metadata v12 (the readiness probe asks at v9).
    let client_metadata = seen
        .iter()
        .filter(|s| matches!(s, Seen::Request(_, 3, 12, _)))
        .count();
    assert_eq!(client_metadata, 1, "{seen:?}");
    let (_, metrics) = proxy.http("/metrics").await;
    for line in [
        "gcp_kafka_auth_proxy_client_errors_total{reason=\"hidden_api\"} 5",
        "gcp_kafka_auth_proxy_client_errors_total{reason=\"api_not_offered\"} 4",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_speaking_sasl_first_is_refused_without_touching_the_broker() {
    let (broker, proxy) = start(Script::default(), &[1]).await;
    proxy.wait_readyz(200).await;
    let probe = connections(&broker.seen());
    let mut client = Client::connect(proxy.bootstrap).await;
    let id = client
        .send(
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str("OAUTHBEARER")),
            1,
        )
        .await;
    let (got, answer) = client.recv::<SaslHandshakeRequest>(1).await;
    assert_eq!((got, answer.error_code), (id, 33));
    assert!(client.closed().await);
    assert_eq!(connections(&broker.seen()), probe, "{:?}", broker.seen());
    proxy.stop().await;
}

#[tokio::test]
async fn a_framing_error_after_a_valid_request_closes_both_halves_at_once() {
    let broker = FakeBroker::start(Script::default()).await;
    let port = i32::from(broker.addr.port());
    broker.set(|s| s.brokers = vec![(1, host(1), port)]);
    let proxy = start_proxy(&broker, &[1], |b| {
        b.with_upstream_tls(false).with_max_connections(1)
    })
    .await;
    let mut poison = Client::connect(proxy.bootstrap).await;
    // A valid request and a negative size prefix in one write.
    let mut bytes = framed(&raw_request(18, 0, 1, b""));
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xf0]);
    poison.send_unframed(&bytes).await;
    let started = Instant::now();
    poison.drain_to_close().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // Its slot is free at once: the one-connection proxy serves the next client.
    let mut next = Client::connect(proxy.bootstrap).await;
    next.send(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(next.recv::<ApiVersionsRequest>(3).await.1.error_code, 0);
    proxy.stop().await;
}

#[tokio::test]
async fn describe_configs_hides_broker_addresses() {
    let (_broker, proxy) = start(Script::default(), &[1]).await;
    let mut client = Client::connect(proxy.bootstrap).await;
    for version in 1..=4 {
        let id = client
            .send(
                &DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(StrBytes::from_static_str("1")),
                ]),
                version,
            )
            .await;
        let (got, answer) = client.recv::<DescribeConfigsRequest>(version).await;
        assert_eq!(got, id);
        let configs: Vec<(String, Option<String>, bool)> = answer.results[0]
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.value.as_ref().map(|v| v.to_string()),
                    c.is_sensitive,
                )
            })
            .collect();
        assert_eq!(
            configs,
            [
                ("advertised.listeners".to_owned(), None, true),
                ("listeners".to_owned(), None, true),
                (
                    "log.retention.hours".to_owned(),
                    Some("168".to_owned()),
                    false
                ),
            ],
            "v{version}"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn requests_larger_than_the_buffer_stream_through_in_order() {
    let (broker, proxy) = start(Script::default(), &[1]).await;
    let mut client = Client::connect(proxy.bootstrap).await;
    // 3 MiB of records: 48 times the connection buffer, then a small request right behind.
    let records = bytes::Bytes::from((0..3 * MIB).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    let produce = ProduceRequest::default().with_acks(1).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ]),
    ]);
    let first = client.send(&produce, 9).await;
    let second = client
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 12)
        .await;
    assert_eq!(client.recv::<ProduceRequest>(9).await.0, first);
    assert_eq!(client.recv::<MetadataRequest>(12).await.0, second);
    let seen = broker.seen();
    assert_eq!(requests_with_key(&seen, 0), 1);
    let (_, metrics) = proxy.http("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "gcp_kafka_auth_proxy_buffered_bytes 0"),
        "{metrics}"
    );
    proxy.stop().await;
}

/// Re-authentication is not starved by large answers read slowly: past half the session the
/// proxy re-authenticates before forwarding the next request, at once when nothing is in
/// flight, else once what is in flight is answered, writing nothing behind it meanwhile.
/// (Kafka reads a connection's requests one at a time and closes it on one read after the
/// session's end; a re-authentication queued at the 85-95 % deadline behind large
/// pipelined answers read slowly reaches it too late.) Checked by order, not by timing: the
/// broker's log of what it read on the client's connection.
#[tokio::test]
async fn past_half_the_session_requests_wait_for_a_reauthentication() {
    let script = Script {
        session_lifetime_ms: 4000,
        ..Script::default()
    };
    let (broker, proxy) = start(script, &[1]).await;
    proxy.wait_readyz(200).await;
    let mut client = Client::connect(proxy.bootstrap).await;
    // t = 0: a small request, answered at once.
    client.send_raw(&raw_request(RAW_ECHO, 0, 1, b"")).await;
    client.recv_raw().await.unwrap();
    // t ≈ 1.2 s: an 8 MiB answer, read slowly (about 3 s) ...
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client
        .send_raw(&raw_request(
            RAW_SIZED,
            0,
            2,
            &(8 * MIB as u32).to_be_bytes(),
        ))
        .await;
    // ... and at t ≈ 2.2 s (past half the session, before its 85-95 % deadline) another
    // request while the first is still being read.
    let mut sent_third = false;
    let big = client
        .recv_raw_paced(64 * 1024, Duration::from_millis(20), |elapsed| {
            (!sent_third && elapsed >= Duration::from_millis(1000)).then(|| {
                sent_third = true;
                framed(&raw_request(RAW_ECHO, 0, 3, b""))
            })
        })
        .await;
    assert_eq!(big.len(), 8 * MIB + 4);
    assert!(sent_third);
    client.recv_raw().await.unwrap();
    // What the broker read on the client's connection, after the first authentication.
    let seen = broker.seen();
    let conn = seen
        .iter()
        .rev()
        .find_map(|s| match s {
            Seen::Request(conn, key, _, _) if *key == RAW_ECHO => Some(*conn),
            _ => None,
        })
        .unwrap();
    let keys: Vec<i16> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Request(c, key, _, _) if *c == conn => Some(*key),
            _ => None,
        })
        .skip(3)
        .collect();
    assert_eq!(
        keys,
        [RAW_ECHO, RAW_SIZED, 17, 36, RAW_ECHO],
        "the second request must wait for the re-authentication: {seen:?}"
    );
    assert!(
        !seen.iter().any(|s| matches!(s, Seen::Expired(_))),
        "{seen:?}"
    );
    proxy.stop().await;
}

/// The memory bound of `proxy::limits`, measured on the binary: the peak RSS stays within
/// the idle process's plus `max_connections × (2 × buffer + overhead) + max_buffered_bytes`
/// while clients trickle huge requests, pipeline requests whose answers they never read, and
/// never read a 50 MiB response.
#[tokio::test]
async fn memory_stays_under_the_documented_bound_whatever_clients_send() {
    let google = FakeGoogle::start().await;
    let broker = FakeBroker::start(Script::default()).await;
    let port = broker.addr.port();
    broker.set(|s| s.brokers = vec![(1, host(1), i32::from(port))]);
    let listen = free_port();
    let base = port_base();
    let limits = Limits {
        max_connections: 32,
        max_buffered_bytes: 16 * MIB,
        connection_buffer: 64 * 1024,
        ..Limits::default()
    };
    let env = SidecarEnv::new(&google).set("RUST_LOG", "warn,gcp_kafka_auth_handler=info");
    let mut sidecar = Sidecar::spawn(
        env,
        &[
            "proxy",
            "--bootstrap-server",
            &format!("bootstrap.kafka.invalid:{port}"),
            "--upstream-tls=false",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--broker-port-base",
            &base.to_string(),
            "--resolve",
            &format!("bootstrap.kafka.invalid=127.0.0.1,{}=127.0.0.1", host(1)),
            "--http-port",
            "0",
            "--max-connections",
            &limits.max_connections.to_string(),
            "--max-buffered-bytes",
            &limits.max_buffered_bytes.to_string(),
            "--connection-buffer-bytes",
            &limits.connection_buffer.to_string(),
            "--log-format",
            "json",
        ],
    );
    sidecar.wait_ready().await;
    let bootstrap = SocketAddr::new(LOOPBACK, listen);
    // The idle floor: a client's first exchange done, so the runtime's and the rewriting
    // path's one-off allocations are in it.
    let mut warm = Client::connect(bootstrap).await;
    warm.send(&MetadataRequest::default().with_topics(None), 12)
        .await;
    warm.recv::<MetadataRequest>(12).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, floor) = memory_kib(sidecar.pid());
    let bound = floor + limits.memory_bound_above_floor() as u64 / 1024;
    let check = |what: &str| {
        let (rss, hwm) = memory_kib(sidecar.pid());
        assert!(
            hwm <= bound,
            "{what}: peak RSS {hwm} KiB (now {rss}) above the bound {bound} KiB (idle {floor} KiB)"
        );
        hwm
    };

    // 1. 20 clients each declare a 99 MiB Produce and send 8 MiB of it.
    const CLIENTS: usize = 20;
    const SENT: usize = 8 * MIB;
    let mut header = (99 * MIB as u32).to_be_bytes().to_vec();
    header.extend_from_slice(&raw_request(0, 3, 1, &[0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30]));
    let before = metric(&sidecar, "gcp_kafka_auth_proxy_bytes_to_broker_total").await;
    let mut tricklers = Vec::new();
    for _ in 0..CLIENTS {
        let header = header.clone();
        tricklers.push(tokio::spawn(async move {
            // not a client of the proxy: it only writes (a request body), never reads.
            let mut stream = TcpStream::connect(bootstrap).await.unwrap();
            stream.write_all(&header).await.unwrap();
            let chunk = vec![0x5a_u8; 64 * 1024];
            for _ in 0..SENT / chunk.len() {
                stream.write_all(&chunk).await.unwrap();
            }
            stream
        }));
    }
    let mut held = Vec::new();
    for t in tricklers {
        held.push(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("the proxy streams the bodies on")
                .unwrap(),
        );
    }
    // Every byte reached the broker: the bodies were streamed, not held.
    let expected = before + (CLIENTS * (header.len() + SENT)) as u64;
    let mut forwarded = 0;
    for _ in 0..500 {
        forwarded = metric(&sidecar, "gcp_kafka_auth_proxy_bytes_to_broker_total").await;
        if forwarded >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peak = check("20 × 99 MiB requests, 8 MiB of each sent");
    assert_eq!(forwarded, expected);
    drop(held);

    // 2. 100,000 small pipelined requests whose answers the client never reads.
    // not a client of the proxy: it only writes (requests), never reads an answer.
    let mut pipeliner = TcpStream::connect(bootstrap).await.unwrap();
    let one = framed(&raw_request(RAW_ECHO, 0, 5, b""));
    let writer = tokio::spawn(async move {
        let batch: Vec<u8> = one.repeat(1000);
        for _ in 0..100 {
            if pipeliner.write_all(&batch).await.is_err() {
                break;
            }
        }
        pipeliner
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = peak.max(check("100,000 pipelined requests, no answer read"));
    writer.abort();

    // 3. A 50 MiB response the client never reads.
    let mut reader = Client::connect(bootstrap).await;
    reader
        .send_raw(&raw_request(
            RAW_SIZED,
            0,
            9,
            &(50 * MIB as u32).to_be_bytes(),
        ))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = peak.max(check("a 50 MiB response not read"));
    drop(reader);
    eprintln!("memory: idle {floor} KiB, peak {peak} KiB, bound {bound} KiB");
    assert!(!sidecar.logs().contains("panicked"), "{}", sidecar.logs());
    let _ = sidecar.terminate(Duration::from_secs(15));
}

/// One counter's value from the binary's `/metrics`.
async fn metric(sidecar: &Sidecar, name: &str) -> u64 {
    let text = reqwest::get(sidecar.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn an_endless_managed_kafka_api_answer_is_cut_at_the_limit() {
    use gcp_kafka_auth_handler::proxy::cluster_name::{LookupOptions, lookup_bootstrap};
    let google = FakeGoogle::start().await;
    let provider = crate::proxy::provider(&google);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 4096];
        let _ = stream.read(&mut head).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        // Endless (bounded here at 256 MiB so the test stops by itself).
        let piece = [b' '; 64 * 1024];
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(&piece);
        chunk.extend_from_slice(b"\r\n");
        for _ in 0..4096 {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
            counter.fetch_add(piece.len(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    let name = "projects/p/locations/l/clusters/c".parse().unwrap();
    let options = LookupOptions {
        endpoint: Some(format!("http://{addr}")),
        ..LookupOptions::default()
    };
    let err = lookup_bootstrap(&provider, &name, &options)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < 64 * MIB, "the proxy kept reading: {sent} bytes sent");
}

/// Readiness follows what clients get: a client's failed broker connection makes `/readyz`
/// 503 at once (the periodic probe runs only every minute), and its next success 200 again.
/// The client whose broker connection failed is reset, as a refused connection to a down
/// broker would be, not closed in order (which franz-go takes for a TLS or SASL mistake and
/// does not retry).
#[tokio::test]
async fn readiness_follows_the_client_path_both_ways_at_once() {
    let (broker, proxy) = start(Script::default(), &[1]).await;
    proxy.wait_readyz(200).await;
    broker.set(|s| s.refuse = Some("Authentication failed: token expired".into()));
    let mut client = Client::connect(proxy.bootstrap).await;
    client.send(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(client.ending().await, "reset");
    let (status, body) = proxy.http("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("a client's broker connection failed: broker bootstrap.kafka.invalid refused SASL/OAUTHBEARER authentication (error 58): Authentication failed: token expired"),
        "{body}"
    );
    // While the address backs off, a client gets the last error at once, without a dial.
    let dials = connections(&broker.seen());
    let mut client = Client::connect(proxy.bootstrap).await;
    client.send(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(client.ending().await, "reset");
    assert_eq!(
        connections(&broker.seen()),
        dials,
        "no dial during the back-off"
    );
    broker.set(|s| s.refuse = None);
    tokio::time::sleep(gcp_kafka_auth_handler_dial_backoff()).await;
    let mut client = Client::connect(proxy.bootstrap).await;
    client.send(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(client.recv::<ApiVersionsRequest>(3).await.1.error_code, 0);
    let (status, body) = proxy.http("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        r#"{"detail":"bootstrap Metadata round trip succeeded; 1 brokers","status":"ready"}"#
    );
    let (_, metrics) = proxy.http("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "gcp_kafka_auth_proxy_authentications_total{outcome=\"refused\"} 1"),
        "{metrics}"
    );
    proxy.stop().await;
}

/// The first back-off after a failed dial, and a margin.
fn gcp_kafka_auth_handler_dial_backoff() -> Duration {
    Duration::from_millis(700)
}

/// Every malformed input a probe can send, on the bootstrap port and on a broker node's
/// port, against the binary: each gets its documented outcome (the connection closed, a log
/// line that names the problem, the matching `client_errors_total` reason), while a client on
/// another connection keeps being served, and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_input_gets_its_documented_outcome() {
    let google = FakeGoogle::start().await;
    let broker = FakeBroker::start(Script::default()).await;
    let port = broker.addr.port();
    broker.set(|s| s.brokers = vec![(1, host(1), i32::from(port))]);
    let listen = free_port();
    let base = port_base();
    // Repeated causes are logged at WARN once per 10 s and at DEBUG every time.
    let env = SidecarEnv::new(&google).set("RUST_LOG", "info,gcp_kafka_auth_handler::proxy=debug");
    let mut sidecar = Sidecar::spawn(
        env,
        &[
            "proxy",
            "--bootstrap-server",
            &format!("bootstrap.kafka.invalid:{port}"),
            "--upstream-tls=false",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--broker-port-base",
            &base.to_string(),
            "--resolve",
            &format!("bootstrap.kafka.invalid=127.0.0.1,{}=127.0.0.1", host(1)),
            "--http-port",
            "0",
            "--first-request-timeout",
            "2s",
            "--log-format",
            "json",
        ],
    );
    sidecar.wait_ready().await;
    let bootstrap = SocketAddr::new(LOOPBACK, listen);
    let node = SocketAddr::new(LOOPBACK, base + 1);
    // A healthy client that stays connected throughout.
    let mut healthy = Client::connect(bootstrap).await;
    let big = (200 * MIB as u32).to_be_bytes();
    let probes: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "negative size",
            (-5i32).to_be_bytes().to_vec(),
            "framing",
            "a frame of -5 bytes was announced",
        ),
        (
            "size 0",
            0u32.to_be_bytes().to_vec(),
            "framing",
            "a 0-byte frame is too short for a Kafka request header",
        ),
        (
            "size 5",
            framed(&[0, 18, 0, 0, 0]),
            "framing",
            "a 5-byte frame is too short",
        ),
        (
            "size 7",
            framed(&[0, 18, 0, 0, 0, 0, 1]),
            "framing",
            "a 7-byte frame is too short",
        ),
        (
            "over the cap",
            big.to_vec(),
            "framing",
            "more than the 104857600-byte limit",
        ),
        (
            "2^31 - 1",
            i32::MAX.to_be_bytes().to_vec(),
            "framing",
            "a frame of 2147483647 bytes",
        ),
        (
            "unknown key 999",
            framed(&raw_request(999, 0, 1, b"")),
            "api_not_offered",
            "API key 999 v0",
        ),
        (
            "key 10000",
            framed(&raw_request(10_000, 0, 1, b"")),
            "api_not_offered",
            "API key 10000 v0",
        ),
        (
            "absurd version",
            framed(&raw_request(3, 200, 1, b"")),
            "api_not_offered",
            "API key Metadata v200",
        ),
        (
            "garbage after a valid request",
            [
                framed(&raw_request(18, 0, 1, b"")),
                vec![0xff, 0xff, 0xff, 0x00],
            ]
            .concat(),
            "framing",
            "a frame of -256 bytes",
        ),
        (
            "TLS ClientHello",
            vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ],
            "tls_on_plaintext",
            "this listener is plaintext: use security.protocol=PLAINTEXT",
        ),
        (
            "HTTP",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            "http",
            "the client sent an HTTP request (GET / HTTP/1.1)",
        ),
    ];
    let mut expected = std::collections::BTreeMap::<&str, u64>::new();
    for (what, bytes, reason, log) in &probes {
        for target in [bootstrap, node] {
            let mut probe = Client::connect(target).await;
            probe.send_unframed(bytes).await;
            // Closed (EOF or reset) within 5 s; a valid request before the bad bytes may be
            // answered.
            probe.drain_to_close().await;
            *expected.entry(reason).or_default() += 1;
            // Another client is unaffected.
            healthy.send(&ApiVersionsRequest::default(), 3).await;
            assert_eq!(
                healthy.recv::<ApiVersionsRequest>(3).await.1.error_code,
                0,
                "after {what}"
            );
        }
        assert!(
            sidecar.wait_for_log(log, Duration::from_secs(5)),
            "{what}: no log line containing {log:?}:\n{}",
            sidecar.logs()
        );
    }
    // A truncated header, then the client leaves: closed without a log line at WARN.
    let mut truncated = Client::connect(bootstrap).await;
    truncated.send_unframed(&[0, 0, 0, 40, 0, 18]).await;
    truncated.shutdown_write().await;
    assert!(truncated.drain_to_close().await.is_empty());
    let text = reqwest::get(sidecar.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (reason, n) in expected {
        let line = format!("gcp_kafka_auth_proxy_client_errors_total{{reason=\"{reason}\"}} {n}");
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
    assert!(!sidecar.logs().contains("panicked"), "{}", sidecar.logs());
    drop(healthy);
    let status = sidecar.terminate(Duration::from_secs(15)).expect("exits");
    assert_eq!(status.code(), Some(143), "{}", sidecar.logs());
}
