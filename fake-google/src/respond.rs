//! Response shapes shared by the endpoints, written the way Google writes them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `status` with a JSON body and `Content-Type: application/json; charset=utf-8`.
pub(crate) fn json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// A successful token response. Google's token endpoints forbid caching, as RFC 6749 §5.1
/// requires.
pub(crate) fn token(body: &Value) -> Response {
    let mut response = json(StatusCode::OK, body);
    no_store(&mut response);
    response
}

/// An RFC 6749 §5.2 error, as oauth2.googleapis.com sends it.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = json(
        status,
        &json!({ "error": error, "error_description": description }),
    );
    no_store(&mut response);
    response
}

/// A Google API error (`{"error":{"code","message","status"}}`), the shape every
/// `*.googleapis.com` JSON API (IAM Credentials, STS front end, load balancer errors) uses.
pub(crate) fn api_error(status: StatusCode, message: &str) -> Response {
    json(
        status,
        &json!({
            "error": {
                "code": status.as_u16(),
                "message": message,
                "status": canonical_status(status),
            }
        }),
    )
}

/// The google.rpc.Code name Google pairs with an HTTP status.
fn canonical_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// A plain-text body with the given content type.
pub(crate) fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
