//! One client connection and its broker connection.
//!
//! States: waiting for the first request → connecting and authenticating (on the first
//! request that must reach a broker, never at accept) → forwarding ⇄ re-authenticating →
//! draining. Two halves run concurrently in one task:
//!
//! - requests (client → broker): each request's header is read into the connection's buffer
//!   (at most [`Limits::connection_buffer`](super::Limits) bytes) and admitted or refused
//!   from it alone ([`versions::admit`]); an admitted request gets the proxy's next
//!   correlation id written in place and an in-flight entry queued (none for Produce
//!   `acks=0`, which gets no response) *before* any of it is written, and its body is then
//!   forwarded as it arrives, chunk by chunk. Small requests that arrive together go out in
//!   one write. Re-authentication happens here, between requests: the half stops reading the
//!   client, sends SaslHandshake and SaslAuthenticate with its own correlation ids and waits
//!   for their answers, which the other half hands over.
//! - responses (broker → client): each frame is matched to the oldest in-flight entry
//!   (Kafka answers in request order), its correlation id set back to the client's, and
//!   forwarded as it arrives; only the responses that carry broker addresses, API versions
//!   or address-valued configurations are held whole and decoded, within the process-wide
//!   budget ([`super::limits`]).
//!
//! The in-flight queue is a bounded channel: a client that pipelines more than
//! [`Limits::max_in_flight`](super::Limits) requests, or that does not read its answers,
//! makes the proxy stop reading from it instead of buffering. When the requests half fails
//! (a framing error, a refused request), both halves close at once; when the client only
//! stops sending, the answers in flight are still delivered, within
//! [`DRAIN_AFTER_CLIENT_STOPPED`].
//!
//! A client whose broker connection cannot be opened (the broker down, refusing the proxy, or
//! backing off after that) gets its connection reset, as connecting to a down broker would be
//! refused, not an orderly close that some clients take for a misconfiguration (`reset`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, CreateDelegationTokenResponse, DescribeDelegationTokenResponse, DescribeQuorumResponse,
    ExpireDelegationTokenResponse, RenewDelegationTokenResponse, SaslAuthenticateResponse,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::io::{
    AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf,
};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::dial_gate::DialGate;
use super::frame::{self, FrameError};
use super::health::Readiness;
use super::limits::{
    Budget, BudgetError, DRAIN_AFTER_CLIENT_STOPPED, Limits, REWRITTEN_WRITE_TIMEOUT,
};
use super::log_limit::LogLimit;
use super::metrics::{AuthOutcome, ClientMistake, ProxyMetrics};
use super::nodes::Registry;
use super::rewrite::{self, RewriteError};
use super::sasl::{self, Conversation, Exchange, OwnRequest};
use super::upstream::{Dialer, Session};
use super::versions::{self, Admission, Handling};
use super::wire::{Io, Sequence, UpstreamError};
use crate::connection_slots::ConnectionSlot;

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

/// What a connection is handed by the accept loop that took it: what it opens broker
/// connections with, the node registry it looks brokers up in and records the brokers an
/// answer names with, what it counts and is bounded by, and the shutdown signal. Nothing of
/// the listeners' (the connection limit, the drain tracker, the addresses to bind) nor of the
/// proxy's own (its probe, its readiness checks).
pub(crate) struct ConnectionContext {
    pub dialer: Dialer,
    pub brokers: Registry,
    /// Backs off from a broker address that keeps failing, for all connections together.
    pub dial_gate: DialGate,
    /// Told whether the clients' broker connections open (readiness reports the last failure).
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<ProxyMetrics>,
    pub limits: Limits,
    pub max_frame: usize,
    /// Responses held whole, all connections together.
    pub budget: Budget,
    pub log_limit: LogLimit,
    pub shutdown: watch::Receiver<bool>,
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
    /// Close once everything before it is answered (a request the proxy does not forward).
    Close,
}

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error(transparent)]
    Bind(#[from] super::nodes::BindError),
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error(transparent)]
    Dial(#[from] super::dial_gate::DialRefused),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "no complete request header within {0:?} of connecting; closing (a Kafka client sends ApiVersions at once)"
    )]
    FirstRequestTimeout(Duration),
    #[error("{0}")]
    Protocol(String),
}

impl ConnError {
    /// The cause, for rate-limiting the log: one line per cause and interval, not one per
    /// connection.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Frame(FrameError::TlsClientHello) => "client tls",
            Self::Frame(FrameError::Http(_)) => "client http",
            Self::Frame(_) => "client framing",
            Self::Upstream(UpstreamError::Token(_)) => "token",
            Self::Upstream(UpstreamError::Refused { .. }) => "broker refused",
            Self::Upstream(UpstreamError::Connect { .. } | UpstreamError::Resolve { .. }) => {
                "broker connect"
            }
            Self::Upstream(UpstreamError::Tls { .. }) => "broker tls",
            Self::Upstream(_) => "broker",
            Self::Rewrite(_) => "rewrite",
            Self::Bind(_) => "bind",
            Self::Budget(_) => "budget",
            Self::Dial(_) => "dial backoff",
            Self::Io(_) => "io",
            Self::FirstRequestTimeout(_) => "first request timeout",
            Self::Protocol(_) => "protocol",
        }
    }
}

/// Logs `line` at WARN at most once per cause and interval (with the count suppressed since),
/// at DEBUG otherwise.
fn log_limited(ctx: &ConnectionContext, cause: &'static str, line: &str) {
    match ctx.log_limit.allow(cause) {
        Some(suppressed) => tracing::warn!(suppressed, "{line}"),
        None => tracing::debug!("{line}"),
    }
}

/// Serves one accepted client until either side closes.
pub(crate) async fn serve(
    ctx: Arc<ConnectionContext>,
    client: TcpStream,
    target: Target,
    slot: Arc<ConnectionSlot>,
) {
    let label = target.label();
    ctx.metrics.opened(&label);
    let peer = client
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let result = serve_inner(&ctx, client, target, &slot).await;
    ctx.metrics.closed(&label);
    match result {
        Ok(()) => {
            tracing::debug!(client = %peer, listener = %label, connection = slot.id, "connection closed")
        }
        Err(err) => {
            if let Some(suppressed) = ctx.log_limit.allow(err.cause()) {
                tracing::warn!(
                    client = %peer,
                    listener = %label,
                    connection = slot.id,
                    suppressed,
                    "connection closed: {err}"
                );
            } else {
                tracing::debug!(
                    client = %peer,
                    listener = %label,
                    connection = slot.id,
                    "connection closed: {err}"
                );
            }
        }
    }
}

async fn serve_inner(
    ctx: &ConnectionContext,
    client: TcpStream,
    target: Target,
    slot: &Arc<ConnectionSlot>,
) -> Result<(), ConnError> {
    let _ = client.set_nodelay(true);
    let (client_r, mut client_w) = client.into_split();
    let broker_unreachable = AtomicBool::new(false);
    let result = {
        let (tx, rx) = mpsc::channel(ctx.limits.max_in_flight);
        let (reader_tx, reader_rx) = oneshot::channel();
        let cap = ctx.limits.connection_buffer;
        let requests = Requests {
            ctx,
            target,
            client_r,
            buf: BytesMut::with_capacity(cap),
            cap,
            ready: 0,
            tx,
            reader_tx: Some(reader_tx),
            broker: None,
            slot,
            first: true,
            evicted: false,
            accepted: Instant::now(),
            shutdown: ctx.shutdown.clone(),
            broker_unreachable: &broker_unreachable,
        }
        .run();
        let responses = responses(ctx, reader_rx, &mut client_w, rx, slot);
        tokio::pin!(requests, responses);
        tokio::select! {
            r = &mut requests => match r {
                // The client stopped sending (half-close, shutdown, a refused request): the
                // responses half delivers what is in flight, then closes.
                Ok(()) => match tokio::time::timeout(DRAIN_AFTER_CLIENT_STOPPED, responses).await {
                    Ok(drained) => drained,
                    Err(_) => Err(ConnError::Protocol(format!(
                        "answers still outstanding {DRAIN_AFTER_CLIENT_STOPPED:?} after the client stopped sending; closing"
                    ))),
                },
                // The request stream is broken: close both halves now, dropping what is queued.
                Err(e) => Err(e),
            },
            r = &mut responses => r,
        }
        // Both halves' futures, and with them the client's reading half, are dropped here.
    };
    if broker_unreachable.load(Ordering::Relaxed) {
        reset(client_w);
    }
    result
}

/// Closes the client's connection with a reset instead of a FIN, as a client connecting to a
/// broker that is down would be refused. The proxy accepts before it knows whether the broker
/// can be reached; a client that reads an orderly close (EOF) where it awaited its first
/// answer may take it for a TLS or SASL misconfiguration and not retry (franz-go fails the
/// records it was producing), while a reset is a network error every client retries after a
/// metadata refresh. The client's reading half is already dropped, so `forget` closes the
/// socket without shutting down its write side first; `SO_LINGER` 0 makes the close a reset.
fn reset(client_w: tokio::net::tcp::OwnedWriteHalf) {
    let stream: &TcpStream = client_w.as_ref();
    #[allow(deprecated)] // Deprecated for a non-zero linger, which blocks the close; 0 does not.
    let _ = stream.set_linger(Some(Duration::ZERO));
    client_w.forget();
}

/// Connects and authenticates to the broker this listener stands for.
async fn open_upstream(
    ctx: &ConnectionContext,
    target: Target,
    seq: &mut Sequence,
) -> Result<(Box<dyn Io>, String, Session), ConnError> {
    let candidates = match target {
        Target::Bootstrap => ctx.dialer.bootstrap.clone(),
        Target::Node(id) => match ctx.brokers.address(id) {
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
        ctx.dial_gate.admit(&host, port).await?;
        match ctx.dialer.open(&host, port, seq).await {
            Ok((stream, session)) => {
                ctx.dial_gate.succeeded(&host, port);
                ctx.readiness.upstream_succeeded();
                return Ok((stream, host, session));
            }
            Err(e) => {
                tracing::debug!("broker {host}:{port}: {e}");
                ctx.dial_gate.failed(&host, port, &e);
                last = Some(e);
            }
        }
    }
    // No candidate at all cannot happen: the builder refuses an empty bootstrap list.
    let Some(err) = last else {
        return Err(ConnError::Protocol(
            "no bootstrap servers configured".to_owned(),
        ));
    };
    ctx.readiness.upstream_failed(err.clone());
    Err(ConnError::Upstream(err))
}

/// When to re-authenticate at the latest: at a random 85–95 % of the session, as
/// kafka-clients does (KIP-368), so connections opened together do not all re-authenticate
/// at once.
fn reauth_deadline(lifetime_ms: i64) -> Option<Instant> {
    (lifetime_ms > 0).then(|| {
        let fraction = 0.85 + 0.10 * fastrand::f64();
        Instant::now() + Duration::from_millis((lifetime_ms as f64 * fraction) as u64)
    })
}

/// From when a re-authentication is done before the next request rather than at the
/// deadline: half the session (see `Requests::reauthenticate_if_due`).
fn early_reauth_from(lifetime_ms: i64) -> Option<Instant> {
    (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis((lifetime_ms / 2) as u64))
}

/// The authenticated broker connection's writing half and what re-authentication needs.
struct Broker {
    w: WriteHalf<Box<dyn Io>>,
    host: String,
    session: Session,
    seq: Sequence,
    reauth_at: Option<Instant>,
    early_from: Option<Instant>,
}

/// Client → broker.
struct Requests<'a, R> {
    ctx: &'a ConnectionContext,
    target: Target,
    client_r: R,
    /// The client's bytes not yet written to the broker: `[..ready]` are whole requests
    /// admitted and rewritten, the rest the start of the next one. Never above `cap`.
    buf: BytesMut,
    cap: usize,
    ready: usize,
    tx: mpsc::Sender<InFlight>,
    /// Hands the broker connection's reading half to the responses half once it is open.
    reader_tx: Option<oneshot::Sender<ReadHalf<Box<dyn Io>>>>,
    broker: Option<Broker>,
    slot: &'a Arc<ConnectionSlot>,
    /// No request header has been read yet.
    first: bool,
    /// Chosen to make room at the connection limit while a request was in flight.
    evicted: bool,
    accepted: Instant,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Set when the first broker connection could not be opened: the client's connection is
    /// then reset rather than closed (see `reset`).
    broker_unreachable: &'a AtomicBool,
}

impl<R: AsyncRead + Unpin> Requests<'_, R> {
    async fn run(mut self) -> Result<(), ConnError> {
        loop {
            let rest = &self.buf[self.ready..];
            if self.first && rest.len() >= 4 {
                if let Some(mistake) = frame::classify_first_bytes(rest) {
                    self.ctx.metrics.mistake(match mistake {
                        FrameError::TlsClientHello => ClientMistake::TlsOnPlaintext,
                        _ => ClientMistake::Http,
                    });
                    return Err(mistake.into());
                }
            }
            let total = match frame::declared_len(rest, self.ctx.max_frame) {
                Ok(Some(total)) => total,
                Ok(None) => {
                    if !self.fill().await? {
                        return self.stop().await;
                    }
                    continue;
                }
                Err(e) => {
                    self.ctx.metrics.mistake(ClientMistake::Framing);
                    return Err(e.into());
                }
            };
            let head = total.min(self.cap);
            if rest.len() < head {
                if !self.fill().await? {
                    return self.stop().await;
                }
                continue;
            }
            let peek = match frame::peek_request(&rest[..head]) {
                Ok(peek) => peek,
                Err(e) => {
                    self.ctx.metrics.mistake(ClientMistake::Framing);
                    return Err(e.into());
                }
            };
            self.first = false;
            self.ctx.metrics.request(peek.api_key);
            let admission = versions::admit(peek.api_key, peek.api_version);
            match admission {
                Admission::Forward => self.forward(peek, total, head).await?,
                Admission::ApiVersionsTooNew => {
                    // KIP-511: answer UNSUPPORTED_VERSION at v0 ourselves; the broker might
                    // answer at a version the proxy cannot decode.
                    self.skip(total).await?;
                    if !self.answer(admission, peek, false).await? {
                        return self.stop().await;
                    }
                }
                Admission::Sasl => {
                    self.ctx.metrics.mistake(ClientMistake::Sasl);
                    tracing::warn!(
                        "a client sent {} (its SASL credentials are not forwarded): {SASL_REFUSAL}",
                        if peek.api_key == ApiKey::SaslHandshake as i16 {
                            "SaslHandshake"
                        } else {
                            "SaslAuthenticate"
                        }
                    );
                    self.skip(total).await?;
                    self.answer(admission, peek, true).await?;
                    return self.stop().await;
                }
                Admission::Hidden(key) => {
                    self.ctx.metrics.mistake(ClientMistake::Hidden);
                    let line = format!(
                        "a client sent {key:?} v{}, which the proxy answers itself with an error: {}",
                        peek.api_version,
                        hidden_reason(key)
                    );
                    log_limited(self.ctx, "hidden key", &line);
                    self.skip(total).await?;
                    if !self.answer(admission, peek, false).await? {
                        return self.stop().await;
                    }
                }
                Admission::NotOffered => {
                    self.ctx.metrics.mistake(ClientMistake::NotOffered);
                    let line = format!(
                        "a client sent API key {} v{}, which the proxy does not offer (unknown to it, or a version it cannot check for broker addresses); not forwarded, closing the connection as a broker does",
                        describe_key(peek.api_key),
                        peek.api_version
                    );
                    log_limited(self.ctx, "key not offered", &line);
                    self.queue(InFlight::Close).await?;
                    return self.stop().await;
                }
            }
        }
    }

    /// Queues the proxy's own answer to a request it does not forward (then a close if
    /// `close`); `false` when none could be made and the connection is to close instead.
    async fn answer(
        &mut self,
        admission: Admission,
        peek: frame::RequestPeek,
        close: bool,
    ) -> Result<bool, ConnError> {
        match local_answer(admission, peek) {
            Some(frame) => {
                self.queue(InFlight::Local { frame, close }).await?;
                Ok(!close)
            }
            None => {
                self.queue(InFlight::Close).await?;
                Ok(false)
            }
        }
    }

    /// The client stopped sending, or must stop: whole requests still buffered go to the
    /// broker, whose answers the responses half delivers.
    async fn stop(&mut self) -> Result<(), ConnError> {
        self.flush().await?;
        Ok(())
    }

    /// Forwards one admitted request whose first `head` bytes are buffered at `ready`.
    async fn forward(
        &mut self,
        peek: frame::RequestPeek,
        total: usize,
        head: usize,
    ) -> Result<(), ConnError> {
        self.open_broker().await?;
        self.reauthenticate_if_due().await?;
        let start = self.ready;
        let no_response = if peek.api_key == frame::PRODUCE {
            match frame::produce_acks(&self.buf[start..start + head]) {
                Some(acks) => acks == 0,
                None if head < total => {
                    return Err(ConnError::Protocol(format!(
                        "a Produce request whose header (client id, transactional id) does not fit the {}-byte connection buffer; raise the connection buffer bytes (ProxyBuilder::with_connection_buffer_bytes)",
                        self.cap
                    )));
                }
                // Cut short: the broker will say what is wrong with it.
                None => false,
            }
        } else {
            false
        };
        let broker = self.broker.as_mut().expect("opened above");
        let proxy_id = broker.seq.next_id();
        frame::set_request_correlation_id(&mut self.buf[start..], proxy_id);
        if !no_response {
            // Queued before any byte of the request is written, so its answer always finds
            // its entry.
            self.queue(InFlight::Client {
                proxy_id,
                client_id: peek.correlation_id,
                api_key: peek.api_key,
                api_version: peek.api_version,
            })
            .await?;
        }
        let buffered = self.buf.len() - self.ready;
        if buffered >= total {
            self.ready += total;
            return Ok(());
        }
        // The header is in, the body is still arriving: forward it as it comes.
        self.ready = self.buf.len();
        self.flush().await?;
        let mut left = total - buffered;
        while left > 0 {
            let read = tokio::time::timeout(self.ctx.limits.idle_timeout, self.read_client());
            let n = match read.await {
                Ok(n) => n?,
                Err(_) => {
                    return Err(ConnError::Protocol(format!(
                        "no byte of a request's body for {:?}; closing",
                        self.ctx.limits.idle_timeout
                    )));
                }
            };
            if n == 0 {
                return Err(ConnError::Protocol(format!(
                    "the client closed in the middle of a {total}-byte request"
                )));
            }
            let n = left.min(self.buf.len());
            self.ready = n;
            self.flush().await?;
            left -= n;
        }
        Ok(())
    }

    /// Discards a request of `total` bytes at `ready` (answered locally): what is buffered,
    /// then the rest as it arrives.
    async fn skip(&mut self, total: usize) -> Result<(), ConnError> {
        self.flush().await?;
        let mut left = total;
        loop {
            let n = left.min(self.buf.len());
            self.buf.advance(n);
            left -= n;
            if left == 0 {
                return Ok(());
            }
            if self.read_client().await? == 0 {
                return Err(ConnError::Protocol(format!(
                    "the client closed in the middle of a {total}-byte request"
                )));
            }
        }
    }

    /// Reads what the client sent into the buffer's free space (the buffer never grows).
    async fn read_client(&mut self) -> std::io::Result<usize> {
        let spare = self.cap - self.buf.len();
        let n = read_limited(&mut self.client_r, &mut self.buf, spare).await?;
        if n > 0 {
            self.slot.touch();
        }
        Ok(n)
    }

    /// Waits for more client bytes; `false` when the connection is to end (the client
    /// closed, the proxy shuts down, or the connection is idle and timed out or evicted).
    /// Re-authentication falls due here, between requests.
    async fn fill(&mut self) -> Result<bool, ConnError> {
        self.flush().await?;
        loop {
            if self.evicted && self.slot.in_flight.load(Ordering::Acquire) == 0 {
                tracing::debug!("closed an idle connection to make room at the connection limit");
                return Ok(false);
            }
            let reauth_at = self.broker.as_ref().and_then(|b| b.reauth_at);
            let limits = &self.ctx.limits;
            let deadline = if self.first {
                self.accepted + limits.first_request_timeout
            } else {
                let idle = Duration::from_millis(self.slot.idle_ms());
                Instant::now() + limits.idle_timeout.saturating_sub(idle)
            };
            let spare = self.cap - self.buf.len();
            let event = tokio::select! {
                read = read_limited(&mut self.client_r, &mut self.buf, spare) => Event::Read(read),
                () = sleep_until(reauth_at), if reauth_at.is_some() => Event::Reauthenticate,
                () = tokio::time::sleep_until(deadline) => Event::Timer,
                () = self.slot.evict.notified() => Event::Evict,
                _ = self.shutdown.wait_for(|stop| *stop) => Event::Shutdown,
            };
            match event {
                Event::Read(read) => {
                    if read? == 0 {
                        if !self.buf.is_empty() {
                            tracing::debug!(
                                bytes = self.buf.len(),
                                "client closed in the middle of a request"
                            );
                        }
                        // Half-close: the broker still answers what is in flight.
                        if let Some(broker) = &mut self.broker {
                            let _ = broker.w.shutdown().await;
                        }
                        return Ok(false);
                    }
                    self.slot.touch();
                    return Ok(true);
                }
                Event::Reauthenticate => self.reauthenticate("deadline").await?,
                Event::Timer => {
                    if self.first {
                        return Err(ConnError::FirstRequestTimeout(limits.first_request_timeout));
                    }
                    if self.slot.in_flight.load(Ordering::Acquire) == 0
                        && Duration::from_millis(self.slot.idle_ms()) >= limits.idle_timeout
                    {
                        tracing::debug!(idle = ?limits.idle_timeout, "closed an idle connection");
                        return Ok(false);
                    }
                }
                Event::Evict => self.evicted = true,
                // Drain: stop reading; the responses half answers what is in flight.
                Event::Shutdown => return Ok(false),
            }
        }
    }

    /// Opens the broker connection on the first request that needs it.
    async fn open_broker(&mut self) -> Result<(), ConnError> {
        if self.broker.is_some() {
            return Ok(());
        }
        let mut seq = Sequence::default();
        let (stream, host, session) = open_upstream(self.ctx, self.target, &mut seq)
            .await
            .inspect_err(|_| self.broker_unreachable.store(true, Ordering::Relaxed))?;
        let (r, w) = tokio::io::split(stream);
        if let Some(reader_tx) = self.reader_tx.take() {
            reader_tx.send(r).map_err(|_| {
                ConnError::Protocol(
                    "the client connection closed while the proxy authenticated".to_owned(),
                )
            })?;
        }
        // Per connection (the slot's id, also on its "connection closed" line with the
        // client's address), so each session's re-authentications can be followed.
        tracing::debug!(
            connection = self.slot.id,
            broker = %host,
            session_lifetime_ms = session.lifetime_ms,
            "upstream connection authenticated"
        );
        self.broker = Some(Broker {
            w,
            host,
            session,
            seq,
            reauth_at: reauth_deadline(session.lifetime_ms),
            early_from: early_reauth_from(session.lifetime_ms),
        });
        Ok(())
    }

    /// Writes the `ready` prefix of the buffer to the broker.
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.ready == 0 {
            return Ok(());
        }
        let broker = self
            .broker
            .as_mut()
            .expect("requests are buffered as ready only once the broker connection is open");
        broker.w.write_all(&self.buf[..self.ready]).await?;
        self.ctx
            .metrics
            .bytes_to_broker
            .fetch_add(self.ready as u64, Ordering::Relaxed);
        self.buf.advance(self.ready);
        self.ready = 0;
        Ok(())
    }

    /// Queues an in-flight entry. When the queue is full, the requests already admitted are
    /// written first (their entries are queued), so the broker can answer and make room.
    async fn queue(&mut self, entry: InFlight) -> Result<(), ConnError> {
        if self.tx.capacity() == 0 {
            self.flush().await?;
        }
        self.slot.in_flight.fetch_add(1, Ordering::AcqRel);
        self.tx.send(entry).await.map_err(|_| {
            ConnError::Protocol("the connection closed while a request was queued".to_owned())
        })
    }

    /// Past half the session, re-authenticates before forwarding another request: at once
    /// when nothing is in flight, else once what is in flight is answered (nothing new is
    /// written behind it meanwhile). The broker reads requests one at a time, each after the
    /// previous answer is sent, and closes the connection on one read after the session's
    /// end; a re-authentication queued only at the deadline behind large answers read slowly
    /// would come too late.
    async fn reauthenticate_if_due(&mut self) -> Result<(), ConnError> {
        let due = self
            .broker
            .as_ref()
            .and_then(|b| b.early_from)
            .is_some_and(|from| Instant::now() >= from);
        if due {
            self.flush().await?;
            self.slot.wait_drained().await;
            self.reauthenticate("early").await?;
        }
        Ok(())
    }

    /// KIP-368 re-authentication on the same connection, between client requests. `due`
    /// says why now, for the log: `deadline` (85–95 % of the session, the connection idle
    /// until then) or `early` (a request past half the session).
    async fn reauthenticate(&mut self, due: &'static str) -> Result<(), ConnError> {
        self.flush().await?;
        let ctx = self.ctx;
        let broker = self
            .broker
            .as_mut()
            .expect("re-authentication needs a broker");
        let session = broker.session;
        let host = broker.host.clone();
        let result = async {
            let token = ctx
                .dialer
                .provider
                .token()
                .await
                .map_err(UpstreamError::from)?;
            let conversation =
                Conversation::new(ctx.dialer.upstream.sasl, &host, session.sasl, &token);
            let mut queue = Queue {
                tx: &self.tx,
                slot: self.slot,
                up_w: &mut broker.w,
            };
            sasl::converse(&mut queue, conversation, &mut broker.seq).await
        }
        .await;
        match &result {
            Ok(lifetime) => {
                ctx.metrics.auth(true, AuthOutcome::Ok);
                tracing::debug!(
                    connection = self.slot.id,
                    broker = %host,
                    session_lifetime_ms = lifetime,
                    due,
                    "re-authenticated"
                );
                broker.reauth_at = reauth_deadline(*lifetime);
                broker.early_from = early_reauth_from(*lifetime);
            }
            Err(ConnError::Upstream(UpstreamError::Refused { .. })) => {
                ctx.metrics.auth(true, AuthOutcome::Refused)
            }
            Err(_) => ctx.metrics.auth(true, AuthOutcome::Failed),
        }
        result.map(|_| ())
    }
}

/// What ended a wait for client bytes.
enum Event {
    Read(std::io::Result<usize>),
    Reauthenticate,
    Timer,
    Evict,
    Shutdown,
}

/// Reads at most `spare` bytes into `buf`'s free space; the buffer is reserved to exactly
/// that, so it never grows past the connection's cap (its front is reclaimed instead).
async fn read_limited(
    r: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    spare: usize,
) -> std::io::Result<usize> {
    if spare == 0 {
        return Err(std::io::Error::other("read with a full buffer"));
    }
    buf.reserve(spare);
    r.read_buf(&mut (&mut *buf).limit(spare)).await
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The connection's in-flight queue as an [`Exchange`]: each of the proxy's own requests is
/// queued as an in-flight entry and written behind the client's, and its response frame is
/// handed over by the responses half once the responses queued before it are delivered.
struct Queue<'q, W> {
    tx: &'q mpsc::Sender<InFlight>,
    slot: &'q ConnectionSlot,
    up_w: &'q mut W,
}

impl<W: AsyncWrite + Unpin + Send> Exchange for Queue<'_, W> {
    type Error = ConnError;

    async fn exchange(&mut self, request: &OwnRequest) -> Result<Bytes, ConnError> {
        let closed = || {
            ConnError::Protocol("the broker connection closed during re-authentication".to_owned())
        };
        let (reply, answer) = oneshot::channel();
        self.slot.in_flight.fetch_add(1, Ordering::AcqRel);
        self.tx
            .send(InFlight::Own {
                proxy_id: request.id,
                reply,
            })
            .await
            .map_err(|_| closed())?;
        self.up_w.write_all(&request.frame).await?;
        answer.await.map_err(|_| closed())
    }
}

/// Reads broker bytes into the free space of `buf`, which never grows past `cap`.
async fn read_broker(
    up_r: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    cap: usize,
) -> std::io::Result<usize> {
    read_limited(up_r, buf, cap.saturating_sub(buf.len())).await
}

/// Reads broker bytes while no response is due, to notice a close (never completes before
/// the broker connection is open).
async fn watch_broker(
    up_r: Option<&mut ReadHalf<Box<dyn Io>>>,
    buf: &mut BytesMut,
    cap: usize,
) -> std::io::Result<usize> {
    match up_r {
        Some(up_r) => read_broker(up_r, buf, cap).await,
        None => std::future::pending().await,
    }
}

fn cut_short() -> ConnError {
    ConnError::Protocol("the broker closed the connection in the middle of a response".to_owned())
}

/// Broker → client.
async fn responses(
    ctx: &ConnectionContext,
    reader: oneshot::Receiver<ReadHalf<Box<dyn Io>>>,
    mut client_w: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<InFlight>,
    slot: &ConnectionSlot,
) -> Result<(), ConnError> {
    let cap = ctx.limits.connection_buffer;
    let mut buf = BytesMut::with_capacity(cap);
    let mut reader = Some(reader);
    let mut up_r: Option<ReadHalf<Box<dyn Io>>> = None;
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
                read = watch_broker(up_r.as_mut(), &mut buf, cap) => {
                    if read? == 0 {
                        let _ = client_w.shutdown().await;
                        return Err(ConnError::Protocol("the broker closed the connection".to_owned()));
                    }
                    if rx.is_empty() {
                        return Err(ConnError::Protocol("the broker sent a response to no request".to_owned()));
                    }
                }
            }
        };
        let (proxy_id, client) = match entry {
            InFlight::Local { frame, close } => {
                write_client(ctx, &mut client_w, &frame).await?;
                if close {
                    let _ = client_w.shutdown().await;
                    return Ok(());
                }
                done(slot);
                continue;
            }
            InFlight::Close => {
                let _ = client_w.shutdown().await;
                return Ok(());
            }
            InFlight::Client {
                proxy_id,
                client_id,
                api_key,
                api_version,
            } => (proxy_id, Some((client_id, api_key, api_version))),
            InFlight::Own { proxy_id, reply } => {
                let up = broker_reader(&mut up_r, &mut reader).await?;
                let (frame, _held) = read_whole(ctx, up, &mut buf, &SaslAnswer).await?;
                check_correlation(&frame, proxy_id)?;
                let _ = reply.send(frame.freeze());
                done(slot);
                continue;
            }
        };
        let (client_id, api_key, api_version) = client.expect("a client entry");
        let up = broker_reader(&mut up_r, &mut reader).await?;
        match versions::handling(api_key, api_version) {
            Handling::Opaque => {
                forward_opaque(ctx, up, &mut client_w, &mut buf, proxy_id, client_id).await?;
            }
            Handling::Rewrite(key) => {
                let (frame, _held) = read_whole(ctx, up, &mut buf, &key).await?;
                check_correlation(&frame, proxy_id)?;
                let out = rewritten(ctx, key, api_version, client_id, frame).await?;
                match tokio::time::timeout(
                    REWRITTEN_WRITE_TIMEOUT,
                    write_client(ctx, &mut client_w, &out),
                )
                .await
                {
                    Ok(written) => written?,
                    Err(_) => {
                        return Err(ConnError::Protocol(format!(
                            "the client did not read a {}-byte {key:?} answer within {REWRITTEN_WRITE_TIMEOUT:?}",
                            out.len()
                        )));
                    }
                }
            }
            Handling::Undecodable => {
                // Admission refuses these before they reach a broker.
                return Err(ConnError::Protocol(format!(
                    "the client sent {} v{api_version}, a version the proxy did not offer and cannot rewrite; closing rather than risk leaking a broker address",
                    describe_key(api_key)
                )));
            }
        }
        done(slot);
    }
}

/// One in-flight entry answered.
fn done(slot: &ConnectionSlot) {
    if slot.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
        slot.drained.notify_waiters();
    }
    slot.touch();
}

/// The broker connection's reading half, received from the requests half the first time a
/// response is due (it is sent before the first entry that needs it is queued).
async fn broker_reader<'r>(
    up_r: &'r mut Option<ReadHalf<Box<dyn Io>>>,
    reader: &mut Option<oneshot::Receiver<ReadHalf<Box<dyn Io>>>>,
) -> Result<&'r mut ReadHalf<Box<dyn Io>>, ConnError> {
    if up_r.is_none() {
        let rx = reader.take().ok_or_else(cut_short)?;
        *up_r = Some(rx.await.map_err(|_| cut_short())?);
    }
    Ok(up_r.as_mut().expect("set above"))
}

fn check_correlation(frame: &[u8], proxy_id: i32) -> Result<(), ConnError> {
    let got = frame::response_correlation_id(frame)?;
    if got != proxy_id {
        return Err(ConnError::Protocol(format!(
            "the broker answered correlation id {got} where {proxy_id} was due"
        )));
    }
    Ok(())
}

async fn write_client(
    ctx: &ConnectionContext,
    client_w: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
) -> std::io::Result<()> {
    client_w.write_all(bytes).await?;
    ctx.metrics
        .bytes_to_client
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Forwards a response the proxy does not rewrite as it arrives (cut-through): the
/// correlation id is set back to the client's once the header is in, and the rest follows
/// chunk by chunk through the connection's buffer. A Fetch response of many megabytes is
/// then neither held in memory nor delayed until its last byte has crossed the broker
/// connection.
async fn forward_opaque(
    ctx: &ConnectionContext,
    up_r: &mut (impl AsyncRead + Unpin),
    client_w: &mut (impl AsyncWrite + Unpin),
    buf: &mut BytesMut,
    proxy_id: i32,
    client_id: i32,
) -> Result<(), ConnError> {
    let cap = ctx.limits.connection_buffer;
    while buf.len() < frame::SIZE_LEN + 4 {
        if read_broker(up_r, buf, cap).await? == 0 {
            return Err(cut_short());
        }
    }
    let total = frame::declared_len(buf, ctx.max_frame)?.expect("the size prefix is in");
    check_correlation(&buf[..total.min(buf.len())], proxy_id)?;
    frame::set_response_correlation_id(buf, client_id);
    let mut left = total;
    loop {
        let n = left.min(buf.len());
        if n > 0 {
            write_client(ctx, client_w, &buf[..n]).await?;
            buf.advance(n);
            left -= n;
        }
        if left == 0 {
            return Ok(());
        }
        if read_broker(up_r, buf, cap).await? == 0 {
            return Err(cut_short());
        }
    }
}

/// Names the proxy's own SASL answers in [`read_whole`]'s error.
struct SaslAnswer;

impl std::fmt::Debug for SaslAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SASL")
    }
}

/// Reads one whole response frame (the buffer may hold its start) into its own allocation,
/// within the size limit and the process-wide budget, which stays held until the returned
/// permit is dropped.
async fn read_whole(
    ctx: &ConnectionContext,
    up_r: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    what: &(dyn std::fmt::Debug + Sync),
) -> Result<(BytesMut, OwnedSemaphorePermit), ConnError> {
    let cap = ctx.limits.connection_buffer;
    while buf.len() < frame::SIZE_LEN {
        if read_broker(up_r, buf, cap).await? == 0 {
            return Err(cut_short());
        }
    }
    let total = frame::declared_len(buf, ctx.max_frame)?.expect("the size prefix is in");
    let limit = ctx.limits.max_rewritten_response;
    if total > limit {
        return Err(BudgetError::TooLarge {
            what: format!("{what:?}"),
            size: total,
            limit,
        }
        .into());
    }
    let held = ctx.budget.hold(total).await;
    let mut frame = BytesMut::with_capacity(total);
    let take = total.min(buf.len());
    frame.extend_from_slice(&buf[..take]);
    buf.advance(take);
    while frame.len() < total {
        let want = total - frame.len();
        if up_r.read_buf(&mut (&mut frame).limit(want)).await? == 0 {
            return Err(cut_short());
        }
    }
    Ok((frame, held))
}

/// Decodes, rewrites and re-encodes one response; makes sure every broker it names has a
/// local listener before the client can learn its port.
async fn rewritten(
    ctx: &ConnectionContext,
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
    let rewritten = rewrite::rewrite(key, version, body, ctx.brokers.ports())?;
    ctx.brokers.observe(&rewritten.brokers)?;
    ctx.metrics.rewrite(key, rewritten.brokers.len());
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

/// The answer the proxy makes itself for a request it does not forward, if it makes one
/// (`NotOffered` gets none: the connection closes).
pub(crate) fn local_answer(admission: Admission, peek: frame::RequestPeek) -> Option<Bytes> {
    match admission {
        Admission::Forward | Admission::NotOffered => None,
        Admission::ApiVersionsTooNew => unsupported_api_versions(peek.correlation_id),
        Admission::Sasl => sasl_refusal(peek),
        Admission::Hidden(key) => hidden_refusal(key, peek),
    }
}

/// `ApiKey` name, or the number for keys the pinned crate does not know.
fn describe_key(api_key: i16) -> String {
    ApiKey::try_from(api_key).map_or_else(|()| api_key.to_string(), |k| format!("{k:?}"))
}

/// Why a hidden key is answered locally.
fn hidden_reason(key: ApiKey) -> &'static str {
    match key {
        ApiKey::DescribeQuorum => {
            "it would name the controllers' listener addresses, which the proxy does not front"
        }
        _ => "delegation tokens would be issued to (or describe) the proxy's own Google identity",
    }
}

/// The local answer to a hidden key: the key's own response with an error code.
fn hidden_refusal(key: ApiKey, peek: frame::RequestPeek) -> Option<Bytes> {
    let version = peek.api_version;
    let id = peek.correlation_id;
    let not_allowed = ResponseError::DelegationTokenRequestNotAllowed.code();
    match key {
        ApiKey::DescribeQuorum => {
            let mut body = DescribeQuorumResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
            if version >= 2 {
                body = body.with_error_message(Some(StrBytes::from_static_str(
                    "the gcp-kafka-auth-handler proxy does not forward DescribeQuorum",
                )));
            }
            response_frame(key, version, id, &body)
        }
        ApiKey::CreateDelegationToken => response_frame(
            key,
            version,
            id,
            &CreateDelegationTokenResponse::default().with_error_code(not_allowed),
        ),
        ApiKey::RenewDelegationToken => response_frame(
            key,
            version,
            id,
            &RenewDelegationTokenResponse::default().with_error_code(not_allowed),
        ),
        ApiKey::ExpireDelegationToken => response_frame(
            key,
            version,
            id,
            &ExpireDelegationTokenResponse::default().with_error_code(not_allowed),
        ),
        _ => response_frame(
            ApiKey::DescribeDelegationToken,
            version,
            id,
            &DescribeDelegationTokenResponse::default().with_error_code(not_allowed),
        ),
    }
}

/// A response frame: size, header (v0 or v1 with no tagged fields), body.
fn response_frame(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &impl Encodable,
) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(64);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&correlation_id.to_be_bytes());
    if key.response_header_version(version) >= 1 {
        out.extend_from_slice(&[0]);
    }
    // Fails only at a version the message does not have, which admission rules out; never
    // a panic on a client's input (a release build aborts on one), the caller closes instead.
    body.encode(&mut out, version).ok()?;
    let size = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Some(out.freeze())
}

/// The answer to a client's SaslHandshake or SaslAuthenticate.
fn sasl_refusal(peek: frame::RequestPeek) -> Option<Bytes> {
    if peek.api_key == ApiKey::SaslHandshake as i16 {
        // UNSUPPORTED_SASL_MECHANISM. SaslHandshake has no error message, but clients print
        // the mechanisms the broker offers ("enabled mechanisms are [...]", librdkafka's
        // "broker's supported mechanisms: ..."): the ones offered are the fix, in parts that
        // fit librdkafka's budget (`versions::SASL_HINT_MECHANISMS`), so the client's own
        // error says it, not only the proxy's log.
        let version = peek.api_version.clamp(0, 1);
        let body = SaslHandshakeResponse::default()
            .with_error_code(ResponseError::UnsupportedSaslMechanism.code())
            .with_mechanisms(
                versions::SASL_HINT_MECHANISMS
                    .map(StrBytes::from_static_str)
                    .into(),
            );
        response_frame(ApiKey::SaslHandshake, version, peek.correlation_id, &body)
    } else {
        let version = peek.api_version.clamp(0, 2);
        let body = SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
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
fn unsupported_api_versions(correlation_id: i32) -> Option<Bytes> {
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
        let frame = unsupported_api_versions(9).unwrap();
        let unsupported = ResponseError::UnsupportedVersion.code().to_be_bytes();
        assert_eq!(
            &frame[..],
            &[
                0,
                0,
                0,
                16, // size
                0,
                0,
                0,
                9, // correlation id
                unsupported[0],
                unsupported[1],
                0,
                0,
                0,
                1, // one key
                0,
                18,
                0,
                0,
                0,
                4, // ApiVersions 0..=4
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
        let frame = sasl_refusal(peek).unwrap();
        assert_eq!(&frame[4..8], &[0, 0, 0, 4]);
        assert_eq!(frame[8], 0, "header v1: empty tagged fields");
        assert_eq!(
            frame[9..11],
            ResponseError::SaslAuthenticationFailed.code().to_be_bytes()
        );
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
