//! One client connection and its broker connection.
//!
//! States: connecting → authenticating (before any client byte is read) → forwarding ⇄
//! re-authenticating → draining. Two halves run concurrently in one task:
//!
//! - requests (client → broker): complete frames are read into one buffer, each gets the
//!   proxy's next correlation id written in place, an in-flight entry is queued (none for
//!   Produce `acks=0`, which gets no response), and the run of frames is written with one
//!   `write_all`. Re-authentication happens here, between frames: the half stops reading
//!   the client, sends SaslHandshake and SaslAuthenticate with its own correlation ids and
//!   waits for their answers, which the other half hands over.
//! - responses (broker → client): each frame is matched to the oldest in-flight entry
//!   (Kafka answers in request order), its correlation id set back to the client's, and
//!   forwarded; only the responses that carry broker addresses or API versions are decoded.
//!
//! The in-flight queue is a bounded channel: a client that pipelines more than
//! `max_in_flight` requests, or a slow reader, makes the proxy stop reading instead of
//! buffering. Each direction holds at most one frame being read.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Shared;
use super::frame::{self, FrameError};
use super::metrics::{AuthOutcome, ClientMistake};
use super::rewrite::{self, RewriteError};
use super::upstream::{self, Io, Sequence, Session, UpstreamError};
use super::versions::{self, Handling};

/// The client's text for a SASL attempt against the proxy.
pub(crate) const SASL_REFUSAL: &str =
    "the proxy authenticates for you: remove the SASL settings, use security.protocol=PLAINTEXT";

/// Which listener a client came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Bootstrap,
    Node(i32),
}

impl Target {
    pub fn label(self) -> String {
        match self {
            Self::Bootstrap => "bootstrap".to_owned(),
            Self::Node(id) => id.to_string(),
        }
    }
}

/// A request whose response is awaited, in request order.
enum InFlight {
    /// A client request: give the response back under `client_id`.
    Client {
        proxy_id: i32,
        client_id: i32,
        api_key: i16,
        api_version: i16,
    },
    /// The proxy's own request: hand the response frame over.
    Own {
        proxy_id: i32,
        reply: oneshot::Sender<Bytes>,
    },
    /// An answer made by the proxy, sent in its place in the order; `close` ends the
    /// connection after it.
    Local { frame: Bytes, close: bool },
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error(transparent)]
    Bind(#[from] super::BindError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
}

/// Serves one accepted client until either side closes.
pub(crate) async fn serve(shared: Arc<Shared>, client: TcpStream, target: Target) {
    let label = target.label();
    shared.metrics.opened(&label);
    let peer = client
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let result = serve_inner(&shared, client, target).await;
    shared.metrics.closed(&label);
    match result {
        Ok(()) => tracing::debug!(client = %peer, listener = %label, "connection closed"),
        Err(err) => tracing::warn!(client = %peer, listener = %label, "connection closed: {err}"),
    }
}

async fn serve_inner(
    shared: &Arc<Shared>,
    client: TcpStream,
    target: Target,
) -> Result<(), ConnError> {
    let _ = client.set_nodelay(true);
    let mut seq = Sequence::default();
    let (upstream, host, session) = open_upstream(shared, target, &mut seq).await?;
    let (client_r, client_w) = client.into_split();
    let (up_r, up_w) = tokio::io::split(upstream);
    let (tx, rx) = mpsc::channel(shared.max_in_flight);
    let requests = requests(shared, client_r, up_w, tx, seq, &host, session);
    let responses = responses(shared, up_r, client_w, rx);
    tokio::pin!(requests, responses);
    tokio::select! {
        r = &mut requests => {
            // The client stopped sending (half-close, shutdown, refusal) or failed: the
            // responses half delivers what is in flight, then closes.
            let drained = responses.await;
            r.and(drained)
        }
        r = &mut responses => r,
    }
}

/// Connects and authenticates to the broker this listener stands for.
async fn open_upstream(
    shared: &Arc<Shared>,
    target: Target,
    seq: &mut Sequence,
) -> Result<(Box<dyn Io>, String, Session), ConnError> {
    let candidates = match target {
        Target::Bootstrap => shared.bootstrap.clone(),
        Target::Node(id) => match shared.nodes.address(id) {
            Some(a) => vec![(a.host, a.port)],
            None => {
                return Err(ConnError::Protocol(format!(
                    "node {id} is not known (yet); the client should re-bootstrap"
                )));
            }
        },
    };
    let mut last = None;
    for (host, port) in candidates {
        match open_one(shared, &host, port, seq).await {
            Ok((stream, session)) => return Ok((stream, host, session)),
            Err(e) => {
                if matches!(target, Target::Bootstrap) {
                    tracing::warn!("bootstrap server {host}:{port}: {e}");
                }
                last = Some(e);
            }
        }
    }
    Err(last
        .map(ConnError::Upstream)
        .unwrap_or_else(|| ConnError::Protocol("no bootstrap servers configured".to_owned())))
}

pub(crate) async fn open_one(
    shared: &Shared,
    host: &str,
    port: u16,
    seq: &mut Sequence,
) -> Result<(Box<dyn Io>, Session), UpstreamError> {
    let mut stream = shared.upstream.connect(host, port).await?;
    let token = shared.provider.token().await?;
    match shared
        .upstream
        .authenticate(&mut stream, host, seq, &token)
        .await
    {
        Ok(session) => {
            shared.metrics.auth(false, AuthOutcome::Ok);
            tracing::debug!(broker = %host, session_lifetime_ms = session.lifetime_ms, "authenticated");
            Ok((stream, session))
        }
        Err(e) => {
            let outcome = if matches!(e, UpstreamError::Refused { .. }) {
                AuthOutcome::Refused
            } else {
                AuthOutcome::Failed
            };
            shared.metrics.auth(false, outcome);
            Err(e)
        }
    }
}

/// When to re-authenticate: at a random 85–95 % of the session, as kafka-clients does
/// (KIP-368), so connections opened together do not all re-authenticate at once.
fn reauth_deadline(session: &Session) -> Option<Instant> {
    (session.lifetime_ms > 0).then(|| {
        let fraction = 0.85 + 0.10 * fastrand::f64();
        Instant::now() + Duration::from_millis((session.lifetime_ms as f64 * fraction) as u64)
    })
}

/// Client → broker.
async fn requests(
    shared: &Shared,
    mut client_r: impl AsyncRead + Unpin,
    mut up_w: impl AsyncWrite + Unpin,
    tx: mpsc::Sender<InFlight>,
    mut seq: Sequence,
    host: &str,
    session: Session,
) -> Result<(), ConnError> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut first = true;
    let mut reauth_at = reauth_deadline(&session);
    let mut shutdown = shared.shutdown.clone();
    loop {
        // Every complete frame in the buffer, rewritten in place; `ready` bytes are due.
        let mut ready = 0;
        loop {
            let rest = &buf[ready..];
            if first && rest.len() >= 4 {
                if let Some(mistake) = frame::classify_first_bytes(rest) {
                    shared.metrics.mistake(match mistake {
                        FrameError::TlsClientHello => ClientMistake::TlsOnPlaintext,
                        _ => ClientMistake::Http,
                    });
                    return Err(mistake.into());
                }
            }
            let len = match frame::complete_frame_len(rest, shared.max_frame) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    shared.metrics.mistake(ClientMistake::Framing);
                    return Err(e.into());
                }
            };
            first = false;
            let peek = frame::peek_request(&buf[ready..ready + len])?;
            shared.metrics.request(peek.api_key);
            if peek.api_key == ApiKey::SaslHandshake as i16
                || peek.api_key == ApiKey::SaslAuthenticate as i16
            {
                flush(&mut up_w, &mut buf, &mut ready, shared).await?;
                shared.metrics.mistake(ClientMistake::Sasl);
                tracing::warn!(
                    "a client sent {} (its SASL credentials are not forwarded): {SASL_REFUSAL}",
                    if peek.api_key == ApiKey::SaslHandshake as i16 {
                        "SaslHandshake"
                    } else {
                        "SaslAuthenticate"
                    }
                );
                let frame = sasl_refusal(peek);
                let _ = tx.send(InFlight::Local { frame, close: true }).await;
                return Ok(());
            }
            if peek.api_key == ApiKey::ApiVersions as i16
                && peek.api_version > versions::REWRITTEN[0].1.max
            {
                // KIP-511: answer UNSUPPORTED_VERSION at v0 ourselves; the broker might
                // answer at a version the proxy cannot decode.
                flush(&mut up_w, &mut buf, &mut ready, shared).await?;
                buf.advance(len);
                let frame = unsupported_api_versions(peek.correlation_id);
                send(
                    &tx,
                    &mut up_w,
                    &mut buf,
                    &mut ready,
                    shared,
                    InFlight::Local {
                        frame,
                        close: false,
                    },
                )
                .await?;
                continue;
            }
            let proxy_id = seq.next_id();
            let slice = &mut buf[ready..ready + len];
            frame::set_request_correlation_id(slice, proxy_id);
            let no_response =
                peek.api_key == frame::PRODUCE && frame::produce_acks(slice) == Some(0);
            ready += len;
            if !no_response {
                let entry = InFlight::Client {
                    proxy_id,
                    client_id: peek.correlation_id,
                    api_key: peek.api_key,
                    api_version: peek.api_version,
                };
                send(&tx, &mut up_w, &mut buf, &mut ready, shared, entry).await?;
            }
        }
        flush(&mut up_w, &mut buf, &mut ready, shared).await?;

        tokio::select! {
            read = client_r.read_buf(&mut buf) => {
                if read? == 0 {
                    if !buf.is_empty() {
                        tracing::debug!(bytes = buf.len(), "client closed in the middle of a request");
                    }
                    // Half-close: the broker still answers what is in flight.
                    let _ = up_w.shutdown().await;
                    return Ok(());
                }
            }
            () = sleep_until(reauth_at), if reauth_at.is_some() => {
                let lifetime = reauthenticate(shared, &tx, &mut up_w, &mut seq, host, &session).await?;
                reauth_at = reauth_deadline(&Session { lifetime_ms: lifetime, ..session });
            }
            _ = shutdown.changed() => {
                // Drain: stop reading; the responses half answers what is in flight.
                return Ok(());
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes the `ready` prefix of `buf` to the broker.
async fn flush(
    up_w: &mut (impl AsyncWrite + Unpin),
    buf: &mut BytesMut,
    ready: &mut usize,
    shared: &Shared,
) -> std::io::Result<()> {
    if *ready > 0 {
        up_w.write_all(&buf[..*ready]).await?;
        shared
            .metrics
            .bytes_to_broker
            .fetch_add(*ready as u64, std::sync::atomic::Ordering::Relaxed);
        buf.advance(*ready);
        *ready = 0;
    }
    Ok(())
}

/// Queues an in-flight entry. When the queue is full, the frames already rewritten are
/// written first (their entries are queued), so the broker can answer and make room.
async fn send(
    tx: &mpsc::Sender<InFlight>,
    up_w: &mut (impl AsyncWrite + Unpin),
    buf: &mut BytesMut,
    ready: &mut usize,
    shared: &Shared,
    entry: InFlight,
) -> Result<(), ConnError> {
    if tx.capacity() == 0 {
        flush(up_w, buf, ready, shared).await?;
    }
    tx.send(entry)
        .await
        .map_err(|_| ConnError::Protocol("the broker connection closed".to_owned()))
}

/// KIP-368 re-authentication on the same connection, between client requests.
async fn reauthenticate(
    shared: &Shared,
    tx: &mpsc::Sender<InFlight>,
    up_w: &mut (impl AsyncWrite + Unpin),
    seq: &mut Sequence,
    host: &str,
    session: &Session,
) -> Result<i64, ConnError> {
    let result = async {
        let token = shared.provider.token().await.map_err(UpstreamError::from)?;
        let (id, request) = upstream::handshake_request(
            shared.upstream.sasl,
            session.handshake_version,
            seq.next_id(),
        );
        let answer = own_request(tx, up_w, id, &request).await?;
        upstream::check_handshake(
            shared.upstream.sasl,
            host,
            id,
            answer,
            session.handshake_version,
        )?;
        let (id, request) = upstream::authenticate_request(
            shared.upstream.sasl,
            &token,
            session.authenticate_version,
            seq.next_id(),
        );
        let answer = own_request(tx, up_w, id, &request).await?;
        match upstream::check_authenticate(
            shared.upstream.sasl,
            host,
            id,
            answer,
            session.authenticate_version,
        )? {
            upstream::AuthAnswer::Done(lifetime) => Ok::<i64, ConnError>(lifetime),
            upstream::AuthAnswer::Challenge(challenge) => {
                let (id, request) =
                    upstream::challenge_ack_request(session.authenticate_version, seq.next_id());
                let answer = own_request(tx, up_w, id, &request).await?;
                Err(upstream::refusal_after_challenge(
                    shared.upstream.sasl,
                    host,
                    id,
                    answer,
                    session.authenticate_version,
                    &challenge,
                )
                .into())
            }
        }
    }
    .await;
    match &result {
        Ok(lifetime) => {
            shared.metrics.auth(true, AuthOutcome::Ok);
            tracing::debug!(broker = %host, session_lifetime_ms = lifetime, "re-authenticated");
        }
        Err(ConnError::Upstream(UpstreamError::Refused { .. })) => {
            shared.metrics.auth(true, AuthOutcome::Refused)
        }
        Err(_) => shared.metrics.auth(true, AuthOutcome::Failed),
    }
    result
}

/// Sends one of the proxy's own requests and waits for its response frame, which the
/// responses half passes over once the responses queued before it are delivered.
async fn own_request(
    tx: &mpsc::Sender<InFlight>,
    up_w: &mut (impl AsyncWrite + Unpin),
    proxy_id: i32,
    request: &[u8],
) -> Result<Bytes, ConnError> {
    let closed =
        || ConnError::Protocol("the broker connection closed during re-authentication".to_owned());
    let (reply, answer) = oneshot::channel();
    tx.send(InFlight::Own { proxy_id, reply })
        .await
        .map_err(|_| closed())?;
    up_w.write_all(request).await?;
    answer.await.map_err(|_| closed())
}

/// Broker → client.
async fn responses(
    shared: &Arc<Shared>,
    mut up_r: impl AsyncRead + Unpin,
    mut client_w: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<InFlight>,
) -> Result<(), ConnError> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        // The next entry; while none is due, watch the broker for a close.
        let entry = loop {
            tokio::select! {
                biased;
                entry = rx.recv() => match entry {
                    Some(entry) => break entry,
                    None => {
                        let _ = client_w.shutdown().await;
                        return Ok(());
                    }
                },
                read = up_r.read_buf(&mut buf) => {
                    if read? == 0 {
                        let _ = client_w.shutdown().await;
                        return Err(ConnError::Protocol("the broker closed the connection".to_owned()));
                    }
                    if frame::complete_frame_len(&buf, shared.max_frame)?.is_some() && rx.is_empty() {
                        return Err(ConnError::Protocol("the broker sent a response to no request".to_owned()));
                    }
                }
            }
        };
        let (proxy_id, frame_bytes) = match &entry {
            InFlight::Local { frame, close } => {
                client_w.write_all(frame).await?;
                if *close {
                    let _ = client_w.shutdown().await;
                    return Ok(());
                }
                continue;
            }
            InFlight::Client {
                proxy_id,
                client_id,
                api_key,
                api_version,
            } if versions::handling(*api_key, *api_version) == Handling::Opaque => {
                forward_opaque(
                    shared,
                    &mut up_r,
                    &mut client_w,
                    &mut buf,
                    *proxy_id,
                    *client_id,
                )
                .await?;
                continue;
            }
            InFlight::Client { proxy_id, .. } | InFlight::Own { proxy_id, .. } => {
                (*proxy_id, read_frame(shared, &mut up_r, &mut buf).await?)
            }
        };
        let mut frame_bytes = frame_bytes;
        let got = frame::response_correlation_id(&frame_bytes)?;
        if got != proxy_id {
            return Err(ConnError::Protocol(format!(
                "the broker answered correlation id {got} where {proxy_id} was due"
            )));
        }
        match entry {
            InFlight::Own { reply, .. } => {
                let _ = reply.send(frame_bytes.freeze());
            }
            InFlight::Client {
                client_id,
                api_key,
                api_version,
                ..
            } => match versions::handling(api_key, api_version) {
                Handling::Opaque => {
                    frame::set_response_correlation_id(&mut frame_bytes, client_id);
                    write_client(shared, &mut client_w, &frame_bytes).await?;
                }
                Handling::Rewrite(key) => {
                    let out = rewritten(shared, key, api_version, client_id, frame_bytes).await?;
                    write_client(shared, &mut client_w, &out).await?;
                }
                Handling::Undecodable => {
                    return Err(ConnError::Protocol(format!(
                        "the client sent {:?} v{api_version}, a version the proxy did not offer and cannot rewrite; closing rather than risk leaking a broker address",
                        ApiKey::try_from(api_key)
                            .map_or_else(|()| api_key.to_string(), |k| format!("{k:?}"))
                    )));
                }
            },
            InFlight::Local { .. } => unreachable!("handled above"),
        }
    }
}

async fn write_client(
    shared: &Shared,
    client_w: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
) -> std::io::Result<()> {
    client_w.write_all(bytes).await?;
    shared
        .metrics
        .bytes_to_client
        .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// At most this much of an opaque response is read before it is passed on.
const OPAQUE_CHUNK: usize = 64 * 1024;

/// Forwards a response the proxy does not rewrite as it arrives (cut-through): the
/// correlation id is set back to the client's once the header is in, and the rest follows
/// chunk by chunk. A Fetch response of many megabytes is then neither held whole in memory
/// nor delayed until its last byte has crossed the broker connection: the client reads the
/// first records while the broker is still sending the last.
async fn forward_opaque(
    shared: &Shared,
    up_r: &mut (impl AsyncRead + Unpin),
    client_w: &mut (impl AsyncWrite + Unpin),
    buf: &mut BytesMut,
    proxy_id: i32,
    client_id: i32,
) -> Result<(), ConnError> {
    let cut_short = || {
        ConnError::Protocol(
            "the broker closed the connection in the middle of a response".to_owned(),
        )
    };
    while buf.len() < frame::SIZE_LEN + 4 {
        if up_r.read_buf(buf).await? == 0 {
            return Err(cut_short());
        }
    }
    // Checked against the frame limit by complete_frame_len, which is None until it is all in.
    let total = frame::complete_frame_len(buf, shared.max_frame)?.unwrap_or_else(|| {
        frame::SIZE_LEN + u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
    });
    let got = frame::response_correlation_id(&buf[..total.min(buf.len())])?;
    if got != proxy_id {
        return Err(ConnError::Protocol(format!(
            "the broker answered correlation id {got} where {proxy_id} was due"
        )));
    }
    frame::set_response_correlation_id(buf, client_id);
    let mut left = total;
    loop {
        let n = left.min(buf.len());
        if n > 0 {
            write_client(shared, client_w, &buf[..n]).await?;
            buf.advance(n);
            left -= n;
        }
        if left == 0 {
            return Ok(());
        }
        buf.reserve(left.min(OPAQUE_CHUNK));
        if up_r.read_buf(buf).await? == 0 {
            return Err(cut_short());
        }
    }
}

/// Reads one whole frame from the broker (the buffer may already hold part of it).
async fn read_frame(
    shared: &Shared,
    up_r: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<BytesMut, ConnError> {
    loop {
        if buf.len() >= 4 {
            match frame::complete_frame_len(buf, shared.max_frame)? {
                Some(len) => return Ok(buf.split_to(len)),
                None => {
                    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    buf.reserve(frame::SIZE_LEN + size - buf.len());
                }
            }
        }
        if up_r.read_buf(buf).await? == 0 {
            return Err(ConnError::Protocol(
                "the broker closed the connection in the middle of a response".to_owned(),
            ));
        }
    }
}

/// Decodes, rewrites and re-encodes one response; makes sure every broker it names has a
/// local listener before the client can learn its port.
async fn rewritten(
    shared: &Arc<Shared>,
    key: ApiKey,
    version: i16,
    client_id: i32,
    mut frame_bytes: BytesMut,
) -> Result<BytesMut, ConnError> {
    // Response header: correlation id, plus (header v1) a tagged-field section.
    let mut header_end = frame::SIZE_LEN + 4;
    if key.response_header_version(version) >= 1 {
        header_end = skip_tagged(&frame_bytes, header_end).ok_or_else(|| {
            ConnError::Protocol(format!("the broker's {key:?} response header is cut short"))
        })?;
    }
    let body = frame_bytes.split_off(header_end).freeze();
    let rewritten = rewrite::rewrite(key, version, body, shared.ports())?;
    shared.nodes.observe(shared, &rewritten.brokers)?;
    let kind = match key {
        ApiKey::ApiVersions => 0,
        ApiKey::Metadata => 1,
        ApiKey::FindCoordinator => 2,
        ApiKey::DescribeCluster => 3,
        ApiKey::Produce => 4,
        ApiKey::Fetch => 5,
        ApiKey::ShareFetch => 6,
        _ => 7,
    };
    shared.metrics.rewrite(kind, rewritten.brokers.len());
    if let Some(report) = &rewritten.api_versions {
        if !report.removed.is_empty() {
            tracing::debug!(removed = ?report.removed, capped = ?report.capped, "ApiVersions filtered");
        }
    }
    frame::set_response_correlation_id(&mut frame_bytes, client_id);
    let header = &frame_bytes[frame::SIZE_LEN..];
    let mut out = BytesMut::with_capacity(frame::SIZE_LEN + header.len() + rewritten.body.len());
    out.extend_from_slice(&((header.len() + rewritten.body.len()) as u32).to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(&rewritten.body);
    Ok(out)
}

/// The offset after a tagged-field section starting at `at`.
fn skip_tagged(buf: &[u8], at: usize) -> Option<usize> {
    let read = |at: &mut usize| -> Option<usize> {
        let mut value = 0usize;
        for shift in (0..35).step_by(7) {
            let byte = *buf.get(*at)?;
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    };
    let mut at = at;
    let count = read(&mut at)?;
    for _ in 0..count {
        read(&mut at)?;
        let size = read(&mut at)?;
        at = at.checked_add(size)?;
    }
    (at <= buf.len()).then_some(at)
}

/// A response frame: size, header (v0 or v1 with no tagged fields), body.
fn response_frame(key: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&correlation_id.to_be_bytes());
    if key.response_header_version(version) >= 1 {
        out.extend_from_slice(&[0]);
    }
    // Encoding into a growable buffer fails only for values out of range; these are fixed.
    body.encode(&mut out, version)
        .expect("local response encodes");
    let size = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    out.freeze()
}

/// The answer to a client's SaslHandshake or SaslAuthenticate.
fn sasl_refusal(peek: frame::RequestPeek) -> Bytes {
    if peek.api_key == ApiKey::SaslHandshake as i16 {
        // UNSUPPORTED_SASL_MECHANISM with no mechanisms: the clients say "enabled mechanisms
        // are []"; the reason is in the proxy's log.
        let version = peek.api_version.clamp(0, 1);
        let body = SaslHandshakeResponse::default().with_error_code(33);
        response_frame(ApiKey::SaslHandshake, version, peek.correlation_id, &body)
    } else {
        let version = peek.api_version.clamp(0, 2);
        let body = SaslAuthenticateResponse::default()
            .with_error_code(58)
            .with_error_message(Some(StrBytes::from_static_str(SASL_REFUSAL)));
        response_frame(
            ApiKey::SaslAuthenticate,
            version,
            peek.correlation_id,
            &body,
        )
    }
}

/// KIP-511's answer, encoded at v0 (ApiVersions responses always use header v0).
fn unsupported_api_versions(correlation_id: i32) -> Bytes {
    response_frame(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &versions::unsupported_api_versions_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kip_511_answer_bytes() {
        let frame = unsupported_api_versions(9);
        assert_eq!(
            &frame[..],
            &[
                0, 0, 0, 16, // size
                0, 0, 0, 9, // correlation id
                0, 35, // UNSUPPORTED_VERSION
                0, 0, 0, 1, // one key
                0, 18, 0, 0, 0, 4, // ApiVersions 0..=4
            ]
        );
    }

    #[test]
    fn sasl_authenticate_refusal_carries_the_fix() {
        let peek = frame::RequestPeek {
            api_key: 36,
            api_version: 2,
            correlation_id: 4,
        };
        let frame = sasl_refusal(peek);
        assert_eq!(&frame[4..8], &[0, 0, 0, 4]);
        assert_eq!(frame[8], 0, "header v1: empty tagged fields");
        assert_eq!(&frame[9..11], &[0, 58]);
        let text = String::from_utf8_lossy(&frame);
        assert!(text.contains(SASL_REFUSAL), "{text}");
    }

    #[test]
    fn tagged_sections_are_skipped() {
        assert_eq!(skip_tagged(&[0], 0), Some(1));
        assert_eq!(skip_tagged(&[1, 0, 2, 9, 9, 7], 0), Some(5));
        assert_eq!(skip_tagged(&[1, 0, 5, 9], 0), None);
    }
}
