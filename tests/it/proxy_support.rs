//! A scripted fake Kafka broker on the `kafka-protocol` crate's broker side, and a tiny
//! Kafka client, for the proxy's in-process tests over real TCP on loopback.
//!
//! The broker behaves as Kafka does where the proxy depends on it: it answers in request
//! order, refuses every request but ApiVersions and SASL before authentication, sends no
//! response to Produce `acks=0`, answers an ApiVersions version above its own with
//! UNSUPPORTED_VERSION at v0 (KIP-511), and closes a connection whose SASL session
//! (`session_lifetime_ms`) has expired without re-authentication (KIP-368).
//!
//! No broker address may reach a client of the proxy, in any test: every byte a test reads
//! from a proxy goes through [`Client`], and every read checks it (see [`assert_no_leak`]) for
//! `kafka.invalid` (the fake brokers' names) and for the port of any fake broker started in
//! this process, as an int32 (the wire form of a port) or as a number in text. A test cannot
//! forget the check, and cannot read around it: the stream is private, and a test that opens a
//! raw socket to a proxy must say why (`proxy::raw_sockets_to_a_proxy_are_justified`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::fetch_response::NodeEndpoint;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// An API key (DescribeAcls) the fake answers with the raw bytes `proprietary`: the proxy
/// forwards it opaquely, so what the client gets shows the proxy changed nothing but the
/// correlation id.
pub const RAW_ECHO: i16 = 29;
/// An API key (CreateAcls) the fake answers with as many bytes as the request's last four
/// ask for.
pub const RAW_SIZED: i16 = 30;

/// What the fake broker answers; shared, so a test can change it while running.
#[derive(Debug, Clone)]
pub struct Script {
    /// Metadata / DescribeCluster brokers: (node id, host, port).
    pub brokers: Vec<(i32, String, i32)>,
    /// The ApiVersions list: (key, min, max).
    pub api_versions: Vec<(i16, i16, i16)>,
    /// `session_lifetime_ms` in SaslAuthenticate answers.
    pub session_lifetime_ms: i64,
    /// Refuse SaslAuthenticate with this message.
    pub refuse: Option<String>,
    /// FindCoordinator answers: the node id.
    pub coordinator: i32,
    /// Close the connection (as a broker going away) on a request with this key.
    pub close_on_key: Option<i16>,
    /// Answer with `proxy_rich`'s responses: every field non-default, tagged fields included.
    pub rich: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            brokers: Vec::new(),
            api_versions: vec![
                (0, 3, 13),
                (1, 4, 18),
                (3, 0, 13),
                (10, 0, 6),
                (17, 0, 1),
                (18, 0, 4),
                (19, 2, 7),
                (36, 0, 2),
                (38, 1, 3),
                (32, 1, 4),
                (60, 0, 2),
                (10_000, 0, 3),
            ],
            session_lifetime_ms: 0,
            refuse: None,
            coordinator: 1,
            close_on_key: None,
            rich: false,
        }
    }
}

/// Something the broker saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A connection was accepted.
    Connected(u64),
    /// A request: connection, key, version, correlation id.
    Request(u64, i16, i16, i32),
    /// SASL authenticate bytes on a connection.
    Authenticated(u64, Vec<u8>),
    /// The session expired and the broker closed the connection.
    Expired(u64),
}

/// A response the fake broker sent (SASL answers, which only the proxy reads, aside).
#[derive(Debug, Clone)]
pub struct Answer {
    pub key: i16,
    pub version: i16,
    /// The client id of the request: the proxy's own requests carry its own.
    pub client_id: Option<String>,
    /// Header and body as sent (no size prefix).
    pub frame: Bytes,
}

/// The ports of every fake broker listening in this process: none may reach a client.
fn broker_ports() -> &'static Mutex<Vec<u16>> {
    static PORTS: OnceLock<Mutex<Vec<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(Vec::new()))
}

/// A fake broker's port in [`broker_ports`] for as long as its listener lives: when a test's
/// runtime ends, the port is taken off the list before the listener lets it go, since the
/// kernel may then give it to another test's proxy, whose clients see it as theirs.
struct ListedPort(u16);

impl ListedPort {
    fn list(port: u16) -> Self {
        broker_ports()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(port);
        ListedPort(port)
    }
}

impl Drop for ListedPort {
    fn drop(&mut self) {
        let mut ports = broker_ports()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(i) = ports.iter().position(|p| *p == self.0) {
            ports.swap_remove(i);
        }
    }
}

/// The fake broker.
#[derive(Clone)]
pub struct FakeBroker {
    pub addr: SocketAddr,
    pub script: Arc<Mutex<Script>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub answers: Arc<Mutex<Vec<Answer>>>,
}

impl FakeBroker {
    /// A plaintext broker on an ephemeral loopback port.
    pub async fn start(script: Script) -> Self {
        Self::start_with(script, None).await
    }

    /// A broker speaking TLS with `tls` when given.
    pub async fn start_with(script: Script, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broker = FakeBroker {
            addr: listener.local_addr().unwrap(),
            script: Arc::new(Mutex::new(script)),
            seen: Arc::new(Mutex::new(Vec::new())),
            answers: Arc::new(Mutex::new(Vec::new())),
        };
        let listed = ListedPort::list(broker.addr.port());
        let server = broker.clone();
        tokio::spawn(async move {
            // Dropped in reverse order when the runtime ends: off the list, then the port freed.
            let listener = listener;
            let _listed = listed;
            let mut next = 0u64;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                next += 1;
                let conn = next;
                let server = server.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    server.seen.lock().unwrap().push(Seen::Connected(conn));
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                server.serve(conn, stream).await;
                            }
                        }
                        None => server.serve(conn, stream).await,
                    }
                });
            }
        });
        broker
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn set(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.script.lock().unwrap());
    }

    /// The last answer to a request `key` v`version` that came from a client (not from the
    /// proxy's own connection set-up, which uses the proxy's client id).
    pub fn last_client_answer(&self, key: ApiKey, version: i16) -> Answer {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|a| {
                a.key == key as i16
                    && a.version == version
                    && a.client_id.as_deref() == Some(CLIENT_ID)
            })
            .cloned()
            .unwrap_or_else(|| panic!("the broker answered no client {key:?} v{version}"))
    }

    async fn serve(&self, conn: u64, mut stream: impl AsyncRead + AsyncWrite + Unpin) {
        let mut authenticated = false;
        let mut expires: Option<Instant> = None;
        let mut reauthenticating = false;
        // The mechanism of the last SaslHandshake: Kafka refuses OAUTHBEARER tokens with an
        // RFC 7628 error challenge first, PLAIN credentials at once.
        let mut oauthbearer = false;
        loop {
            let Some(frame) = read_frame(&mut stream).await else {
                return;
            };
            let key = i16::from_be_bytes([frame[0], frame[1]]);
            let version = i16::from_be_bytes([frame[2], frame[3]]);
            let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            self.seen
                .lock()
                .unwrap()
                .push(Seen::Request(conn, key, version, correlation));
            // As Kafka does, a SaslHandshake on an authenticated connection starts a
            // re-authentication, during which the old session's expiry is not enforced.
            if key == ApiKey::SaslHandshake as i16 && authenticated {
                reauthenticating = true;
            }
            if let Some(at) = expires.filter(|_| !reauthenticating) {
                if Instant::now() > at {
                    self.seen.lock().unwrap().push(Seen::Expired(conn));
                    return;
                }
            }
            let script = self.script.lock().unwrap().clone();
            if script.close_on_key == Some(key) {
                return;
            }
            if key == RAW_SIZED {
                // A response of the size the request asks for (a u32 after the header's
                // client id), filled with a known pattern: the proxy forwards the key opaquely.
                let size = u32::from_be_bytes(frame[frame.len() - 4..].try_into().unwrap());
                let mut out = correlation.to_be_bytes().to_vec();
                out.extend((0..size).map(|i| (i % 251) as u8));
                write_frame(&mut stream, &out).await;
                continue;
            }
            if key == RAW_ECHO {
                // A fixed raw answer, for tests of opaque forwarding and ordering.
                let mut out = correlation.to_be_bytes().to_vec();
                out.extend_from_slice(b"proprietary");
                write_frame(&mut stream, &out).await;
                continue;
            }
            let Ok(api) = ApiKey::try_from(key) else {
                return;
            };
            let mut body = frame.clone();
            let header =
                RequestHeader::decode(&mut body, api.request_header_version(version)).unwrap();
            // KIP-511: an ApiVersions version above the broker's own gets error 35 at v0.
            let api_versions_too_new = api == ApiKey::ApiVersions
                && version > 3
                && script
                    .api_versions
                    .iter()
                    .any(|(k, _, max)| *k == 18 && *max < version);
            let rich = if script.rich
                && !api_versions_too_new
                && (authenticated || api == ApiKey::ApiVersions)
            {
                crate::proxy_rich::body(api, version, &script.brokers, &script.api_versions)
            } else {
                None
            };
            let reply: Option<Bytes> = match api {
                _ if rich.is_some() => {
                    let mut out =
                        BytesMut::from(&crate::proxy_rich::header(api, version, correlation)[..]);
                    out.extend_from_slice(&rich.unwrap());
                    Some(out.freeze())
                }
                ApiKeys::ApiVersions => {
                    let (answer_version, response) = if api_versions_too_new {
                        (
                            0,
                            ApiVersionsResponse::default()
                                .with_error_code(35)
                                .with_api_keys(vec![
                                    ApiVersion::default()
                                        .with_api_key(18)
                                        .with_min_version(0)
                                        .with_max_version(3),
                                ]),
                        )
                    } else {
                        (
                            version,
                            ApiVersionsResponse::default().with_api_keys(
                                script
                                    .api_versions
                                    .iter()
                                    .map(|(k, min, max)| {
                                        ApiVersion::default()
                                            .with_api_key(*k)
                                            .with_min_version(*min)
                                            .with_max_version(*max)
                                    })
                                    .collect(),
                            ),
                        )
                    };
                    Some(encode_response(
                        &response,
                        ApiKey::ApiVersions,
                        answer_version,
                        correlation,
                    ))
                }
                ApiKey::SaslHandshake => {
                    let request = SaslHandshakeRequest::decode(&mut body, version).unwrap();
                    let ok = ["OAUTHBEARER", "PLAIN"].contains(&request.mechanism.as_str());
                    oauthbearer = request.mechanism.as_str() == "OAUTHBEARER";
                    let response = SaslHandshakeResponse::default()
                        .with_error_code(if ok { 0 } else { 33 })
                        .with_mechanisms(vec![
                            StrBytes::from_static_str("OAUTHBEARER"),
                            StrBytes::from_static_str("PLAIN"),
                        ]);
                    Some(encode_response(&response, api, version, correlation))
                }
                ApiKey::SaslAuthenticate => {
                    let request = SaslAuthenticateRequest::decode(&mut body, version).unwrap();
                    let challenge_ack = request.auth_bytes.as_ref() == b"\x01";
                    if !challenge_ack {
                        self.seen
                            .lock()
                            .unwrap()
                            .push(Seen::Authenticated(conn, request.auth_bytes.to_vec()));
                    }
                    if script.refuse.is_some() && oauthbearer && !challenge_ack {
                        // RFC 7628 §3.2.2, as Kafka's OAuthBearerSaslServer does it: error
                        // code 0, the error JSON as a challenge; the refusal follows the
                        // client's %x01.
                        let response = SaslAuthenticateResponse::default().with_auth_bytes(
                            bytes::Bytes::from_static(br#"{"status":"invalid_token"}"#),
                        );
                        write_frame(
                            &mut stream,
                            &encode_response(&response, api, version, correlation),
                        )
                        .await;
                        continue;
                    }
                    let response = match &script.refuse {
                        Some(message) => SaslAuthenticateResponse::default()
                            .with_error_code(58)
                            .with_error_message(Some(StrBytes::from_string(message.clone()))),
                        None => {
                            authenticated = true;
                            reauthenticating = false;
                            expires = (script.session_lifetime_ms > 0).then(|| {
                                Instant::now()
                                    + Duration::from_millis(script.session_lifetime_ms as u64)
                            });
                            SaslAuthenticateResponse::default()
                                .with_session_lifetime_ms(script.session_lifetime_ms)
                        }
                    };
                    let refused = script.refuse.is_some();
                    write_frame(
                        &mut stream,
                        &encode_response(&response, api, version, correlation),
                    )
                    .await;
                    if refused {
                        return;
                    }
                    continue;
                }
                _ if !authenticated => return,
                ApiKey::Metadata => {
                    let response = MetadataResponse::default()
                        .with_cluster_id(Some(StrBytes::from_static_str("fake-cluster")))
                        .with_controller_id(BrokerId(script.brokers.first().map_or(-1, |b| b.0)))
                        .with_brokers(
                            script
                                .brokers
                                .iter()
                                .map(|(id, host, port)| {
                                    MetadataResponseBroker::default()
                                        .with_node_id(BrokerId(*id))
                                        .with_host(StrBytes::from_string(host.clone()))
                                        .with_port(*port)
                                        .with_rack(Some(StrBytes::from_string(format!(
                                            "rack-{id}"
                                        ))))
                                })
                                .collect(),
                        );
                    Some(encode_response(&response, api, version, correlation))
                }
                ApiKey::DescribeCluster => {
                    let response = DescribeClusterResponse::default()
                        .with_cluster_id(StrBytes::from_static_str("fake-cluster"))
                        .with_brokers(
                            script
                                .brokers
                                .iter()
                                .map(|(id, host, port)| {
                                    DescribeClusterBroker::default()
                                        .with_broker_id(BrokerId(*id))
                                        .with_host(StrBytes::from_string(host.clone()))
                                        .with_port(*port)
                                })
                                .collect(),
                        );
                    Some(encode_response(&response, api, version, correlation))
                }
                ApiKey::FindCoordinator => {
                    let (_, host, port) = script
                        .brokers
                        .iter()
                        .find(|b| b.0 == script.coordinator)
                        .cloned()
                        .unwrap();
                    let mut response = FindCoordinatorResponse::default();
                    if version < 4 {
                        response = response
                            .with_node_id(BrokerId(script.coordinator))
                            .with_host(StrBytes::from_string(host))
                            .with_port(port);
                    } else {
                        let request = FindCoordinatorRequest::decode(&mut body, version).unwrap();
                        response = response.with_coordinators(
                            request
                                .coordinator_keys
                                .iter()
                                .map(|k| {
                                    Coordinator::default()
                                        .with_key(k.clone())
                                        .with_node_id(BrokerId(script.coordinator))
                                        .with_host(StrBytes::from_string(host.clone()))
                                        .with_port(port)
                                })
                                .collect(),
                        );
                    }
                    Some(encode_response(&response, api, version, correlation))
                }
                ApiKey::Produce => {
                    let request = ProduceRequest::decode(&mut body, version).unwrap();
                    // KIP-951: from v10 the answer names the brokers the client should use.
                    let response = if version >= 10 {
                        ProduceResponse::default().with_node_endpoints(
                            script
                                .brokers
                                .iter()
                                .map(|(id, host, port)| {
                                    produce_response::NodeEndpoint::default()
                                        .with_node_id(BrokerId(*id))
                                        .with_host(StrBytes::from_string(host.clone()))
                                        .with_port(*port)
                                })
                                .collect(),
                        )
                    } else {
                        ProduceResponse::default()
                    };
                    (request.acks != 0)
                        .then(|| encode_response(&response, api, version, correlation))
                }
                ApiKey::ShareFetch => {
                    let response = ShareFetchResponse::default().with_node_endpoints(
                        script
                            .brokers
                            .iter()
                            .map(|(id, host, port)| {
                                share_fetch_response::NodeEndpoint::default()
                                    .with_node_id(BrokerId(*id))
                                    .with_host(StrBytes::from_string(host.clone()))
                                    .with_port(*port)
                            })
                            .collect(),
                    );
                    Some(encode_response(&response, api, version, correlation))
                }
                ApiKey::ShareAcknowledge => {
                    let response = ShareAcknowledgeResponse::default().with_node_endpoints(
                        script
                            .brokers
                            .iter()
                            .map(|(id, host, port)| {
                                share_acknowledge_response::NodeEndpoint::default()
                                    .with_node_id(BrokerId(*id))
                                    .with_host(StrBytes::from_string(host.clone()))
                                    .with_port(*port)
                            })
                            .collect(),
                    );
                    Some(encode_response(&response, api, version, correlation))
                }
                ApiKey::Fetch => {
                    let response = FetchResponse::default().with_node_endpoints(
                        script
                            .brokers
                            .iter()
                            .map(|(id, host, port)| {
                                NodeEndpoint::default()
                                    .with_node_id(BrokerId(*id))
                                    .with_host(StrBytes::from_string(host.clone()))
                                    .with_port(*port)
                            })
                            .collect(),
                    );
                    Some(encode_response(&response, api, version, correlation))
                }
                ApiKey::DescribeConfigs => {
                    // A broker's configuration, as Kafka describes it: its listeners name
                    // real addresses.
                    use kafka_protocol::messages::describe_configs_response::{
                        DescribeConfigsResourceResult, DescribeConfigsResult,
                    };
                    let config = |name: &str, value: String| {
                        DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_string(name.to_owned()))
                            .with_value(Some(StrBytes::from_string(value)))
                    };
                    let (id, host, port) = script.brokers.first().cloned().unwrap_or_default();
                    let response = DescribeConfigsResponse::default().with_results(vec![
                        DescribeConfigsResult::default()
                            .with_resource_type(4)
                            .with_resource_name(StrBytes::from_string(id.to_string()))
                            .with_configs(vec![
                                config("advertised.listeners", format!("SASL_SSL://{host}:{port}")),
                                config("listeners", format!("SASL_SSL://:{port}")),
                                config("log.retention.hours", "168".to_owned()),
                            ]),
                    ]);
                    Some(encode_response(&response, api, version, correlation))
                }
                _ => return,
            };
            if let Some(reply) = reply {
                self.answers.lock().unwrap().push(Answer {
                    key,
                    version,
                    client_id: header.client_id.as_ref().map(|c| c.to_string()),
                    frame: reply.clone(),
                });
                write_frame(&mut stream, &reply).await;
            }
        }
    }
}

type ApiKeys = ApiKey;

/// Response header + body (no size prefix).
pub fn encode_response(
    body: &impl Encodable,
    key: ApiKey,
    version: i16,
    correlation: i32,
) -> Bytes {
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut out, key.response_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    out.freeze()
}

/// One frame without its size prefix, `None` at EOF.
pub async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> Option<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

pub async fn write_frame(stream: &mut (impl AsyncWrite + Unpin), body: &[u8]) {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    let _ = stream.write_all(&out).await;
}

/// The client id of every request [`Client`] sends.
pub const CLIENT_ID: &str = "test-client";

/// Panics if `frame` (one response, without its size prefix) carries a fake broker's address:
/// the name suffix `kafka.invalid`, or the port of any fake broker started in this process,
/// as a big-endian int32 (how Kafka encodes every port) or as a decimal number standing alone
/// in text (`host:port`). Fake brokers listen on ephemeral ports (32768 and up), which keeps
/// the int32 form clear of ordinary small numbers.
pub fn assert_no_leak(frame: &[u8]) {
    let text = || String::from_utf8_lossy(frame).into_owned();
    assert!(
        !frame.windows(13).any(|w| w == b"kafka.invalid"),
        "a broker address reached the client: {:?}",
        text()
    );
    // A copy: a failed check must not poison the list for the tests running beside this one.
    let ports: std::collections::HashSet<u16> = broker_ports()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .copied()
        .collect();
    // One pass for each form, whatever the number of brokers: frames run to megabytes.
    for w in frame.windows(4) {
        let port = u16::from_be_bytes([w[2], w[3]]);
        assert!(
            w[..2] != [0, 0] || !ports.contains(&port),
            "a fake broker's port {port} (as an int32) reached the client: {frame:?}"
        );
    }
    for run in frame.split(|b| !b.is_ascii_digit()) {
        let port = (1..=5)
            .contains(&run.len())
            .then(|| std::str::from_utf8(run).ok()?.parse::<u16>().ok())
            .flatten();
        assert!(
            !port.is_some_and(|p| ports.contains(&p)),
            "a fake broker's port {} (as text) reached the client: {:?}",
            port.unwrap_or_default(),
            text()
        );
    }
}

/// A hand-rolled Kafka client, the only way tests read from a proxy: every frame it receives
/// is checked with [`assert_no_leak`], and whatever arrived unread is checked when it drops.
pub struct Client {
    stream: TcpStream,
    next: i32,
    /// Frames received and checked.
    pub frames: usize,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            next: 100,
            frames: 0,
        }
    }

    /// Sends `request` at `version`; returns its correlation id.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> i32 {
        let id = self.next;
        self.next += 1;
        let mut out = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)))
            .encode(&mut out, R::header_version(version))
            .unwrap();
        request.encode(&mut out, version).unwrap();
        write_frame(&mut self.stream, &out).await;
        id
    }

    /// Sends raw frame bytes (without size prefix).
    pub async fn send_raw(&mut self, body: &[u8]) {
        write_frame(&mut self.stream, body).await;
    }

    /// Sends bytes as they are, unframed (a TLS ClientHello, say).
    pub async fn send_unframed(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Half-closes: no more requests.
    pub async fn shutdown_write(&mut self) {
        self.stream.shutdown().await.unwrap();
    }

    /// Reads one response frame (no size prefix), `None` if the proxy closed.
    pub async fn recv_raw(&mut self) -> Option<Bytes> {
        let frame = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut self.stream))
            .await
            .expect("a response or a close within 10 s")?;
        assert_no_leak(&frame);
        self.frames += 1;
        Some(frame)
    }

    /// Reads one response frame in chunks of `chunk` bytes with `pause` after each (a slow
    /// consumer); after each chunk `send_after(elapsed)` may return bytes to send on the
    /// same connection. The whole frame is checked, as by [`Self::recv_raw`].
    pub async fn recv_raw_paced(
        &mut self,
        chunk: usize,
        pause: Duration,
        mut send_after: impl FnMut(Duration) -> Option<Vec<u8>>,
    ) -> Bytes {
        let started = std::time::Instant::now();
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
        let mut got = 0;
        while got < frame.len() {
            let end = (got + chunk).min(frame.len());
            let n = self.stream.read(&mut frame[got..end]).await.unwrap();
            assert!(n > 0, "the proxy closed after {got} bytes of a frame");
            got += n;
            if let Some(bytes) = send_after(started.elapsed()) {
                self.stream.write_all(&bytes).await.unwrap();
            }
            tokio::time::sleep(pause).await;
        }
        assert_no_leak(&frame);
        self.frames += 1;
        Bytes::from(frame)
    }

    /// Reads until the proxy closes (at most 5 s), checking every frame; returns the bytes.
    pub async fn drain_to_close(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stream.read_to_end(&mut all))
            .await
            .expect("closed within 5 s");
        let mut at = 0;
        while at + 4 <= all.len() {
            let size = u32::from_be_bytes(all[at..at + 4].try_into().unwrap()) as usize;
            let end = (at + 4 + size).min(all.len());
            assert_no_leak(&all[at + 4..end]);
            at = end;
        }
        all
    }

    /// Reads and decodes the response to a request `R` at `version`.
    pub async fn recv<R: Request>(&mut self, version: i16) -> (i32, R::Response) {
        let frame = self.recv_raw().await.expect("a response, not a close");
        decode::<R>(frame, version)
    }

    /// Whether the proxy closed the connection (EOF or reset) without sending more; data
    /// instead is read as a frame, and checked.
    pub async fn closed(&mut self) -> bool {
        let mut size = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut size)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => {
                let mut rest = [0u8; 4];
                self.stream.read_exact(&mut rest[..4 - n]).await.unwrap();
                let mut whole = size[..n].to_vec();
                whole.extend_from_slice(&rest[..4 - n]);
                let mut body = vec![0u8; u32::from_be_bytes(whole.try_into().unwrap()) as usize];
                self.stream.read_exact(&mut body).await.unwrap();
                assert_no_leak(&body);
                self.frames += 1;
                false
            }
            Err(_) => panic!("neither data nor close within 10 s"),
        }
    }

    /// How the proxy ended the connection, with nothing sent first: `"reset"` (ECONNRESET, as
    /// a refused connection to a down broker looks to a client) or `"closed"` (an orderly
    /// EOF).
    pub async fn ending(&mut self) -> &'static str {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut byte)).await {
            Ok(Ok(0)) => "closed",
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset",
            Ok(Err(e)) => panic!("the connection failed otherwise: {e}"),
            Ok(Ok(_)) => panic!("the proxy answered instead of ending the connection"),
            Err(_) => panic!("neither data nor an end within 10 s"),
        }
    }
}

impl Drop for Client {
    /// Checks whatever already arrived that the test did not read: a leak in an answer the
    /// test ignored still reached the client.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let mut unread = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        while let Ok(n) = self.stream.try_read(&mut chunk) {
            if n == 0 {
                break;
            }
            unread.extend_from_slice(&chunk[..n]);
        }
        let mut at = 0;
        while at + 4 <= unread.len() {
            let size = u32::from_be_bytes(unread[at..at + 4].try_into().unwrap()) as usize;
            let end = (at + 4 + size).min(unread.len());
            assert_no_leak(&unread[at + 4..end]);
            at = end;
        }
    }
}

pub fn decode<R: Request>(frame: Bytes, version: i16) -> (i32, R::Response) {
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version)).unwrap();
    let body = R::Response::decode(&mut buf, version).unwrap();
    assert_eq!(buf.remaining(), 0, "trailing bytes after the response");
    (header.correlation_id, body)
}
