//! How `proxy` stops: SIGTERM, SIGINT or `POST /quitquitquit` on the opt-in admin port set
//! the reason once; the proxies drain once [`Stop::stopped`] completes (after
//! `--min-sigterm-delay` for SIGTERM); the reason decides the exit code.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderValue, StatusCode, header};
use tokio::sync::watch;

/// What stopped the proxy, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Sigterm,
    Sigint,
    Quit,
}

/// SIGTERM or SIGINT, whichever comes first.
async fn signal() -> StopReason {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => StopReason::Sigterm,
                _ = int.recv() => StopReason::Sigint,
            },
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(target: super::PROXY_LOG_TARGET, %err, "cannot install signal handlers; stop the process with SIGKILL");
                std::future::pending().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => StopReason::Sigint,
            Err(_) => std::future::pending().await,
        }
    }
}

/// What asked to stop, and whether the proxies should drain now.
pub struct Stop {
    reason: Arc<watch::Sender<Option<StopReason>>>,
    stop_rx: watch::Receiver<bool>,
}

impl Stop {
    /// Starts listening for SIGTERM and SIGINT; [`stopped`](Self::stopped) completes at once
    /// after SIGINT or `/quitquitquit`, `min_delay` after SIGTERM.
    pub fn start(min_delay: Duration) -> Stop {
        // What asked to stop (a signal or /quitquitquit); `stop` turns true once the proxies
        // should drain (after --min-sigterm-delay for SIGTERM).
        let (reason_tx, mut reason_rx) = watch::channel(None::<StopReason>);
        let reason_tx = Arc::new(reason_tx);
        let (stop_tx, stop_rx) = watch::channel(false);
        {
            let reason_tx = reason_tx.clone();
            tokio::spawn(async move {
                let got = signal().await;
                tracing::info!(
                    target: super::PROXY_LOG_TARGET,
                    "received {}",
                    if got == StopReason::Sigterm {
                        "SIGTERM"
                    } else {
                        "SIGINT"
                    }
                );
                reason_tx.send_if_modified(|r| {
                    if r.is_none() {
                        *r = Some(got);
                        true
                    } else {
                        false
                    }
                });
            });
        }
        tokio::spawn(async move {
            let Ok(reason) = reason_rx.wait_for(Option::is_some).await.map(|r| *r) else {
                return;
            };
            if reason == Some(StopReason::Sigterm) && !min_delay.is_zero() {
                tracing::info!(target: super::PROXY_LOG_TARGET, "still accepting connections for --min-sigterm-delay {min_delay:?}");
                tokio::time::sleep(min_delay).await;
            }
            let _ = stop_tx.send(true);
        });
        Stop {
            reason: reason_tx,
            stop_rx,
        }
    }

    /// Completes once the proxies should drain.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// What asked to stop, if anything did.
    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.borrow()
    }

    /// `POST /quitquitquit`, for the admin port.
    pub fn admin_router(&self) -> Router {
        admin_router(self.reason.clone())
    }

    /// The exit code for what stopped the proxy.
    pub fn exit_code(&self, exit_zero_on_sigterm: bool) -> ExitCode {
        exit_code(self.reason(), exit_zero_on_sigterm)
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The header `POST /quitquitquit` must carry. A web page cannot send a custom header to
/// another origin without a CORS preflight, which this server never answers, so no page a
/// local browser opens can stop the proxy.
pub const QUIT_HEADER: &str = "x-quitquitquit";

fn admin_router(quit: Arc<watch::Sender<Option<StopReason>>>) -> Router {
    Router::new().route(
        "/quitquitquit",
        post(move |headers: http::HeaderMap| {
            let quit = quit.clone();
            async move {
                if !headers.contains_key(QUIT_HEADER) {
                    return json(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({
                            "error": "missing_header",
                            "error_description": "POST /quitquitquit needs the header X-Quitquitquit (any value), which web pages cannot send: curl -X POST -H 'X-Quitquitquit: 1' http://127.0.0.1:9091/quitquitquit",
                        }),
                    );
                }
                tracing::info!(target: super::PROXY_LOG_TARGET, "POST /quitquitquit: stopping");
                quit.send_if_modified(|reason| {
                    if reason.is_none() {
                        *reason = Some(StopReason::Quit);
                        true
                    } else {
                        false
                    }
                });
                json(StatusCode::OK, serde_json::json!({"status": "stopping"}))
            }
        }),
    )
}

/// 143 after SIGTERM (128 + 15, what a shell reports for a process the signal killed) unless
/// --exit-zero-on-sigterm, 130 after SIGINT, 0 after /quitquitquit.
fn exit_code(reason: Option<StopReason>, exit_zero_on_sigterm: bool) -> ExitCode {
    match reason {
        Some(StopReason::Sigterm) if !exit_zero_on_sigterm => ExitCode::from(143),
        Some(StopReason::Sigint) => ExitCode::from(130),
        _ => ExitCode::SUCCESS,
    }
}
