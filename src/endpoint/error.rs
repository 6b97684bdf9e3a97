//! Every error the endpoint answers, and the one place that maps it to a status and body.
//!
//! Bodies are RFC 6749 §5.2 JSON (`error`, `error_description`) that both the Java client and
//! librdkafka log. Transient trouble is a 503 with `Retry-After`, which both clients retry;
//! credentials that need a person's attention are a 400 the Java client does not retry, so the
//! application fails at once with our message instead of retrying blindly.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::provider::{TokenError, TokenErrorKind};

/// A request the endpoint refuses or cannot answer with a token.
#[derive(Debug)]
pub(crate) enum EndpointError {
    MethodNotAllowed,
    PayloadTooLarge {
        limit: usize,
    },
    UnsupportedGrantType(String),
    Token(TokenError),
    /// `Host` is well-formed but neither loopback nor allowed (DNS rebinding defence), with
    /// the description the endpoint's config words it in.
    HostNotAllowed {
        description: String,
    },
    /// The request is malformed (Host missing, repeated or invalid; a body that cannot be
    /// read; a client secret in the URL): 400 `invalid_request` with what is wrong.
    InvalidRequest(String),
    /// The request carries a header only browsers send.
    BrowserRequest {
        header: String,
    },
    /// Client authentication is on and the request did not pass it.
    InvalidClient {
        reason: std::borrow::Cow<'static, str>,
    },
    /// The request did not finish within the per-request deadline.
    DeadlineExceeded {
        deadline: Duration,
    },
}

impl EndpointError {
    /// The status and the description, for endpoints that answer in another shape (the
    /// schema registry endpoint answers Confluent's).
    #[cfg(feature = "schema-registry")]
    pub(crate) fn status_and_description(&self) -> (StatusCode, String) {
        let (status, _, description) = self.parts();
        (status, description)
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "the token endpoint answers GET and POST only".to_owned(),
            ),
            Self::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!(
                    "the request body is larger than {limit} bytes; a token request needs only grant_type"
                ),
            ),
            Self::UnsupportedGrantType(grant) => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!(
                    "grant_type `{}` is not supported; use client_credentials (the Kafka client default)",
                    grant.escape_debug()
                ),
            ),
            Self::HostNotAllowed { description } => {
                (StatusCode::FORBIDDEN, "access_denied", description.clone())
            }
            Self::InvalidRequest(description) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                description.clone(),
            ),
            Self::BrowserRequest { header } => (
                StatusCode::FORBIDDEN,
                "access_denied",
                format!(
                    "requests carrying `{header}` come from a web browser; the token endpoint answers Kafka clients only"
                ),
            ),
            Self::InvalidClient { reason } => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                reason.clone().into_owned(),
            ),
            Self::DeadlineExceeded { deadline } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                format!(
                    "the request did not complete within {} s; retry",
                    deadline.as_secs_f64()
                ),
            ),
            Self::Token(err) => match err.kind() {
                TokenErrorKind::Unavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    format!("no Google access token is available: {err}"),
                ),
                TokenErrorKind::Rejected => (
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    format!("the sidecar's Google credentials do not work: {err}"),
                ),
            },
        }
    }
}

/// Seconds for `Retry-After`: at least 1, rounded up.
fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl IntoResponse for EndpointError {
    fn into_response(self) -> Response {
        let (status, error, description) = self.parts();
        if status.is_server_error() {
            tracing::debug!(status = status.as_u16(), error, %description, "token request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error, %description, "token request refused");
        }
        let body =
            serde_json::json!({"error": error, "error_description": description}).to_string();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        // Also here, not only in the router's layer: the server's deadline answer is built
        // outside the router.
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, super::NOSNIFF);
        match &self {
            Self::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            }
            Self::Token(err) => {
                headers.insert(
                    header::RETRY_AFTER,
                    retry_after_secs(err.retry_after()).into(),
                );
            }
            Self::InvalidClient { .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"gcp-kafka-auth-handler\""),
                );
            }
            Self::DeadlineExceeded { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
    }
}
