//! The Kafka-protocol proxy in process, against the scripted fake broker of
//! `proxy_support`, over real TCP on loopback. Brokers advertise `*.kafka.invalid` names that
//! only the proxy's `--resolve` map can dial. No test checks for leaked broker addresses
//! itself: `proxy_support::Client`, through which every test reads, checks every frame of
//! every connection for those names and for the fake brokers' ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fake_google::FakeGoogle;
use gcp_kafka_auth_handler::proxy::{Proxy, ProxyBuilder, SaslMechanism, fuzz_hooks};
use gcp_kafka_auth_handler::{Env, KafkaTokenProvider};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message as _, StrBytes};
use secrecy::ExposeSecret as _;
use tokio::sync::watch;

use crate::proxy_support::{Client, FakeBroker, RAW_ECHO, RAW_SIZED, Script, Seen};

pub(crate) const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub(crate) fn provider(fake: &FakeGoogle) -> KafkaTokenProvider {
    KafkaTokenProvider::builder()
        .with_env(Env::from_pairs([
            ("HOME", "/nonexistent".to_owned()),
            ("GCE_METADATA_HOST", fake.metadata_host()),
        ]))
        .build()
        .unwrap()
}

/// A port base below Linux's ephemeral range, different for every proxy in this process.
pub(crate) fn port_base() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed);
    20_000 + ((std::process::id() as u16 % 200) * 40 + slot * 20) % 10_000
}

pub(crate) fn host(node: i32) -> String {
    format!("broker-{node}.kafka.invalid")
}

pub(crate) struct Running {
    pub(crate) bootstrap: SocketAddr,
    base: u16,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    router: axum::Router,
    provider: KafkaTokenProvider,
    _google: FakeGoogle,
}

impl Running {
    pub(crate) fn node(&self, id: i32) -> SocketAddr {
        SocketAddr::new(LOOPBACK, self.base + id as u16)
    }

    pub(crate) async fn http(&self, path: &str) -> (u16, String) {
        use tower::ServiceExt as _;
        let response = self
            .router
            .clone()
            .oneshot(
                http::Request::get(path)
                    .header("host", "localhost")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Waits (bounded) until `/readyz` answers `status`.
    pub(crate) async fn wait_readyz(&self, status: u16) -> String {
        for _ in 0..200 {
            let (got, body) = self.http("/readyz").await;
            if got == status {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "/readyz never answered {status}: {:?}",
            self.http("/readyz").await
        );
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the proxy drains and stops")
            .unwrap();
    }
}

/// A fake broker whose nodes `ids` all live at its one address, under `.kafka.invalid`
/// names, and a proxy in front of it.
pub(crate) async fn start(script: Script, ids: &[i32]) -> (FakeBroker, Running) {
    let broker = FakeBroker::start(script).await;
    let port = i32::from(broker.addr.port());
    broker.set(|s| s.brokers = ids.iter().map(|id| (*id, host(*id), port)).collect());
    let running = start_proxy(&broker, ids, |b| b.with_upstream_tls(false)).await;
    (broker, running)
}

pub(crate) async fn start_proxy(
    broker: &FakeBroker,
    ids: &[i32],
    configure: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
) -> Running {
    let google = FakeGoogle::start().await;
    let provider = provider(&google);
    let base = port_base();
    let mut builder = Proxy::builder(provider.clone())
        .with_bootstrap_servers([format!("bootstrap.kafka.invalid:{}", broker.addr.port())])
        .with_broker_port_base(base)
        .with_resolve("bootstrap.kafka.invalid", LOOPBACK)
        .with_drain_timeout(Duration::from_secs(5));
    for id in ids.iter().copied().chain(10..12) {
        builder = builder.with_resolve(host(id), LOOPBACK);
    }
    let proxy = configure(builder).build().unwrap();
    let router = proxy.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bootstrap = listener.local_addr().unwrap();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        proxy
            .run(listener, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
            .unwrap();
    });
    Running {
        bootstrap,
        base,
        stop,
        task,
        router,
        provider,
        _google: google,
    }
}

fn metadata_brokers(response: &MetadataResponse) -> Vec<(i32, String, i32, Option<String>)> {
    response
        .brokers
        .iter()
        .map(|b| {
            (
                b.node_id.0,
                b.host.to_string(),
                b.port,
                b.rack.as_ref().map(|r| r.to_string()),
            )
        })
        .collect()
}

/// `Proxy::router` is the `proxy` command's health port (`HealthPort`): the Kubernetes probe
/// paths answer here exactly as on `--http-port`, and `/metrics` is one exposition.
#[tokio::test]
async fn the_library_router_is_the_commands_health_port() {
    let (_broker, proxy) = start(Script::default(), &[1]).await;
    let ready = proxy.wait_readyz(200).await;
    assert_eq!(
        ready,
        r#"{"detail":"bootstrap Metadata round trip succeeded; 1 brokers","status":"ready"}"#
    );
    assert_eq!(proxy.http("/readiness").await, (200, ready));
    assert_eq!(
        proxy.http("/startup").await,
        (200, r#"{"status":"started"}"#.to_owned())
    );
    for path in ["/liveness", "/healthz"] {
        assert_eq!(
            proxy.http(path).await,
            (200, r#"{"status":"ok"}"#.to_owned()),
            "{path}"
        );
    }
    let (status, metrics) = proxy.http("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metrics.matches("# EOF\n").count(), 1, "{metrics}");
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    assert!(
        metrics.contains(
            "\ngcp_kafka_auth_token_ready 1\n# HELP gcp_kafka_auth_token_expires_in_seconds "
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("\n# HELP gcp_kafka_auth_proxy_connections Open client connections, by listener (bootstrap or broker node id).\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn metadata_is_rewritten_and_every_node_listener_is_bound_first() {
    let (broker, proxy) = start(Script::default(), &[1, 7]).await;
    let body = proxy.wait_readyz(200).await;
    assert!(body.contains("2 brokers"), "{body}");

    let mut client = Client::connect(proxy.bootstrap).await;
    let id = client.send(&ApiVersionsRequest::default(), 3).await;
    let (got, versions) = client.recv::<ApiVersionsRequest>(3).await;
    assert_eq!(got, id);
    let offered: Vec<(i16, i16, i16)> = versions
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    // Delegation tokens (38) and the proprietary key are gone; Produce and Fetch stop below
    // KIP-951; no minimum moved. SASL (17, 36) stays, at the versions the proxy answers
    // itself (as a broker offers it on a PLAINTEXT listener), so a client that kept its SASL
    // settings sends SaslHandshake and is told the fix.
    assert_eq!(
        offered,
        [
            (0, 3, 9),
            (1, 4, 15),
            (3, 0, 13),
            (10, 0, 6),
            (17, 0, 1),
            (18, 0, 4),
            (19, 2, 7),
            (36, 0, 2),
            (32, 1, 4),
            (60, 0, 2)
        ]
    );

    let id = client
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await;
    let (got, metadata) = client.recv::<MetadataRequest>(12).await;
    assert_eq!(got, id);
    let base = i32::from(proxy.base);
    assert_eq!(
        metadata_brokers(&metadata),
        [
            (1, "127.0.0.1".into(), base + 1, Some("rack-1".into())),
            (7, "127.0.0.1".into(), base + 7, Some("rack-7".into()))
        ]
    );
    assert_eq!(metadata.controller_id.0, 1);

    // The advertised port answers, through its own authenticated broker connection.
    let mut to_node = Client::connect(proxy.node(7)).await;
    let id = to_node
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 4)
        .await;
    let (got, again) = to_node.recv::<MetadataRequest>(4).await;
    assert_eq!(got, id);
    assert_eq!(metadata_brokers(&again)[1].2, base + 7);

    // The broker saw only authenticated connections, with the provider's token.
    let token = proxy.provider.token().await.unwrap();
    let expected = format!("n,,\x01auth=Bearer {}\x01\x01", token.expose()).into_bytes();
    let auths: Vec<Vec<u8>> = broker
        .seen()
        .into_iter()
        .filter_map(|s| match s {
            Seen::Authenticated(_, bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(
        auths.len(),
        3,
        "the probe, the bootstrap client and the node-7 client"
    );
    assert!(auths.iter().all(|a| *a == expected));

    let (_, metrics) = proxy.http("/metrics").await;
    assert!(
        metrics.contains("gcp_kafka_auth_proxy_responses_rewritten_total{api=\"metadata\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gcp_kafka_auth_proxy_requests_total{api_key=\"18\"} 1"),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"));
    proxy.stop().await;
}

#[tokio::test]
async fn new_node_ids_get_listeners_and_a_moved_node_is_retargeted() {
    let (broker, proxy) = start(Script::default(), &[1]).await;
    proxy.wait_readyz(200).await;
    let other = FakeBroker::start(Script::default()).await;
    let other_port = i32::from(other.addr.port());
    let port = i32::from(broker.addr.port());
    // Node 11 appears; node 1 moves to the other broker.
    broker.set(|s| s.brokers = vec![(1, host(10), other_port), (11, host(11), port)]);
    other.set(|s| s.brokers = vec![(1, host(10), other_port), (11, host(11), port)]);

    let mut client = Client::connect(proxy.bootstrap).await;
    client
        .send(&MetadataRequest::default().with_topics(None), 9)
        .await;
    let (_, metadata) = client.recv::<MetadataRequest>(9).await;
    let base = i32::from(proxy.base);
    assert_eq!(
        metadata_brokers(&metadata)
            .into_iter()
            .map(|b| (b.0, b.2))
            .collect::<Vec<_>>(),
        [(1, base + 1), (11, base + 11)]
    );
    // Node 11's listener exists as soon as the client can know its port.
    let mut eleven = Client::connect(proxy.node(11)).await;
    eleven.send(&ApiVersionsRequest::default(), 0).await;
    let (_, versions) = eleven.recv::<ApiVersionsRequest>(0).await;
    assert_eq!(versions.error_code, 0);
    // Node 1's listener now dials the other broker, which nothing had contacted before.
    assert!(other.seen().is_empty());
    let mut one = Client::connect(proxy.node(1)).await;
    let id = one.send(&ApiVersionsRequest::default(), 0).await;
    assert_eq!(one.recv::<ApiVersionsRequest>(0).await.0, id);
    let requests: Vec<(u64, i16, i16, i32)> = other
        .seen()
        .iter()
        .filter_map(|s| match s {
            Seen::Request(conn, key, version, correlation) => {
                Some((*conn, *key, *version, *correlation))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        requests,
        [(1, 18, 0, 0), (1, 17, 1, 1), (1, 36, 2, 2), (1, 18, 0, 3)]
    );
    proxy.stop().await;
}

#[tokio::test]
async fn find_coordinator_describe_cluster_and_fetch_node_endpoints_are_rewritten() {
    let (_broker, proxy) = start(
        Script {
            coordinator: 2,
            ..Script::default()
        },
        &[1, 2],
    )
    .await;
    let mut client = Client::connect(proxy.bootstrap).await;
    let base = i32::from(proxy.base);

    client
        .send(
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
            3,
        )
        .await;
    let (_, single) = client.recv::<FindCoordinatorRequest>(3).await;
    assert_eq!(
        (single.node_id.0, single.host.as_str(), single.port),
        (2, "127.0.0.1", base + 2)
    );

    client
        .send(
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![
                StrBytes::from_static_str("a"),
                StrBytes::from_static_str("b"),
            ]),
            6,
        )
        .await;
    let (_, batch) = client.recv::<FindCoordinatorRequest>(6).await;
    let coords: Vec<(String, i32, String, i32)> = batch
        .coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.node_id.0, c.host.to_string(), c.port))
        .collect();
    assert_eq!(
        coords,
        [
            ("a".into(), 2, "127.0.0.1".into(), base + 2),
            ("b".into(), 2, "127.0.0.1".into(), base + 2)
        ]
    );

    client.send(&DescribeClusterRequest::default(), 1).await;
    let (_, cluster) = client.recv::<DescribeClusterRequest>(1).await;
    let brokers: Vec<(i32, String, i32)> = cluster
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, b.host.to_string(), b.port))
        .collect();
    assert_eq!(
        brokers,
        [
            (1, "127.0.0.1".into(), base + 1),
            (2, "127.0.0.1".into(), base + 2)
        ]
    );

    // Fetch v16 is not offered, but a client that sends it still gets rewritten hints.
    client.send(&FetchRequest::default(), 16).await;
    let (_, fetch) = client.recv::<FetchRequest>(16).await;
    let hints: Vec<(i32, String, i32)> = fetch
        .node_endpoints
        .iter()
        .map(|n| (n.node_id.0, n.host.to_string(), n.port))
        .collect();
    let expected = [
        (1, "127.0.0.1".to_owned(), base + 1),
        (2, "127.0.0.1".to_owned(), base + 2),
    ];
    assert_eq!(hints, expected);

    // Nor is Produce v10+ (KIP-951): a client that forces it gets rewritten hints too, at
    // every version the crate decodes.
    for version in fuzz_hooks::PRODUCE_NODE_ENDPOINTS..=ProduceResponse::VERSIONS.max {
        client
            .send(&ProduceRequest::default().with_acks(-1), version)
            .await;
        let (_, produce) = client.recv::<ProduceRequest>(version).await;
        let hints: Vec<(i32, String, i32)> = produce
            .node_endpoints
            .iter()
            .map(|n| (n.node_id.0, n.host.to_string(), n.port))
            .collect();
        assert_eq!(hints, expected, "Produce v{version}");
    }

    // KIP-932 share groups: ShareFetch and ShareAcknowledge answers carry node endpoints.
    client.send(&ShareFetchRequest::default(), 1).await;
    let (_, share_fetch) = client.recv::<ShareFetchRequest>(1).await;
    let hints: Vec<(i32, String, i32)> = share_fetch
        .node_endpoints
        .iter()
        .map(|n| (n.node_id.0, n.host.to_string(), n.port))
        .collect();
    assert_eq!(hints, expected, "ShareFetch v1");
    client.send(&ShareAcknowledgeRequest::default(), 1).await;
    let (_, share_ack) = client.recv::<ShareAcknowledgeRequest>(1).await;
    let hints: Vec<(i32, String, i32)> = share_ack
        .node_endpoints
        .iter()
        .map(|n| (n.node_id.0, n.host.to_string(), n.port))
        .collect();
    assert_eq!(hints, expected, "ShareAcknowledge v1");
    proxy.stop().await;
}

/// (node id, host, port) of every address a response carries, each blanked in place (host
/// "", port 0) so that what is left can be compared whole.
type Addresses = Vec<(i32, String, i32)>;

fn take(node_id: i32, host: &mut StrBytes, port: &mut i32) -> (i32, String, i32) {
    let taken = (node_id, host.to_string(), *port);
    *host = StrBytes::default();
    *port = 0;
    taken
}

fn blank_addresses(key: ApiKey, version: i16, body: &mut Bytes) -> (Addresses, String) {
    use kafka_protocol::protocol::Decodable;
    macro_rules! blank {
        ($ty:ty, |$m:ident, $out:ident| $body:block) => {{
            let mut $m = <$ty>::decode(body, version)
                .unwrap_or_else(|e| panic!("{key:?} v{version} does not decode: {e:#}"));
            #[allow(unused_mut)]
            let mut $out = Vec::new();
            $body($out, format!("{:#?}", $m))
        }};
    }
    let decoded = match key {
        ApiKey::ApiVersions => blank!(ApiVersionsResponse, |m, out| {
            // No addresses; the offered keys are compared on their own.
            m.api_keys.clear();
        }),
        ApiKey::Metadata => blank!(MetadataResponse, |m, out| {
            for b in &mut m.brokers {
                out.push(take(b.node_id.0, &mut b.host, &mut b.port));
            }
        }),
        ApiKey::FindCoordinator => blank!(FindCoordinatorResponse, |m, out| {
            if version < 4 {
                out.push(take(m.node_id.0, &mut m.host, &mut m.port));
            }
            for c in &mut m.coordinators {
                out.push(take(c.node_id.0, &mut c.host, &mut c.port));
            }
        }),
        ApiKey::DescribeCluster => blank!(DescribeClusterResponse, |m, out| {
            for b in &mut m.brokers {
                out.push(take(b.broker_id.0, &mut b.host, &mut b.port));
            }
        }),
        ApiKey::Produce => blank!(ProduceResponse, |m, out| {
            for n in &mut m.node_endpoints {
                out.push(take(n.node_id.0, &mut n.host, &mut n.port));
            }
        }),
        ApiKey::Fetch => blank!(FetchResponse, |m, out| {
            for n in &mut m.node_endpoints {
                out.push(take(n.node_id.0, &mut n.host, &mut n.port));
            }
        }),
        ApiKey::ShareFetch => blank!(ShareFetchResponse, |m, out| {
            for n in &mut m.node_endpoints {
                out.push(take(n.node_id.0, &mut n.host, &mut n.port));
            }
        }),
        ApiKey::ShareAcknowledge => blank!(ShareAcknowledgeResponse, |m, out| {
            for n in &mut m.node_endpoints {
                out.push(take(n.node_id.0, &mut n.host, &mut n.port));
            }
        }),
        other => panic!("{other:?} is rewritten but this test has no decoder for it: add one"),
    };
    assert!(body.is_empty(), "{key:?} v{version}: trailing bytes");
    decoded
}

/// Where two pretty-printed responses first differ, with a few lines of context.
fn first_difference(original: &str, copy: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (original.lines().collect(), copy.lines().collect());
    let at = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let from = at.saturating_sub(4);
    let show = |lines: &[&str]| lines[from.min(lines.len())..(at + 4).min(lines.len())].join("\n");
    format!(
        "the broker's answer, from line {from}:\n{}\nthe client's copy:\n{}",
        show(&a),
        show(&b)
    )
}

/// Sends a request `key` v`version` with defaults for every field.
async fn send_default(client: &mut Client, key: ApiKey, version: i16) -> i32 {
    match key {
        ApiKey::ApiVersions => client.send(&ApiVersionsRequest::default(), version).await,
        ApiKey::Metadata => {
            client
                .send(
                    &MetadataRequest::default().with_topics(Some(vec![])),
                    version,
                )
                .await
        }
        ApiKey::FindCoordinator => {
            client
                .send(
                    &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(
                        if version < 4 { "group-a" } else { "" },
                    )),
                    version,
                )
                .await
        }
        ApiKey::DescribeCluster => {
            client
                .send(&DescribeClusterRequest::default(), version)
                .await
        }
        ApiKey::Produce => {
            client
                .send(&ProduceRequest::default().with_acks(-1), version)
                .await
        }
        ApiKey::Fetch => client.send(&FetchRequest::default(), version).await,
        ApiKey::ShareFetch => client.send(&ShareFetchRequest::default(), version).await,
        ApiKey::ShareAcknowledge => {
            client
                .send(&ShareAcknowledgeRequest::default(), version)
                .await
        }
        other => panic!("{other:?} is rewritten but this test cannot send it: add it"),
    }
}

/// Every key and version the proxy rewrites, the reviewed table (`versions::REWRITTEN`, read through `fuzz_hooks`)
/// and the KIP-951 versions of Produce and Fetch it rewrites though it does not offer them: the
/// fake broker's answer (every field non-default, `proxy_rich`) and the client's copy decode
/// to the same response but for each broker's host and port, and those are the proxy's.
#[tokio::test]
async fn rewritten_responses_keep_every_field_but_host_and_port() {
    use kafka_protocol::protocol::{Decodable, Message};
    let script = Script {
        rich: true,
        ..Script::default()
    };
    let ids = [1, 2, 3];
    let (broker, proxy) = start(script, &ids).await;
    proxy.wait_readyz(200).await;
    let broker_port = i32::from(broker.addr.port());
    let base = i32::from(proxy.base);

    // DescribeConfigs carries no node addresses but address-valued configurations, which
    // the proxy hides rather than rewrites: `rewrite::tests` compares its every field but
    // those, and `proxy_abuse::describe_configs_hides_broker_addresses` drives it end to end.
    let mut cases: Vec<(ApiKey, i16)> = fuzz_hooks::rewritten_ranges()
        .into_iter()
        .map(|(key, min, max)| (ApiKey::try_from(key).unwrap(), min, max))
        .filter(|(key, _, _)| *key != ApiKey::DescribeConfigs)
        .flat_map(|(key, min, max)| (min..=max).map(move |v| (key, v)))
        .collect();
    cases.extend(
        (fuzz_hooks::PRODUCE_NODE_ENDPOINTS..=ProduceResponse::VERSIONS.max)
            .map(|v| (ApiKey::Produce, v)),
    );
    cases.extend(
        (fuzz_hooks::FETCH_NODE_ENDPOINTS..=FetchResponse::VERSIONS.max)
            .map(|v| (ApiKey::Fetch, v)),
    );
    // Every case is one the proxy rewrites, and there are as many as the reviewed ranges say.
    for (key, version) in &cases {
        assert!(
            fuzz_hooks::is_rewritten(*key as i16, *version),
            "{key:?} v{version}"
        );
    }
    // ApiVersions 0-4, Metadata 0-13, FindCoordinator 0-6, DescribeCluster 0-2, ShareFetch 1,
    // ShareAcknowledge 1, Produce 10-13, Fetch 16-18: a change to the tables shows up here.
    assert_eq!(cases.len(), 5 + 14 + 7 + 3 + 1 + 1 + 4 + 3);

    let mut client = Client::connect(proxy.bootstrap).await;
    for (key, version) in cases {
        let what = format!("{key:?} v{version}");
        let id = send_default(&mut client, key, version).await;
        let copy = client.recv_raw().await.expect(&what);
        let original = broker.last_client_answer(key, version).frame;

        // Headers: the client's correlation id, and the broker's tagged fields untouched.
        let header_version = key.response_header_version(version);
        let (mut copy_body, mut original_body) = (copy.clone(), original.clone());
        let copy_header = ResponseHeader::decode(&mut copy_body, header_version).unwrap();
        let original_header = ResponseHeader::decode(&mut original_body, header_version).unwrap();
        assert_eq!(copy_header.correlation_id, id, "{what}");
        assert_eq!(
            copy_header.unknown_tagged_fields, original_header.unknown_tagged_fields,
            "{what}"
        );
        if header_version >= 1 {
            assert!(!original_header.unknown_tagged_fields.is_empty(), "{what}");
        }

        let (original_addresses, original_rest) = blank_addresses(key, version, &mut original_body);
        let (copy_addresses, copy_rest) = blank_addresses(key, version, &mut copy_body);
        assert!(
            copy_rest == original_rest,
            "{what}: more than host and port changed\n{}",
            first_difference(&original_rest, &copy_rest)
        );

        // The fake's answer named real brokers, every node by its own name and the broker's
        // port (else this test would prove nothing) ...
        let named: Vec<&(i32, String, i32)> =
            original_addresses.iter().filter(|a| a.0 >= 0).collect();
        assert_eq!(named.is_empty(), key == ApiKey::ApiVersions, "{what}");
        for (id, host, port) in named {
            assert_eq!(
                (host.as_str(), *port),
                (format!("broker-{id}.kafka.invalid").as_str(), broker_port),
                "{what}"
            );
        }
        // ... and the client got the proxy's for each, in order; an entry without a node
        // (FindCoordinator's "not available") is passed on as it came.
        let expected: Addresses = original_addresses
            .iter()
            .map(|(id, host, port)| {
                if *id >= 0 {
                    (*id, "127.0.0.1".to_owned(), base + id)
                } else {
                    (*id, host.clone(), *port)
                }
            })
            .collect();
        assert_eq!(copy_addresses, expected, "{what}");

        if key == ApiKey::ApiVersions {
            // The offered keys: the broker's entries (tagged fields and all) minus delegation
            // tokens and the proprietary key, Produce and Fetch capped below KIP-951, SASL at
            // the versions the proxy answers itself.
            let (_, original) =
                crate::proxy_support::decode::<ApiVersionsRequest>(original, version);
            let (_, copy) = crate::proxy_support::decode::<ApiVersionsRequest>(copy, version);
            let expected: Vec<_> = original
                .api_keys
                .iter()
                .filter(|k| ![38, 10_000].contains(&k.api_key))
                .map(|k| match k.api_key {
                    0 => k.clone().with_max_version(9),
                    1 => k.clone().with_max_version(15),
                    17 => k.clone().with_min_version(0).with_max_version(1),
                    36 => k.clone().with_min_version(0).with_max_version(2),
                    _ => k.clone(),
                })
                .collect();
            assert_eq!(copy.api_keys, expected, "{what}");
            assert_eq!(copy.api_keys.len(), 10, "{what}");
        }
    }
    proxy.stop().await;
}

/// The leak check in `proxy_support::Client` is live: a client that reads a broker's own
/// answer (what a proxy that forwarded Metadata untouched would deliver) fails, whether the
/// answer carries the broker's name or only its port; so does the port as text.
#[tokio::test]
async fn the_leak_check_fails_a_client_that_sees_a_broker_name_or_port() {
    fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }
    for (host, expected) in [
        (host(1), "a broker address reached the client"),
        (
            "127.0.0.1".to_owned(),
            "port PORT (as an int32) reached the client",
        ),
    ] {
        let broker = FakeBroker::start(Script::default()).await;
        let port = broker.addr.port();
        broker.set(|s| s.brokers = vec![(1, host.clone(), i32::from(port))]);
        let leaked = tokio::spawn(async move {
            // Straight to the broker: authenticate as the proxy would, then read Metadata.
            let mut client = Client::connect(broker.addr).await;
            client
                .send(
                    &SaslHandshakeRequest::default()
                        .with_mechanism(StrBytes::from_static_str("PLAIN")),
                    1,
                )
                .await;
            client.recv::<SaslHandshakeRequest>(1).await;
            client
                .send(
                    &SaslAuthenticateRequest::default()
                        .with_auth_bytes(Bytes::from_static(b"\0u\0p")),
                    2,
                )
                .await;
            client.recv::<SaslAuthenticateRequest>(2).await;
            client
                .send(&MetadataRequest::default().with_topics(None), 12)
                .await;
            client.recv::<MetadataRequest>(12).await;
        })
        .await
        .expect_err("the check let a broker address through");
        let message = panic_message(leaked.into_panic());
        let expected = expected.replace("PORT", &port.to_string());
        assert!(message.contains(&expected), "{expected}: {message}");
    }

    // The port as text (a listener in a config value), but not as part of a longer number.
    let broker = FakeBroker::start(Script::default()).await;
    let port = broker.addr.port();
    let text = format!("listeners=PLAINTEXT://127.0.0.1:{port}");
    let leaked = std::panic::catch_unwind(|| crate::proxy_support::assert_no_leak(text.as_bytes()))
        .expect_err("the check let a port in text through");
    assert!(
        panic_message(leaked).contains(&format!("port {port} (as text) reached the client")),
        "{text}"
    );
    crate::proxy_support::assert_no_leak(format!("offset 1{port}0").as_bytes());
}

/// Every test that reads from a proxy does it through `proxy_support::Client` (which checks
/// for leaks); a raw socket in a test that starts a proxy must say why it needs one.
#[test]
fn raw_sockets_to_a_proxy_are_justified() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut unjustified = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "proxy_support.rs" || !text.contains("proxy_support::") {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            // Spelt in pieces, so that this line does not match itself.
            let raw = [
                concat!("TcpStream", "::connect"),
                concat!("TcpStream", "::from_std"),
                concat!("into_split", "()"),
            ]
            .iter()
            .any(|p| line.contains(p));
            let justified = lines[i.saturating_sub(3)..=i]
                .iter()
                .any(|l| l.contains("not a client of the proxy:"));
            if raw && !justified {
                unjustified.push(format!("{name}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        unjustified.is_empty(),
        "read from a proxy with proxy_support::Client, or justify the raw socket with a comment `not a client of the proxy: why`: {unjustified:#?}"
    );
}

#[tokio::test]
async fn produce_acks_zero_gets_no_response_and_opaque_keys_pass_in_order() {
    let (_broker, proxy) = start(Script::default(), &[1]).await;
    let mut client = Client::connect(proxy.bootstrap).await;
    // acks=0 at v9 (flexible, compact transactional_id) and v3: no response expected.
    client
        .send(&ProduceRequest::default().with_acks(0), 9)
        .await;
    client
        .send(&ProduceRequest::default().with_acks(0), 3)
        .await;
    let acked = client
        .send(&ProduceRequest::default().with_acks(-1), 9)
        .await;
    // A key forwarded opaquely: the fake's raw answer comes back byte for byte.
    let mut raw = RAW_ECHO.to_be_bytes().to_vec();
    raw.extend_from_slice(&[0, 0]);
    raw.extend_from_slice(&555i32.to_be_bytes());
    raw.extend_from_slice(&[0xff, 0xff]);
    client.send_raw(&raw).await;
    let meta = client
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 1)
        .await;

    let (got, _) = client.recv::<ProduceRequest>(9).await;
    assert_eq!(got, acked);
    let frame = client.recv_raw().await.unwrap();
    assert_eq!(
        &frame[..],
        &[&555i32.to_be_bytes()[..], b"proprietary"].concat()[..]
    );
    let (got, _) = client.recv::<MetadataRequest>(1).await;
    assert_eq!(got, meta);
    proxy.stop().await;
}

#[tokio::test]
async fn large_opaque_responses_are_forwarded_whole_and_in_order_across_chunks() {
    let (_broker, proxy) = start(Script::default(), &[1]).await;
    let mut client = Client::connect(proxy.bootstrap).await;
    // A response of several of the proxy's 64 KiB chunks plus a ragged tail, and right behind
    // it on the same broker connection a small one, so the second frame's first bytes arrive
    // in the buffer that holds the first one's last.
    let size: u32 = 3 * 1024 * 1024 + 7;
    let mut large = RAW_SIZED.to_be_bytes().to_vec();
    large.extend_from_slice(&[0, 0]);
    large.extend_from_slice(&700i32.to_be_bytes());
    large.extend_from_slice(&[0xff, 0xff]);
    large.extend_from_slice(&size.to_be_bytes());
    client.send_raw(&large).await;
    let mut small = RAW_ECHO.to_be_bytes().to_vec();
    small.extend_from_slice(&[0, 0]);
    small.extend_from_slice(&701i32.to_be_bytes());
    small.extend_from_slice(&[0xff, 0xff]);
    client.send_raw(&small).await;

    let frame = client.recv_raw().await.unwrap();
    assert_eq!(frame.len(), 4 + size as usize);
    assert_eq!(&frame[..4], &700i32.to_be_bytes());
    let want: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    assert!(
        frame[4..] == want[..],
        "the large response's body changed on the way"
    );
    let frame = client.recv_raw().await.unwrap();
    assert_eq!(
        &frame[..],
        &[&701i32.to_be_bytes()[..], b"proprietary"].concat()[..]
    );
    proxy.stop().await;
}

#[tokio::test]
async fn api_versions_above_what_the_proxy_decodes_get_the_kip_511_answer_at_v0() {
    let mut script = Script::default();
    // This broker knows ApiVersions up to v3 only.
    script.api_versions.retain(|k| k.0 != 18);
    script.api_versions.push((18, 0, 3));
    let (_broker, proxy) = start(script, &[1]).await;
    let mut client = Client::connect(proxy.bootstrap).await;

    // v5: beyond the proxy's decoder, answered by the proxy itself.
    let id = client.send(&ApiVersionsRequest::default(), 4).await;
    // v4: the broker answers UNSUPPORTED_VERSION at v0; the proxy re-encodes it at v0.
    let frame = client.recv_raw().await.unwrap();
    let mut expected = id.to_be_bytes().to_vec();
    expected.extend_from_slice(&[0, 35, 0, 0, 0, 1, 0, 18, 0, 0, 0, 3]);
    assert_eq!(&frame[..], &expected[..]);

    let mut header = vec![0, 18, 0, 5];
    header.extend_from_slice(&77i32.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0]); // client id "", no tagged fields
    client.send_raw(&header).await;
    let frame = client.recv_raw().await.unwrap();
    let mut expected = 77i32.to_be_bytes().to_vec();
    expected.extend_from_slice(&[0, 35, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4]);
    assert_eq!(&frame[..], &expected[..]);
    proxy.stop().await;
}

#[tokio::test]
async fn reauthenticates_before_the_session_expires_without_dropping_or_reordering() {
    let script = Script {
        session_lifetime_ms: 600,
        ..Script::default()
    };
    let (broker, proxy) = start(script, &[1]).await;
    // The probe's connection is the broker's first; the client's is the second.
    proxy.wait_readyz(200).await;
    let mut client = Client::connect(proxy.bootstrap).await;
    let mut sent = Vec::new();
    let mut answered = Vec::new();
    // Keep requests in flight (pipelined, 3 at a time) across at least three sessions.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for _ in 0..3 {
            sent.push(
                client
                    .send(&MetadataRequest::default().with_topics(Some(vec![])), 4)
                    .await,
            );
        }
        for _ in 0..3 {
            let Some(frame) = client.recv_raw().await else {
                let seen: Vec<String> = broker
                    .seen()
                    .iter()
                    .map(|s| match s {
                        Seen::Authenticated(c, _) => format!("Auth({c})"),
                        other => format!("{other:?}"),
                    })
                    .collect();
                panic!(
                    "closed after {} answers: {:?}",
                    answered.len(),
                    &seen[seen.len().saturating_sub(20)..]
                );
            };
            answered.push(crate::proxy_support::decode::<MetadataRequest>(frame, 4).0);
        }
        let bootstrap_conn_auths = broker
            .seen()
            .iter()
            .filter(|s| matches!(s, Seen::Authenticated(c, _) if *c == 2))
            .count();
        if bootstrap_conn_auths >= 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no re-authentication: {:?}",
            broker.seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answered, sent, "every response, in order");
    assert!(
        !broker.seen().iter().any(|s| matches!(s, Seen::Expired(_))),
        "a session expired: {:?}",
        broker.seen()
    );
    // The re-authentications used the proxy's own correlation ids, never a client's.
    let (_, metrics) = proxy.http("/metrics").await;
    let reauths: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("gcp_kafka_auth_proxy_reauthentications_total{outcome=\"ok\"} ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(reauths >= 3, "{metrics}");
    assert!(metrics.contains("gcp_kafka_auth_proxy_reauthentications_total{outcome=\"failed\"} 0"));
    proxy.stop().await;
}

#[tokio::test]
async fn a_sasl_refusal_closes_the_client_and_is_named_in_readyz() {
    let script = Script {
        refuse: Some(
            "Authentication failed: the principal has no roles/managedkafka.client".into(),
        ),
        ..Script::default()
    };
    let (_broker, proxy) = start(script, &[1]).await;
    let body = proxy.wait_readyz(503).await;
    // Wait for the probe's verdict rather than the first token.
    let body = if body.contains("refused") {
        body
    } else {
        let mut body = body;
        for _ in 0..200 {
            body = proxy.http("/readyz").await.1;
            if body.contains("refused") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        body
    };
    assert!(
        body.contains("refused SASL/OAUTHBEARER authentication (error 58): Authentication failed: the principal has no roles/managedkafka.client; the broker's error challenge: {\\\"status\\\":\\\"invalid_token\\\"}"),
        "{body}"
    );
    let mut client = Client::connect(proxy.bootstrap).await;
    client.send(&ApiVersionsRequest::default(), 0).await;
    assert!(client.closed().await);
    proxy.stop().await;
}

#[tokio::test]
async fn plain_sends_the_principal_and_the_raw_access_token() {
    let broker = FakeBroker::start(Script::default()).await;
    let port = i32::from(broker.addr.port());
    broker.set(|s| s.brokers = vec![(1, host(1), port)]);
    let proxy = start_proxy(&broker, &[1], |b| {
        b.with_upstream_tls(false).with_sasl(SaslMechanism::Plain)
    })
    .await;
    proxy.wait_readyz(200).await;
    let token = proxy.provider.token().await.unwrap();
    let expected = format!(
        "\0{}\0{}",
        token.principal().as_str(),
        token.access_token().expose_secret()
    );
    assert!(
        broker
            .seen()
            .contains(&Seen::Authenticated(1, expected.into_bytes())),
        "{:?}",
        broker.seen()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn clients_speaking_tls_or_sasl_to_the_proxy_are_refused() {
    let (broker, proxy) = start(Script::default(), &[1]).await;
    // A TLS ClientHello on the plaintext port: closed without a byte.
    let mut tls = Client::connect(proxy.bootstrap).await;
    tls.send_unframed(&[
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ])
    .await;
    assert!(tls.closed().await);

    // SaslHandshake: UNSUPPORTED_SASL_MECHANISM, the fix as the "mechanisms" (clients print
    // the broker's mechanisms in their error; three parts, as librdkafka prints at most 32
    // bytes per mechanism), then closed.
    let mut client = Client::connect(proxy.bootstrap).await;
    let id = client
        .send(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
            1,
        )
        .await;
    let (got, handshake) = client.recv::<SaslHandshakeRequest>(1).await;
    assert_eq!(
        (got, handshake.error_code, handshake.mechanisms),
        (
            id,
            33,
            vec![
                StrBytes::from_static_str("the proxy authenticates for you"),
                StrBytes::from_static_str("remove the SASL settings"),
                StrBytes::from_static_str("use security.protocol=PLAINTEXT"),
            ]
        )
    );
    assert!(client.closed().await);

    // SaslAuthenticate with credentials: the fix in the error message; never forwarded.
    let mut client = Client::connect(proxy.bootstrap).await;
    let id = client
        .send(
            &SaslAuthenticateRequest::default()
                .with_auth_bytes(bytes::Bytes::from_static(b"\0user\0hunter2")),
            2,
        )
        .await;
    let (got, auth) = client.recv::<SaslAuthenticateRequest>(2).await;
    assert_eq!(got, id);
    assert_eq!(auth.error_code, 58);
    assert_eq!(
        auth.error_message.as_deref(),
        Some(
            "the proxy authenticates for you: remove the SASL settings, use security.protocol=PLAINTEXT"
        )
    );
    assert!(client.closed().await);
    assert!(
        !broker.seen().iter().any(
            |s| matches!(s, Seen::Authenticated(_, b) if b.windows(7).any(|w| w == b"hunter2"))
        ),
        "a client's credentials reached the broker"
    );
    let (_, metrics) = proxy.http("/metrics").await;
    assert!(
        metrics.contains("gcp_kafka_auth_proxy_client_errors_total{reason=\"tls_on_plaintext\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gcp_kafka_auth_proxy_client_errors_total{reason=\"sasl\"} 2"),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn upstream_tls_is_verified_against_the_ca_and_the_broker_name() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fake Kafka test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![host(1), "bootstrap.kafka.invalid".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let broker = FakeBroker::start_with(Script::default(), Some(acceptor)).await;
    let port = i32::from(broker.addr.port());
    broker.set(|s| s.brokers = vec![(1, host(1), port)]);

    let ca_pem = ca_cert.pem();
    let proxy = start_proxy(&broker, &[1], |b| b.with_upstream_ca_pem(ca_pem.clone())).await;
    proxy.wait_readyz(200).await;
    let mut client = Client::connect(proxy.node(1)).await;
    client
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 4)
        .await;
    let (_, metadata) = client.recv::<MetadataRequest>(4).await;
    assert_eq!(metadata.brokers[0].port, i32::from(proxy.base) + 1);
    proxy.stop().await;

    // Without the CA: the certificate problem is named, with the fix.
    let mut other_ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_ca
        .distinguished_name
        .push(rcgen::DnType::CommonName, "some other CA");
    other_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other_pem = other_ca
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .pem();
    let proxy = start_proxy(&broker, &[1], |b| b.with_upstream_ca_pem(other_pem)).await;
    let mut body = String::new();
    for _ in 0..200 {
        body = proxy.http("/readyz").await.1;
        if body.contains("TLS") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The library's router names the builder method; the binary's names `--upstream-ca-file`
    // (`commands::proxy_errors`).
    assert!(
        body.contains("TLS handshake with broker bootstrap.kafka.invalid failed: the broker's certificate is signed by an unknown issuer; if the cluster uses a private CA, give its PEM with ProxyBuilder::with_upstream_ca_file or with_upstream_ca_pem"),
        "{body}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_broker_that_goes_away_closes_its_clients() {
    let script = Script {
        close_on_key: Some(16),
        ..Script::default()
    };
    let (_broker, proxy) = start(script, &[1]).await;
    let mut client = Client::connect(proxy.bootstrap).await;
    client.send(&ApiVersionsRequest::default(), 0).await;
    client.recv::<ApiVersionsRequest>(0).await;
    // ListGroups makes the fake broker drop the connection, as a broker that stops does.
    client.send(&ListGroupsRequest::default(), 4).await;
    assert!(client.closed().await);
    proxy.stop().await;
}

/// The binary with the interop suite's flags and environment variables: ready, rewriting,
/// and exit 143 on SIGTERM.
#[tokio::test]
async fn the_proxy_subcommand_serves_with_the_documented_flags_and_variables() {
    use crate::support::{Sidecar, SidecarEnv, free_port};
    let google = FakeGoogle::start().await;
    let broker = FakeBroker::start(Script::default()).await;
    let port = i32::from(broker.addr.port());
    broker.set(|s| s.brokers = vec![(0, host(0), port), (2, host(2), port)]);
    let listen = free_port();
    let base = port_base();
    let env = SidecarEnv::new(&google)
        .set(
            "GCP_KAFKA_AUTH_BOOTSTRAP_SERVER",
            format!("bootstrap.kafka.invalid:{port}"),
        )
        .set("GCP_KAFKA_AUTH_BROKER_PORT_BASE", base.to_string())
        .set("GCP_KAFKA_AUTH_UPSTREAM_TLS", "false");
    let listen_arg = format!("127.0.0.1:{listen}");
    let mut sidecar = Sidecar::spawn(
        env,
        &[
            "proxy",
            "--listen",
            &listen_arg,
            "--resolve",
            "bootstrap.kafka.invalid=127.0.0.1",
            "--resolve",
            &format!("{}=127.0.0.1,{}=127.0.0.1", host(0), host(2)),
            "--http-port",
            "0",
            "--log-format",
            "json",
        ],
    );
    sidecar.wait_ready().await;
    let mut client = Client::connect(SocketAddr::new(LOOPBACK, listen)).await;
    client
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await;
    let (_, metadata) = client.recv::<MetadataRequest>(12).await;
    let base = i32::from(base);
    assert_eq!(
        metadata_brokers(&metadata),
        [
            (0, "127.0.0.1".into(), base, Some("rack-0".into())),
            (2, "127.0.0.1".into(), base + 2, Some("rack-2".into()))
        ]
    );
    assert!(
        sidecar.logs().contains(
            "upstream TLS is off: broker connections are plaintext and tokens cross the network readable"
        ),
        "{}",
        sidecar.logs()
    );
    drop(client);
    let status = sidecar
        .terminate(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    // 143 as Google's auth proxies exit after SIGTERM; --exit-zero-on-sigterm makes it 0.
    assert_eq!(status.code(), Some(143), "{status:?}: {}", sidecar.logs());
}

/// `proxy --check`: the start-up probe once, with the problem and its fix when it fails.
#[tokio::test]
async fn proxy_check_reports_the_brokers_or_what_failed() {
    use crate::support::{SidecarEnv, run};
    let google = FakeGoogle::start().await;
    let broker = FakeBroker::start(Script::default()).await;
    let port = broker.addr.port();
    broker.set(|s| s.brokers = vec![(4, host(4), i32::from(port))]);
    let env = SidecarEnv::new(&google);
    let bootstrap = format!("bootstrap.kafka.invalid:{port}");
    let resolve = format!("bootstrap.kafka.invalid=127.0.0.1,{}=127.0.0.1", host(4));
    let args: Vec<String> = [
        "proxy",
        "--check",
        "--bootstrap-server",
        &bootstrap,
        "--resolve",
        &resolve,
        "--upstream-tls=false",
        "--broker-port-base",
        "30000",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run(&env, &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "ok: bootstrap Metadata round trip succeeded; 1 brokers\n  node 4 at {}:{port} -> 127.0.0.1:30004\n",
            host(4)
        )
    );

    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = SidecarEnv::new(&google);
    let bootstrap = format!("127.0.0.1:{closed}");
    let (code, stdout, _) = tokio::task::spawn_blocking(move || {
        run(
            &env,
            &[
                "proxy",
                "--check",
                "--bootstrap-server",
                &bootstrap,
                "--upstream-tls=false",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(
        stdout.starts_with(&format!(
            "not ready: cannot connect to broker 127.0.0.1:{closed} (127.0.0.1:{closed}): "
        )),
        "{stdout}"
    );
    // A refused connection is named as such; the VPC hint is for timeouts and unreachable
    // networks only.
    assert!(
        stdout.contains("the host answered but nothing listens on that port")
            && !stdout.contains("VPC"),
        "{stdout}"
    );
}

/// A client that half-closes after its last request still gets the answer, then the close.
#[tokio::test]
async fn a_client_half_close_still_delivers_the_answers_in_flight() {
    let (broker, proxy) = start(Script::default(), &[1]).await;
    // The probe's connection is the broker's first; the client's is the second.
    proxy.wait_readyz(200).await;
    let mut client = Client::connect(proxy.bootstrap).await;
    let first = client
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 4)
        .await;
    let second = client.send(&ApiVersionsRequest::default(), 0).await;
    client.shutdown_write().await;
    assert_eq!(client.recv::<MetadataRequest>(4).await.0, first);
    assert_eq!(client.recv::<ApiVersionsRequest>(0).await.0, second);
    assert!(client.closed().await);
    // The broker saw both requests on one connection, under the proxy's correlation ids.
    let on_client_conn: Vec<(i16, i32)> = broker
        .seen()
        .iter()
        .filter_map(|s| match s {
            Seen::Request(2, key, _, id) => Some((*key, *id)),
            _ => None,
        })
        .collect();
    assert_eq!(on_client_conn, [(18, 0), (17, 1), (36, 2), (3, 3), (18, 4)]);
    proxy.stop().await;
}
