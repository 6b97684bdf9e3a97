//! The HTTP surface: the OAuth2 token endpoint and the operations endpoints.
//!
//! `/healthz`, `/readyz` and `/metrics` are reserved; every other path answers token requests, because
//! users point clients at `http://localhost:14293`, `.../` or a path of their own, as the
//! tools this replaces allowed. [`router`] returns an axum `Router`, which is a tower
//! `Service`: mount it with `Router::nest` or serve it with hyper directly.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gcp_kafka_auth_handler::KafkaTokenProvider;
//! let provider = KafkaTokenProvider::builder().build()?;
//! let app = axum::Router::new().nest("/oauth/token", provider.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod error;
mod guard;

use axum::Router;
use axum::body::Body;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, StatusCode, header};

use crate::metrics;
use crate::provider::{KafkaTokenProvider, Readiness};
pub(crate) use error::EndpointError;
/// The `Host` and browser checks, also in front of the schema registry endpoint.
#[cfg(feature = "schema-registry")]
pub(crate) use guard::refusal;
pub use guard::{ClientCredentials, ConfigRefusal, EndpointConfig, host_without_port};
/// The client-authentication parsers, public for the fuzz targets in `fuzz/` only: not part of
/// the API, free to change in any release.
#[doc(hidden)]
pub use guard::{form_client_credentials, parse_basic};

/// Largest request body accepted; a token request is `grant_type=client_credentials` plus an
/// optional scope or client credentials.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// Paths that are not the token endpoint.
pub const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The endpoint for `provider` with the default [`EndpointConfig`] (loopback `Host`s only,
/// browsers refused, no client authentication).
pub fn router(provider: KafkaTokenProvider) -> Router {
    router_with(provider, EndpointConfig::default())
}

/// The endpoint for `provider`: token requests on any path but the reserved ones, every
/// request checked against `config` first (`Host`, browser headers), token requests also
/// against its client credentials.
pub fn router_with(provider: KafkaTokenProvider, config: EndpointConfig) -> Router {
    let endpoint = Arc::new(Endpoint { provider, config });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_exposition))
        .fallback(token)
        .with_state(endpoint.clone())
        .layer(axum::middleware::from_fn_with_state(
            endpoint,
            check_and_count,
        ))
}

/// `router` behind the same checks as the token endpoint (a foreign `Host` and any browser
/// request refused, per `config`) with `nosniff` on every answer: for the health, metrics
/// and admin ports beside it, which a web page must not read or drive either.
pub fn protect(router: Router, config: EndpointConfig) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let config = config.clone();
            async move {
                let mut response = match guard::refusal(&config, request.headers(), request.uri()) {
                    Some(err) => err.into_response(),
                    None => next.run(request).await,
                };
                response
                    .headers_mut()
                    .insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
                response
            }
        },
    ))
}

/// `X-Content-Type-Options: nosniff`, on every answer so that no browser ever renders a token
/// or an error body as HTML or script whatever its `Content-Type`.
pub(crate) const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// Everything a request needs, behind one `Arc`: axum clones the state for every request, and
/// one reference-count increment is all that clone should cost.
struct Endpoint {
    provider: KafkaTokenProvider,
    config: EndpointConfig,
}

/// The one middleware in front of every route: refuses foreign `Host`s and browsers before
/// any handler runs, counts every answer, refusals included, by path class and status, and
/// marks every answer `nosniff`.
async fn check_and_count(
    State(endpoint): State<Arc<Endpoint>>,
    request: Request,
    next: Next,
) -> Response {
    let class = path_class(request.uri().path());
    let mut response = match guard::refusal(&endpoint.config, request.headers(), request.uri()) {
        Some(err) => err.into_response(),
        None => next.run(request).await,
    };
    response
        .headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    endpoint
        .provider
        .metrics()
        .count_request(class, response.status().as_u16());
    response
}

/// The path class of a request for the metrics: the reserved path's name, or `token` for
/// every other path (never the raw path, which would make the label set unbounded).
fn path_class(path: &str) -> &'static str {
    match RESERVED_PATHS.iter().find(|reserved| **reserved == path) {
        Some(reserved) => &reserved[1..],
        None => "token",
    }
}

// Here rather than in `provider`, so that the endpoint depends on the provider and not the
// other way round.
impl KafkaTokenProvider {
    /// The OAuth2 token endpoint for this provider, as an axum [`Router`](axum::Router).
    ///
    /// Token requests are answered on every path but `/healthz` and `/readyz` (see
    /// [`crate::endpoint`](self)), so nest it under the path your clients are given. A `Router` is
    /// a tower `Service`: serve it with `axum::serve`, or with hyper directly through
    /// `hyper_util::service::TowerToHyperService`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use gcp_kafka_auth_handler::KafkaTokenProvider;
    /// let provider = KafkaTokenProvider::builder().build()?;
    /// let app = axum::Router::new().nest("/oauth/token", provider.router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// axum::serve(listener, app).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// With hyper and no axum server:
    ///
    /// ```no_run
    /// # async fn run(provider: gcp_kafka_auth_handler::KafkaTokenProvider) -> Result<(), Box<dyn std::error::Error>> {
    /// use hyper_util::rt::TokioIo;
    /// use hyper_util::service::TowerToHyperService;
    ///
    /// let service = TowerToHyperService::new(provider.router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// loop {
    ///     let (stream, _) = listener.accept().await?;
    ///     let service = service.clone();
    ///     tokio::spawn(async move {
    ///         let _ = hyper::server::conn::http1::Builder::new()
    ///             .serve_connection(TokioIo::new(stream), service)
    ///             .await;
    ///     });
    /// }
    /// # }
    /// ```
    pub fn router(&self) -> axum::Router {
        router(self.clone())
    }

    /// The token endpoint with explicit checks (allowed hosts, client credentials); see
    /// [`EndpointConfig`].
    pub fn router_with(&self, config: EndpointConfig) -> axum::Router {
        router_with(self.clone(), config)
    }
}

/// With [`EndpointConfig::with_authenticated_operations`], `/readyz` and `/metrics` need the
/// client credentials as HTTP Basic (a GET has no form body, and the URL must not carry them).
fn check_operations_access(
    config: &EndpointConfig,
    headers: &http::HeaderMap,
) -> Result<(), EndpointError> {
    if config.operations_require_client_credentials() {
        guard::authenticate(config, headers, b"")?;
    }
    Ok(())
}

/// `/metrics`: the Prometheus (OpenMetrics text) exposition.
async fn metrics_exposition(
    State(endpoint): State<Arc<Endpoint>>,
    headers: http::HeaderMap,
) -> Response {
    if let Err(err) = check_operations_access(&endpoint.config, &headers) {
        return err.into_response();
    }
    let mut response = (StatusCode::OK, endpoint.provider.metrics().render()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
}

async fn readyz(State(endpoint): State<Arc<Endpoint>>, headers: http::HeaderMap) -> Response {
    if let Err(err) = check_operations_access(&endpoint.config, &headers) {
        return err.into_response();
    }
    match endpoint.provider.readiness() {
        Readiness::Ready {
            principal,
            expires_in,
        } => json_response(
            StatusCode::OK,
            serde_json::json!({
                "status": "ready",
                "principal": principal,
                "expires_in": expires_in,
            })
            .to_string(),
        ),
        Readiness::NotReady { reason } => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "status": "not ready",
                "reason": reason,
            })
            .to_string(),
        ),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The token endpoint: checks the request, then serves the cached token.
async fn token(State(endpoint): State<Arc<Endpoint>>, request: Request) -> Response {
    match serve_token(&endpoint.provider, &endpoint.config, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn serve_token(
    provider: &KafkaTokenProvider,
    config: &EndpointConfig,
    request: Request,
) -> Result<Response, EndpointError> {
    let (parts, body) = request.into_parts();
    let form = match parts.method {
        Method::POST => read_body(&parts.headers, body).await?,
        Method::GET => bytes::Bytes::copy_from_slice(parts.uri.query().unwrap_or("").as_bytes()),
        _ => return Err(EndpointError::MethodNotAllowed),
    };
    guard::authenticate(config, &parts.headers, &form)?;
    if let Some(grant) = grant_type(&form)
        && grant != "client_credentials"
    {
        return Err(EndpointError::UnsupportedGrantType(grant));
    }
    let body = provider
        .token_response()
        .await
        .map_err(EndpointError::Token)?;
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Reads a request body of at most [`MAX_BODY_BYTES`].
///
/// A declared `Content-Length` over the limit is refused before the body is touched, so hyper
/// never sends `100 Continue` for it (it does so when the body is first read). A body that
/// cannot be read (bad chunk size, connection closed before `Content-Length` bytes) is the
/// client's error: 400, with hyper's reason.
async fn read_body(
    headers: &http::HeaderMap,
    mut body: Body,
) -> Result<bytes::Bytes, EndpointError> {
    use axum::body::HttpBody as _;
    let too_large = EndpointError::PayloadTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large);
    }
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|err| {
            EndpointError::InvalidRequest(format!(
                "the request body could not be read ({}); send a complete body of at most {MAX_BODY_BYTES} bytes, e.g. grant_type=client_credentials",
                root_cause(&err)
            ))
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > MAX_BODY_BYTES {
                return Err(too_large);
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// The innermost error's message: hyper's reason ("invalid chunk size") rather than a wrapper.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut err = err;
    while let Some(next) = err.source() {
        err = next;
    }
    err.to_string()
}

/// The `grant_type` of a form body or query string, if present.
fn grant_type(form: &[u8]) -> Option<String> {
    form_urlencoded::parse(form)
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::{grant_type, path_class};

    #[test]
    fn paths_are_classed_without_unbounded_labels() {
        assert_eq!(path_class("/healthz"), "healthz");
        assert_eq!(path_class("/readyz"), "readyz");
        assert_eq!(path_class("/metrics"), "metrics");
        assert_eq!(path_class("/"), "token");
        assert_eq!(path_class("/oauth/token"), "token");
        assert_eq!(path_class("/metrics/x"), "token");
        assert_eq!(path_class("/healthz/"), "token");
    }

    #[test]
    fn grant_type_is_read_from_form_bodies() {
        assert_eq!(
            grant_type(b"grant_type=client_credentials&scope=a%20b").as_deref(),
            Some("client_credentials")
        );
        assert_eq!(grant_type(b"scope=x").as_deref(), None);
        assert_eq!(grant_type(b"").as_deref(), None);
        assert_eq!(
            grant_type(b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
                .as_deref(),
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        );
    }

    proptest::proptest! {
        #[test]
        fn grant_type_round_trips_through_form_encoding(
            grant in ".{0,60}",
            before in proptest::collection::vec(("[a-z_]{1,8}", ".{0,10}"), 0..3),
        ) {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (k, v) in before.iter().filter(|(k, _)| k != "grant_type") {
                form.append_pair(k, v);
            }
            let body = form.append_pair("grant_type", &grant).finish();
            proptest::prop_assert_eq!(grant_type(body.as_bytes()), Some(grant));
        }

        #[test]
        fn grant_type_parser_takes_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = grant_type(&bytes);
        }
    }
}
