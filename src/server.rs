//! Serving the endpoint on a listener, with connection limits, until a shutdown signal.
//!
//! `axum::serve` does not expose hyper's connection settings, so this is a small accept loop
//! over hyper's HTTP/1 server (the only protocol Kafka clients speak to a token endpoint):
//!
//! - at most [`Limits::max_connections`] connections at once: the loop takes a permit before
//!   it accepts, so excess clients wait in the kernel's backlog instead of being refused;
//! - request heads larger than [`Limits::max_header_bytes`] are refused by hyper (431);
//! - a client must send a complete request head within [`Limits::header_read_timeout`]
//!   (slowloris). hyper starts that timer whenever it waits for a head, on a new connection
//!   and between keep-alive requests, so it is also the idle timeout of a connection;
//! - a request must be answered within [`Limits::request_deadline`] (503
//!   `temporarily_unavailable` otherwise), which also bounds a slow request body.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::endpoint::EndpointError;

/// Pause after a failed `accept` (out of file descriptors and the like): long enough not to
/// spin on an error that persists, short enough that connections resume at once when it clears.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Limits on what one client can hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog. Default 2048.
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

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then stops accepting,
/// lets requests in flight finish, and returns after at most `drain` more.
///
/// Takes a bound listener so callers (and tests) choose the address, port 0 included.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> io::Result<()> {
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
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let deadline = limits.request_deadline;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let app = app.clone();
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
                Ok::<_, Infallible>(response)
            }
        });
        let builder = builder.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { stop_rx.wait_for(|stop| *stop).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
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
