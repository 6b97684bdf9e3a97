//! Injected failures for the token-issuing endpoints, so that callers can prove they survive
//! every way Google (or the network in front of it) misbehaves.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes_stream::partial_then_error;

use crate::respond;
use crate::state::Shared;

/// A way for a token-issuing request to fail (or succeed oddly).
///
/// The control plane spells them `status:503`, `hang`, `garbage`, `reset`, `invalid_grant`,
/// `expires_in:N`, `slow:MS` ([`FromStr`] and [`fmt::Display`] use that syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and a Google API JSON error body
    /// (`{"error":{"code","message","status"}}`).
    Status(u16),
    /// Accept the request and never answer, until the client gives up or the fake shuts down
    /// (then 503).
    Hang,
    /// 200 with `Content-Type: application/json` and a body that is not JSON (`<html>oops`).
    Garbage,
    /// A 200 header announcing more body than is sent, part of a token, then the connection
    /// is closed.
    ResetMidBody,
    /// 400 `{"error":"invalid_grant","error_description":"Token has been expired or revoked."}`.
    InvalidGrant,
    /// A normal, valid token whose `expires_in` is this value (zero, negative or huge too); the
    /// remembered expiry is now + n, clamped to the epoch.
    ExpiresIn(i64),
    /// Answer correctly, after this delay.
    Slow(Duration),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Status(s) => write!(f, "status:{s}"),
            Fault::Hang => f.write_str("hang"),
            Fault::Garbage => f.write_str("garbage"),
            Fault::ResetMidBody => f.write_str("reset"),
            Fault::InvalidGrant => f.write_str("invalid_grant"),
            Fault::ExpiresIn(n) => write!(f, "expires_in:{n}"),
            Fault::Slow(d) => write!(f, "slow:{}", d.as_millis()),
        }
    }
}

/// Error from parsing a [`Fault`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFaultError(pub String);

impl fmt::Display for ParseFaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown fault {:?}: expected status:N, hang, garbage, reset, invalid_grant, expires_in:N or slow:MS",
            self.0
        )
    }
}

impl std::error::Error for ParseFaultError {}

impl FromStr for Fault {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Fault, ParseFaultError> {
        let err = || ParseFaultError(s.to_owned());
        let (name, arg) = match s.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (s, None),
        };
        Ok(match (name, arg) {
            ("status", Some(n)) => Fault::Status(n.parse().map_err(|_| err())?),
            ("hang", None) => Fault::Hang,
            ("garbage", None) => Fault::Garbage,
            ("reset", None) => Fault::ResetMidBody,
            ("invalid_grant", None) => Fault::InvalidGrant,
            ("expires_in", Some(n)) => Fault::ExpiresIn(n.parse().map_err(|_| err())?),
            ("slow", Some(ms)) => {
                Fault::Slow(Duration::from_millis(ms.parse().map_err(|_| err())?))
            }
            _ => return Err(err()),
        })
    }
}

/// Which endpoints a planned fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// Every token-issuing endpoint: metadata token, `/token`, IAM `generateAccessToken`,
    /// STS `/v1/token` and `/v1/oauthtoken`.
    TokenIssuing,
    /// `/tokeninfo` only ([`Fault::ExpiresIn`] means nothing there and is ignored).
    Tokeninfo,
}

/// What a token-issuing handler does after consulting the fault settings.
pub(crate) enum Outcome {
    /// Serve the request normally; `expires_in`, when set, replaces the configured lifetime.
    Proceed { expires_in: Option<i64> },
    /// Send this response instead.
    Respond(Response),
}

/// Takes the pending fault (if any) for one token-issuing request and acts it out.
pub(crate) async fn apply(shared: &Shared) -> Outcome {
    apply_to(shared, FaultTarget::TokenIssuing).await
}

/// Takes the pending fault (if any) for one request to `target` and acts it out.
pub(crate) async fn apply_to(shared: &Shared, target: FaultTarget) -> Outcome {
    let Some(fault) = shared.take_fault(target) else {
        return Outcome::Proceed { expires_in: None };
    };
    match fault {
        Fault::Status(code) => {
            // An out-of-range code cannot be sent at all; 500 is the honest substitute.
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = status
                .canonical_reason()
                .unwrap_or("Injected failure")
                .to_owned()
                + " (injected by fake-google)";
            Outcome::Respond(respond::api_error(status, &message))
        }
        Fault::Hang => {
            shutting_down(shared).await;
            Outcome::Respond(shutdown_response())
        }
        Fault::Slow(delay) => {
            tokio::select! {
                () = tokio::time::sleep(delay) => Outcome::Proceed { expires_in: None },
                () = shutting_down(shared) => Outcome::Respond(shutdown_response()),
            }
        }
        Fault::Garbage => Outcome::Respond(respond::text(
            StatusCode::OK,
            "application/json; charset=utf-8",
            "<html>oops".to_owned(),
        )),
        Fault::ResetMidBody => Outcome::Respond(reset_mid_body()),
        Fault::InvalidGrant => Outcome::Respond(respond::oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired or revoked.",
        )),
        Fault::ExpiresIn(n) => Outcome::Proceed {
            expires_in: Some(n),
        },
    }
}

/// Resolves once the server is shutting down (or its handles are all gone).
async fn shutting_down(shared: &Shared) {
    let mut shutdown = shared.shutdown.clone();
    // An error means the sender is gone, which is a shutdown too.
    let _ = shutdown.wait_for(|down| *down).await;
}

fn shutdown_response() -> Response {
    respond::api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "fake-google is shutting down",
    )
}

/// The bytes of a token response that [`Fault::ResetMidBody`] gets through before the cut.
pub const RESET_PARTIAL_BODY: &str = "{\"access_token\":\"ya29.c.truncated";
/// The `Content-Length` [`Fault::ResetMidBody`] announces.
pub const RESET_ANNOUNCED_LENGTH: u64 = 1024;

/// 200, `Content-Length: 1024`, a fragment of JSON, then the connection dies.
fn reset_mid_body() -> Response {
    let body = Body::from_stream(partial_then_error(RESET_PARTIAL_BODY));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    // hyper honours an explicit Content-Length for a body of unknown size, so the client is
    // promised more than it will get and sees a truncated body, not a clean end.
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(RESET_ANNOUNCED_LENGTH),
    );
    // `Response::new` is already 200 OK: the failure must look like a success until the cut.
    response
}

mod bytes_stream {
    use std::io;
    use std::time::Duration;

    use futures_util::Stream;
    use futures_util::stream;

    /// Yields `partial`, waits long enough for hyper to flush it to the socket, then fails,
    /// which makes hyper abort the connection.
    pub(super) fn partial_then_error(
        partial: &'static str,
    ) -> impl Stream<Item = Result<&'static [u8], io::Error>> + Send + 'static {
        stream::unfold(0u8, move |step| async move {
            match step {
                0 => Some((Ok(partial.as_bytes()), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((
                        Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "fake-google: reset mid-body (injected)",
                        )),
                        2,
                    ))
                }
                _ => None,
            }
        })
    }
}
