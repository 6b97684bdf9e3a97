//! Serving the endpoint on one or more listeners (by default both loopback families, see
//! [`bind_loopback`]), with connection limits, until a shutdown signal.
//!
//! `axum::serve` does not expose hyper's connection settings, so this is a small accept loop
//! over hyper's HTTP/1 server (the only protocol Kafka clients speak to a token endpoint):
//!
//! - at most [`Limits::max_connections`] connections at once: at the limit the loop accepts
//!   one more, closes the connection idle longest (no request in flight) to make room for it,
//!   and leaves the rest in the kernel's backlog instead of refusing them. So idle keep-alive
//!   connections, however many one process opens, cannot keep a new request waiting; only
//!   connections with a request in flight hold their slot, for at most the request deadline;
//! - request heads larger than [`Limits::max_header_bytes`] are refused by hyper (431);
//! - a client must send a complete request head within [`Limits::header_read_timeout`]
//!   (slowloris). hyper starts that timer whenever it waits for a head, on a new connection
//!   and between keep-alive requests, so it is also the idle timeout of a connection;
//! - a request must be answered within [`Limits::request_deadline`] (503
//!   `temporarily_unavailable` otherwise), which also bounds a slow request body.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::connection_slots::{Connections, MAKE_ROOM_RETRY};
use crate::endpoint::EndpointError;

/// Pause after a failed `accept` (out of file descriptors and the like): long enough not to
/// spin on an error that persists, short enough that connections resume at once when it clears.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Limits on what one client can hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; at the limit the longest-idle one is closed for each new
    /// one, and more wait in the listen backlog while all have a request in flight. Default 2048.
    pub max_connections: usize,
    /// Largest request head (request line and headers) in bytes. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Time to send a complete request head, and the longest a kept-alive connection may sit
    /// idle. Default 10 s.
    pub header_read_timeout: Duration,
    /// Time from a request's head to its response. Default 18 s: more than the 15 s a request
    /// may wait for a token being fetched, less than librdkafka's 20 s per-attempt timeout, so
    /// clients get an OAuth2 answer rather than a timeout of their own.
    pub request_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 2048,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            request_deadline: Duration::from_secs(18),
        }
    }
}

/// hyper refuses a read buffer smaller than this.
const MIN_HEADER_BYTES: usize = 8192;

/// Binds `127.0.0.1:port` and `[::1]:port`: the default, so that no other local process can
/// take the half of `localhost` the sidecar does not hold. Clients that try `::1` first for
/// `localhost` (Python, Go, Java with `java.net.preferIPv6Addresses`) would otherwise send
/// their client secret to a process that bound `[::1]:port` and accept its forged token.
///
/// Port 0 picks a port free on both: IPv4 is bound first with port 0, then IPv6 on the port
/// it got, retried with a new port a few times if that one is taken on IPv6. A fixed port
/// taken on either family is an error: half a sidecar is the squatting this prevents. A host
/// without IPv6 (the `::1` bind fails with `EADDRNOTAVAIL` or `EAFNOSUPPORT`) gets IPv4 alone,
/// logged at info. The IPv6 socket has `IPV6_V6ONLY` set.
pub async fn bind_loopback(port: u16) -> io::Result<Vec<TcpListener>> {
    const ATTEMPTS: usize = 8;
    for _ in 0..ATTEMPTS {
        let v4 = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| annotate_bind_error(e, SocketAddr::from((Ipv4Addr::LOCALHOST, port))))?;
        let chosen = v4.local_addr()?.port();
        let v6_addr = SocketAddr::from((Ipv6Addr::LOCALHOST, chosen));
        match bind_listener(v6_addr) {
            Ok(v6) => return Ok(vec![v4, v6]),
            Err(e) if no_ipv6(&e) => {
                tracing::info!(error = %e, "no IPv6 loopback on this host; listening on 127.0.0.1 only");
                return Ok(vec![v4]);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && port == 0 => continue,
            Err(e) => return Err(annotate_bind_error(e, v6_addr)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no port was free on both 127.0.0.1 and ::1 in {ATTEMPTS} attempts"),
    ))
}

/// A listener on `addr`; an IPv6 one accepts IPv6 only (never IPv4-mapped connections).
/// Also the proxy's broker listeners, bound on each address its bootstrap listener holds.
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // As tokio and std do for IPv4: a restart may rebind while old connections linger in
    // TIME_WAIT. (On Linux this never lets another process bind a port being listened on.)
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Whether a failed `::1` socket or bind means the host has no IPv6 (rather than a taken port).
fn no_ipv6(err: &io::Error) -> bool {
    if err.kind() == io::ErrorKind::AddrNotAvailable {
        return true;
    }
    #[cfg(unix)]
    {
        err.raw_os_error() == Some(libc::EAFNOSUPPORT)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// A loopback address [`bind_loopback`] could not listen on because another process holds
/// the port there. The `io::Error` (kind `AddrInUse`) it returns then carries this, so that a
/// program can word the fix in its own terms:
///
/// ```
/// # fn word(err: std::io::Error) -> String {
/// use gcp_kafka_auth_handler::server::PortTaken;
/// match err.get_ref().and_then(|e| e.downcast_ref::<PortTaken>()) {
///     Some(taken) => format!("port {} is taken; pass another --port", taken.addr.port()),
///     None => err.to_string(),
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot listen on {addr}: another process holds it (an earlier sidecar, or one squatting the port to receive client secrets: find it with `ss -ltnp 'sport = :{port}'`); stop it, pick another port, or bind one address yourself and give that listener to server::serve",
    port = .addr.port()
)]
pub struct PortTaken {
    /// The address held by another process.
    pub addr: SocketAddr,
}

/// "cannot listen on ADDR: ..." with, for a taken port, who may hold it and what to do.
fn annotate_bind_error(err: io::Error, addr: SocketAddr) -> io::Error {
    if err.kind() == io::ErrorKind::AddrInUse {
        return io::Error::new(err.kind(), PortTaken { addr });
    }
    io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}"))
}

/// Accepts the next connection on any of `listeners`, starting the scan at a rotating index
/// so that a busy listener cannot starve the others.
async fn accept_any(
    listeners: &[TcpListener],
    next: &mut usize,
) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for offset in 0..listeners.len() {
            let index = (*next + offset) % listeners.len();
            if let std::task::Poll::Ready(accepted) = listeners[index].poll_accept(cx) {
                *next = index + 1;
                return std::task::Poll::Ready(accepted);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Serves `app` on `listeners` within `limits` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish, and returns after at most `drain` more.
///
/// Takes bound listeners so callers (and tests) choose the addresses, port 0 included; the
/// connection limit is shared by all of them. See [`bind_loopback`] for the default pair.
pub async fn serve(
    listeners: Vec<TcpListener>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> io::Result<()> {
    if listeners.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "server::serve needs at least one listener",
        ));
    }
    let max_connections = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max_connections));
    // Connections watch this to start their graceful shutdown.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
        .keep_alive(true);
    let builder = Arc::new(builder);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_listener = 0;
    let connections = Arc::new(Connections::new());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept_any(&listeners, &mut next_listener) => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(
                        error = %err,
                        "accept failed; retrying in {} ms",
                        ACCEPT_ERROR_PAUSE.as_millis()
                    );
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Accepted before its permit, so at the limit exactly one connection waits here while
        // the rest wait in the kernel's backlog; the one idle longest makes room for it.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // When every connection has a request in flight there is none to close yet;
                // look again while waiting, since one may turn idle and sit in keep-alive.
                let mut asked = connections.make_room(max_connections);
                let permit = loop {
                    tokio::select! {
                        permit = permits.clone().acquire_owned() => break Some(permit.expect("the semaphore is never closed")),
                        () = tokio::time::sleep(MAKE_ROOM_RETRY), if !asked => {
                            asked = connections.make_room(max_connections);
                        }
                        () = &mut shutdown => break None,
                    }
                };
                match permit {
                    Some(permit) => permit,
                    None => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let deadline = limits.request_deadline;
        let slot = connections.register();
        let service_slot = slot.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let app = app.clone();
            let busy = service_slot.begin_request();
            async move {
                let response = match tokio::time::timeout(
                    deadline,
                    app.oneshot(request.map(axum::body::Body::new)),
                )
                .await
                {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => EndpointError::DeadlineExceeded { deadline }.into_response(),
                };
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        });
        let builder = builder.clone();
        let mut stop_rx = stop_rx.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { stop_rx.wait_for(|stop| *stop).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
                () = slot.evict.notified() => {
                    if slot.in_flight.load(Ordering::Acquire) == 0 {
                        // Idle: dropping the connection closes it. A client that was about
                        // to reuse it retries on a new one, as for any keep-alive close.
                        tracing::debug!(%peer, "closed an idle connection to make room at the connection limit");
                        Ok(())
                    } else {
                        // A request started since it was chosen: answer it, then close.
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            connections.remove(slot.id);
            drop(permit);
        });
    }
    drop(listeners);
    let _ = stop_tx.send(true);
    tracing::info!(
        drain_s = drain.as_secs(),
        "shutting down: no new connections; finishing requests in flight"
    );
    // Every connection holds a permit until it ends: all permits back means all done.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(drain, permits.acquire_many(all)).await {
        Ok(_) => {}
        Err(_) => {
            tracing::warn!("requests still in flight after the drain time; exiting anyway")
        }
    }
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is first polled, so a
/// signal that arrives between the "listening" log line and the first poll still leads to a
/// graceful shutdown. Call it inside a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            match handlers {
                (Ok(mut term), Ok(mut int)) => tokio::select! {
                    _ = term.recv() => tracing::info!("received SIGTERM"),
                    _ = int.recv() => tracing::info!("received SIGINT"),
                },
                (Err(err), _) | (_, Err(err)) => {
                    tracing::warn!(%err, "cannot install signal handlers; stop the process with SIGKILL");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("received Ctrl-C");
        } else {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_loopback_port_is_a_typed_error_in_library_terms() {
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = squatter.local_addr().unwrap();
        let err = bind_loopback(addr.port()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let taken = err.get_ref().and_then(|e| e.downcast_ref::<PortTaken>());
        assert_eq!(taken, Some(&PortTaken { addr }));
        assert_eq!(
            err.to_string(),
            format!(
                "cannot listen on {addr}: another process holds it (an earlier sidecar, or one squatting the port to receive client secrets: find it with `ss -ltnp 'sport = :{port}'`); stop it, pick another port, or bind one address yourself and give that listener to server::serve",
                port = addr.port()
            )
        );
    }
}
