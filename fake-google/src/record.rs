//! Records every request (but the control plane's) so that tests can assert the exact shape of
//! what a client sent: method, path, headers, body.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::respond;
use crate::state::{MAX_BODY, RecordedRequest, Shared};

pub(crate) async fn record(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().starts_with("/_fake/") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // The body has to be buffered to be both recorded and handed on.
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return respond::api_error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.");
    };
    shared.record(RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                // HeaderName is already lower-case.
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
