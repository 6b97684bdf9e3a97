//! A local, Confluent-compatible schema registry endpoint for Managed Kafka's schema registry.
//!
//! Google's registry serves the Confluent REST API under
//! `https://managedkafka.googleapis.com/v1/projects/P/locations/L/schemaRegistries/R` and wants
//! `Authorization: Bearer <Google access token>`. Outside Java, Confluent serializers cannot
//! renew such a token (confluent-kafka-go takes a static one and fails an hour in, the
//! JavaScript client needs hand-written middleware), several tools mishandle a registry URL
//! with a path, and Google's errors are not in the shape Confluent clients parse. This
//! endpoint closes all three gaps: a client sets only `schema.registry.url=http://127.0.0.1:8081`
//! and every request is forwarded to the registry with the path prefix added, a bearer token
//! from the provider's cache (refreshed ahead of expiry), `x-goog-user-project` when a quota
//! project is set, and the client's `Content-Type`/`Accept`. Bodies stream both ways; error
//! bodies are translated to Confluent's shape by one reviewed table ([`errors`]).
//!
//! In front of every request, the token endpoint's checks ([`EndpointConfig`]: loopback
//! `Host`s only, browsers refused), a cap on request bodies, and the client's own
//! `Authorization` header dropped (the answer carries [`AUTHORIZATION_NOTE_HEADER`] saying it
//! is not needed). `GET /schemas/ids/N` answers are cached in memory (ids are immutable), and
//! `/metrics` serves the provider's metrics followed by the endpoint's.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gcp_kafka_auth_handler::KafkaTokenProvider;
//! use gcp_kafka_auth_handler::registry::SchemaRegistryEndpoint;
//! let provider = KafkaTokenProvider::builder().build()?;
//! let registry = SchemaRegistryEndpoint::builder(
//!     provider,
//!     "projects/my-project/locations/us-central1/schemaRegistries/my_registry".parse()?,
//! )
//! .build()?;
//! registry.check().await?; // the registry exists and the credentials may read it
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! axum::serve(listener, registry.router()).await?;
//! # Ok(()) }
//! ```

pub mod errors;
mod metrics;
mod name;
mod schema_cache;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, StatusCode, header};
use secrecy::ExposeSecret as _;
use serde_json::Value;

use crate::endpoint::EndpointConfig;
use crate::provider::{KafkaTokenProvider, TokenErrorKind};
pub use errors::{EDITOR_ROLE, Route, VIEWER_ROLE};
pub use name::{BadRegistryName, NAME_FORM, RegistryName};
use schema_cache::{Cached, SchemaCache};

/// The port Confluent's registry listens on, and so the one clients expect.
pub const DEFAULT_PORT: u16 = 8081;

/// Largest request body forwarded by default: a schema with its references is kilobytes, and
/// Confluent's own registry refuses schemas over a few megabytes.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The header on answers to requests that carried their own `Authorization`.
pub const AUTHORIZATION_NOTE_HEADER: &str = "x-gcp-kafka-auth-handler-note";

const AUTHORIZATION_NOTE: &str = "the Authorization header is not needed and was not forwarded: this endpoint authenticates to Google itself; remove the client's basic.auth/bearer.auth settings";

/// Confluent's media type, for the error bodies this endpoint writes.
pub const CONFLUENT_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Largest error body read from Google to translate (Google's are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Why the registry cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// 404: no such registry.
    #[error(
        "Managed Kafka schema registry {name} not found (404 from {url}): check the project, the region and the registry id; `gcloud beta managed-kafka schema-registries list --project={project} --location={location}` lists the registries there",
        project = .name.project,
        location = .name.location
    )]
    NotFound {
        /// The registry.
        name: Box<RegistryName>,
        /// The URL called.
        url: String,
    },
    /// 403 without `SERVICE_DISABLED`: the principal may not read the registry.
    #[error(
        "permission denied reading Managed Kafka schema registry {name} (403 from {url}): {principal} needs {VIEWER_ROLE} on it to read schemas ({EDITOR_ROLE} to register them): gcloud projects add-iam-policy-binding {project} --member=<that principal> --role={VIEWER_ROLE}; Google said: {message}",
        project = .name.project
    )]
    PermissionDenied {
        /// The registry.
        name: Box<RegistryName>,
        /// The URL called.
        url: String,
        /// Whose token was used.
        principal: String,
        /// Google's message.
        message: String,
    },
    /// 403 `SERVICE_DISABLED`: the API is not enabled in the consumer project.
    #[error(
        "the Managed Kafka API (managedkafka.googleapis.com) is disabled in project {consumer}: enable it with `gcloud services enable managedkafka.googleapis.com --project={consumer}` (the consumer project is the quota project when Builder::with_quota_project sets one), then retry"
    )]
    ServiceDisabled {
        /// The project the API is disabled in, as Google names it.
        consumer: String,
    },
    /// 401: the token was refused.
    #[error(
        "the Managed Kafka API refused the credentials' token (401 from {url}): {message}; check the credentials with `gcp-kafka-auth-handler doctor`"
    )]
    Unauthenticated {
        /// The URL called.
        url: String,
        /// Google's message.
        message: String,
    },
    /// Any other status.
    #[error("the Managed Kafka API answered {status} for {name} from {url}: {message}")]
    Status {
        /// The registry.
        name: Box<RegistryName>,
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Google's message, or the start of the body.
        message: String,
    },
    /// The request could not be sent or its answer read.
    #[error(
        "cannot reach the schema registry at {url}: {detail} (set a private endpoint with Builder::with_endpoint)"
    )]
    Unreachable {
        /// The URL called.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// No token to call the API with.
    #[error("no access token to call the schema registry with: {0}")]
    Token(String),
    /// The HTTP client could not be built.
    #[error("cannot create the HTTP client for the schema registry: {0}")]
    Client(String),
}

/// Builds a [`SchemaRegistryEndpoint`].
#[derive(Debug)]
pub struct Builder {
    provider: KafkaTokenProvider,
    name: RegistryName,
    endpoint: Option<String>,
    quota_project: Option<String>,
    config: EndpointConfig,
    cache_entries: usize,
    cache_bytes: usize,
    max_request_bytes: usize,
    timeout: Duration,
    wording: fn(&RegistryError) -> String,
}

impl Builder {
    /// The Managed Kafka API's base URL instead of `https://managedkafka.{universe domain}`:
    /// a private endpoint, or a test server.
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Sends `x-goog-user-project: project` (the project billed and quota-checked).
    pub fn with_quota_project(mut self, project: impl Into<String>) -> Self {
        self.quota_project = Some(project.into());
        self
    }

    /// Who may use the endpoint (default: loopback `Host`s, no browsers). Client
    /// credentials in it are not asked for: registry clients' `Authorization` is dropped.
    pub fn with_endpoint_config(mut self, config: EndpointConfig) -> Self {
        self.config = config;
        self
    }

    /// Bounds of the `GET /schemas/ids/N` cache (default 10 000 answers, 32 MiB; 0 entries
    /// turns it off).
    pub fn with_cache_limits(mut self, entries: usize, bytes: usize) -> Self {
        self.cache_entries = entries;
        self.cache_bytes = bytes;
        self
    }

    /// Largest request body forwarded (default [`DEFAULT_MAX_REQUEST_BYTES`]); larger ones
    /// get 413.
    pub fn with_max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// How long one request to Google may take, body included (default 60 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How a [`RegistryError`] reads in the endpoint's answers to clients (default: its
    /// `Display`, naming this builder's methods): for a program whose users set the endpoint
    /// up through settings of its own, such as command-line flags.
    pub fn with_error_wording(mut self, wording: fn(&RegistryError) -> String) -> Self {
        self.wording = wording;
        self
    }

    /// The endpoint.
    pub fn build(self) -> Result<SchemaRegistryEndpoint, RegistryError> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(crate::credentials::CONNECT_TIMEOUT)
            .build()
            .map_err(|e| RegistryError::Client(error_chain(&e)))?;
        Ok(SchemaRegistryEndpoint {
            shared: Arc::new(Shared {
                base: tokio::sync::OnceCell::new_with(self.endpoint.clone()),
                provider: self.provider,
                name: self.name,
                quota_project: self.quota_project,
                config: self.config,
                client,
                cache: SchemaCache::new(self.cache_entries, self.cache_bytes),
                metrics: metrics::RegistryMetrics::new(),
                max_request_bytes: self.max_request_bytes,
                wording: self.wording,
                told_about_authorization: AtomicBool::new(false),
            }),
        })
    }
}

/// The local schema registry endpoint for one Managed Kafka schema registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SchemaRegistryEndpoint {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    provider: KafkaTokenProvider,
    name: RegistryName,
    /// The API base URL, resolved once (from the universe domain unless overridden).
    base: tokio::sync::OnceCell<String>,
    quota_project: Option<String>,
    config: EndpointConfig,
    client: reqwest::Client,
    cache: SchemaCache,
    metrics: metrics::RegistryMetrics,
    max_request_bytes: usize,
    /// How a [`RegistryError`] reads in an answer.
    wording: fn(&RegistryError) -> String,
    /// Whether "the Authorization header is not needed" was logged at info level yet.
    told_about_authorization: AtomicBool,
}

impl SchemaRegistryEndpoint {
    /// A builder for the registry `name`, authenticating with `provider`'s tokens.
    pub fn builder(provider: KafkaTokenProvider, name: RegistryName) -> Builder {
        Builder {
            provider,
            name,
            endpoint: None,
            quota_project: None,
            config: EndpointConfig::default(),
            cache_entries: 10_000,
            cache_bytes: 32 * 1024 * 1024,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            timeout: Duration::from_secs(60),
            wording: |err| err.to_string(),
        }
    }

    /// The registry's resource name.
    pub fn name(&self) -> &RegistryName {
        &self.shared.name
    }

    /// The registry's base URL: `{API}/v1/projects/P/locations/L/schemaRegistries/R`.
    pub async fn base_url(&self) -> Result<String, RegistryError> {
        Ok(format!(
            "{}/v1/{}",
            self.shared.api().await?,
            self.shared.name
        ))
    }

    /// The endpoint as an axum [`Router`]: `/metrics`, and every other path forwarded to the
    /// registry. Serve it at the root of a port (clients and tools expect the Confluent API
    /// at `/`), e.g. with [`crate::server::serve`] on [`crate::server::bind_loopback`]`(8081)`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics_exposition))
            .fallback(forward)
            .with_state(self.shared.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                check_and_count,
            ))
    }

    /// Reads the registry resource once (`GET {API}/v1/projects/P/locations/L/schemaRegistries/R`):
    /// `Ok` when it exists and the credentials may read it, else an error naming the fix.
    pub async fn check(&self) -> Result<(), RegistryError> {
        let shared = &self.shared;
        let url = self.base_url().await?;
        let token = shared
            .provider
            .token()
            .await
            .map_err(|e| RegistryError::Token(e.to_string()))?;
        let mut request = shared
            .client
            .get(&url)
            .bearer_auth(token.access_token().expose_secret());
        if let Some(project) = &shared.quota_project {
            request = request.header("x-goog-user-project", project);
        }
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
            url: url.clone(),
            detail: error_chain(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(unreachable)?;
        if status == 200 {
            return Ok(());
        }
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let message = json
            .as_ref()
            .and_then(|j| j["error"]["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        let name = Box::new(shared.name.clone());
        Err(match status {
            404 => RegistryError::NotFound { name, url },
            401 => RegistryError::Unauthenticated { url, message },
            403 => match service_disabled_consumer(json.as_ref()) {
                Some(consumer) => RegistryError::ServiceDisabled {
                    consumer: consumer.unwrap_or_else(|| {
                        shared
                            .quota_project
                            .clone()
                            .unwrap_or_else(|| shared.name.project.clone())
                    }),
                },
                None => RegistryError::PermissionDenied {
                    name,
                    url,
                    principal: token.principal().as_str().to_owned(),
                    message,
                },
            },
            _ => RegistryError::Status {
                name,
                url,
                status,
                message,
            },
        })
    }

    /// The provider's metrics followed by the endpoint's, OpenMetrics text ending in `# EOF`.
    pub fn render_metrics(&self) -> String {
        self.shared.render_metrics()
    }
}

impl Shared {
    async fn api(&self) -> Result<String, RegistryError> {
        self.base
            .get_or_try_init(|| async {
                let universe = self
                    .provider
                    .universe_domain()
                    .await
                    .map_err(|e| RegistryError::Token(e.to_string()))?;
                Ok(format!("https://managedkafka.{universe}"))
            })
            .await
            .cloned()
    }

    /// The provider's families and the endpoint's, in one registry encoded once.
    fn render_metrics(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        self.provider.metrics().register(&mut registry);
        self.metrics.register(&mut registry);
        crate::metrics::encode(&registry)
    }
}

/// `Some(consumer project if named)` when a 403 body carries `ErrorInfo` `SERVICE_DISABLED`.
fn service_disabled_consumer(json: Option<&Value>) -> Option<Option<String>> {
    let details = json?["error"]["details"].as_array()?;
    let info = details.iter().find(|d| {
        d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
            && d["reason"] == "SERVICE_DISABLED"
    })?;
    Some(
        info["metadata"]["consumer"]
            .as_str()
            .map(|c| c.trim_start_matches("projects/").to_owned()),
    )
}

/// A Confluent-shaped error answer.
fn confluent_error(status: StatusCode, code: u32, message: &str) -> Response {
    let mut response = (status, errors::body_json(code, message)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CONFLUENT_CONTENT_TYPE),
    );
    response
}

/// The token endpoint's checks in front of every request (refusals answered in Confluent's
/// shape, with the HTTP status as `error_code`), `nosniff` on every answer, and every answer
/// counted by route and status.
async fn check_and_count(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let route = if request.uri().path() == "/metrics" {
        "metrics"
    } else {
        Route::of(request.uri().path()).label()
    };
    let mut response = match crate::endpoint::refusal(
        &shared.config,
        request.headers(),
        request.uri(),
    ) {
        Some(crate::endpoint::EndpointError::BrowserRequest { header }) => confluent_error(
            StatusCode::FORBIDDEN,
            403,
            &format!(
                "requests carrying `{header}` come from a web browser; the schema registry endpoint answers registry clients only"
            ),
        ),
        Some(err) => {
            let (status, description) = err.status_and_description();
            confluent_error(status, u32::from(status.as_u16()), &description)
        }
        None => next.run(request).await,
    };
    response
        .headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, crate::endpoint::NOSNIFF);
    shared
        .metrics
        .count_request(route, response.status().as_u16());
    response
}

async fn metrics_exposition(State(shared): State<Arc<Shared>>) -> Response {
    let mut response = (StatusCode::OK, shared.render_metrics()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

/// Forwards one request and translates or streams the answer.
async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let had_authorization = parts.headers.contains_key(header::AUTHORIZATION);
    if had_authorization {
        if !shared
            .told_about_authorization
            .swap(true, Ordering::Relaxed)
        {
            tracing::info!(
                "a schema registry client sent its own Authorization header; it is not needed and is never forwarded (logged once; later ones at debug level)"
            );
        } else {
            tracing::debug!("dropped a schema registry client's Authorization header");
        }
    }
    let mut response = forward_parts(&shared, parts, body).await;
    if had_authorization {
        response.headers_mut().insert(
            AUTHORIZATION_NOTE_HEADER,
            HeaderValue::from_static(AUTHORIZATION_NOTE),
        );
    }
    response
}

async fn forward_parts(shared: &Shared, parts: http::request::Parts, body: Body) -> Response {
    let method = parts.method.clone();
    if !matches!(
        method,
        Method::GET | Method::POST | Method::PUT | Method::DELETE | Method::HEAD
    ) {
        return confluent_error(
            StatusCode::METHOD_NOT_ALLOWED,
            405,
            "the schema registry API answers GET, POST, PUT and DELETE only",
        );
    }
    let path = parts.uri.path();
    if escapes_the_registry(path) {
        return confluent_error(
            StatusCode::BAD_REQUEST,
            400,
            "the path has `.` or `..` segments; the endpoint forwards paths under the schema registry only",
        );
    }
    let route = Route::of(path);
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A declared length over the cap is refused before a byte is read, so hyper never sends
    // `100 Continue` for it; an undeclared one is counted on its way (`CappedBody`).
    if declared.is_some_and(|n| n > shared.max_request_bytes as u64) {
        return too_large(shared.max_request_bytes);
    }
    let cache_key = (method == Method::GET
        && route == Route::SchemaId
        && !path.trim_end_matches('/').ends_with("/subjects"))
    .then(|| path_and_query.clone());
    if let Some(key) = &cache_key {
        let hit = shared.cache.get(key);
        shared.metrics.count_cache(hit.is_some());
        if let Some(cached) = hit {
            let mut response = Response::new(Body::from(cached.body));
            if let Some(content_type) = cached.content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            return response;
        }
    }
    let token = match shared.provider.token().await {
        Ok(token) => token,
        Err(err) => {
            return match err.kind() {
                TokenErrorKind::Unavailable => confluent_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    50003,
                    &format!(
                        "no Google access token is available to call the schema registry with: {err}"
                    ),
                ),
                TokenErrorKind::Rejected => confluent_error(
                    StatusCode::UNAUTHORIZED,
                    40101,
                    &format!(
                        "the endpoint's Google credentials do not work: {err}; check them with `gcp-kafka-auth-handler doctor`"
                    ),
                ),
            };
        }
    };
    let base = match shared.api().await {
        Ok(base) => base,
        Err(err) => {
            return confluent_error(
                StatusCode::SERVICE_UNAVAILABLE,
                50003,
                &(shared.wording)(&err),
            );
        }
    };
    let url = format!("{base}/v1/{}{path_and_query}", shared.name);
    let mut upstream = shared
        .client
        .request(method.clone(), &url)
        .bearer_auth(token.access_token().expose_secret());
    for name in [header::CONTENT_TYPE, header::ACCEPT] {
        for value in parts.headers.get_all(&name) {
            upstream = upstream.header(&name, value);
        }
    }
    if let Some(project) = &shared.quota_project {
        upstream = upstream.header("x-goog-user-project", project);
    }
    let over_cap = Arc::new(AtomicBool::new(false));
    if !body.is_end_stream() {
        upstream = upstream.body(reqwest::Body::wrap(CappedBody {
            inner: std::sync::Mutex::new(body),
            seen: 0,
            limit: shared.max_request_bytes,
            over: over_cap.clone(),
        }));
    }
    let started = Instant::now();
    let sent = upstream.send().await;
    shared
        .metrics
        .observe_upstream(route.label(), started.elapsed());
    let answer = match sent {
        Ok(answer) => answer,
        Err(_) if over_cap.load(Ordering::Relaxed) => {
            return too_large(shared.max_request_bytes);
        }
        Err(err) => {
            // The URL holds no secret (the token travels in a header).
            let unreachable = RegistryError::Unreachable {
                url: url.split('?').next().unwrap_or_default().to_owned(),
                detail: error_chain(&err),
            };
            return confluent_error(
                StatusCode::BAD_GATEWAY,
                50003,
                &(shared.wording)(&unreachable),
            );
        }
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    if status.is_client_error() || status.is_server_error() {
        let body = match read_answer(answer, MAX_ERROR_BODY).await {
            Ok((body, _)) => body,
            Err(detail) => {
                return confluent_error(
                    StatusCode::BAD_GATEWAY,
                    50003,
                    &format!("the schema registry's {status} answer could not be read: {detail}"),
                );
            }
        };
        let ctx = errors::Context {
            route,
            method: &method,
            registry: &shared.name,
            principal: token.principal().as_str(),
            quota_project: shared.quota_project.as_deref(),
        };
        tracing::debug!(
            status = status.as_u16(),
            route = route.label(),
            "the schema registry answered an error"
        );
        return match errors::translate(status.as_u16(), &body, &ctx) {
            Some((out, json)) => {
                let out = StatusCode::from_u16(out).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut response = (out, json).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(CONFLUENT_CONTENT_TYPE),
                );
                response
            }
            None => with_content_type(Response::new(Body::from(body)), status, content_type),
        };
    }
    if let Some(key) = cache_key.filter(|_| status == StatusCode::OK) {
        return match read_answer(answer, shared.cache.max_body()).await {
            Ok((body, None)) => {
                shared.cache.insert(
                    key,
                    Cached {
                        content_type: content_type.clone(),
                        body: body.clone(),
                    },
                );
                with_content_type(Response::new(Body::from(body)), status, content_type)
            }
            // Too large to cache: what was read, then the rest as it comes.
            Ok((head, Some(rest))) => with_content_type(
                Response::new(Body::new(Prefixed {
                    head: Some(head),
                    rest,
                })),
                status,
                content_type,
            ),
            Err(detail) => confluent_error(
                StatusCode::BAD_GATEWAY,
                50003,
                &format!("the schema registry's answer could not be read: {detail}"),
            ),
        };
    }
    let answer: http::Response<reqwest::Body> = answer.into();
    with_content_type(
        Response::new(Body::new(answer.into_body())),
        status,
        content_type,
    )
}

fn with_content_type(
    mut response: Response,
    status: StatusCode,
    content_type: Option<HeaderValue>,
) -> Response {
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

/// Reads at most `limit` bytes of an answer: the whole body and `None`, or the bytes read so
/// far and the rest of the body when it is longer.
async fn read_answer(
    answer: reqwest::Response,
    limit: usize,
) -> Result<(Bytes, Option<reqwest::Body>), String> {
    let answer: http::Response<reqwest::Body> = answer.into();
    let mut body = answer.into_body();
    let mut collected = BytesMut::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| error_chain(&e))?;
        if let Ok(data) = frame.into_data() {
            collected.extend_from_slice(&data);
            if collected.len() > limit {
                return Ok((collected.freeze(), Some(body)));
            }
        }
    }
    Ok((collected.freeze(), None))
}

/// Bytes already read, then the rest of an upstream body.
struct Prefixed {
    head: Option<Bytes>,
    rest: reqwest::Body,
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, reqwest::Error>>> {
        if let Some(head) = self.head.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(head))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }
}

/// Whether `path` has a `.` or `..` segment, in any spelling a URL parser resolves: URL
/// normalisation would otherwise turn `/../../clusters/C` (or `/%2e%2e/…`, or `\` for `/`)
/// into a call outside the registry, to another Managed Kafka API, with the sidecar's token.
fn escapes_the_registry(path: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    decoded
        .split(['/', '\\'])
        .any(|segment| segment == "." || segment == "..")
}

/// 413 in Confluent's shape.
fn too_large(limit: usize) -> Response {
    confluent_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        413,
        &format!("the request body is larger than {limit} bytes, the endpoint's limit"),
    )
}

/// The client's request body on its way to Google, streamed: counted, and cut off with an
/// error once past `limit` (`over` then tells the handler to answer 413 rather than 502).
/// The mutex only makes the body `Sync`, which reqwest asks of a streamed body; it is never
/// contended (`get_mut`).
struct CappedBody {
    inner: std::sync::Mutex<Body>,
    seen: usize,
    limit: usize,
    over: Arc<AtomicBool>,
}

impl HttpBody for CappedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::BoxError>>> {
        use std::task::Poll;
        let CappedBody {
            inner,
            seen,
            limit,
            over,
        } = self.get_mut();
        let inner = inner.get_mut().unwrap_or_else(|p| p.into_inner());
        match std::pin::Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *seen += data.len();
                    if *seen > *limit {
                        over.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(format!(
                            "the request body is larger than {limit} bytes"
                        )
                        .into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.inner.lock() {
            Ok(inner) => inner.size_hint(),
            Err(_) => hyper::body::SizeHint::default(),
        }
    }
}

/// What `client-config --client schema-registry` prints: the registry URL for each client,
/// and nothing else to set.
pub fn client_config(url: &str) -> String {
    format!(
        "\
# Clients of `gcp-kafka-auth-handler schema-registry` (or `--schema-registry` on serve/proxy)
# set only the registry URL: the endpoint adds Google's bearer token, the registry path and
# the quota project. No basic.auth.*, bearer.auth.* or Confluent Cloud settings.

# Python (confluent-kafka):
#   from confluent_kafka.schema_registry import SchemaRegistryClient
#   client = SchemaRegistryClient({{\"url\": \"{url}\"}})

# Go (confluent-kafka-go v2):
#   client, err := schemaregistry.NewClient(schemaregistry.NewConfig(\"{url}\"))

# Node (@kafkajs/confluent-schema-registry):
#   const registry = new SchemaRegistry({{ host: '{url}' }})

# Java (Confluent serializers, Kafka Connect, ksqlDB), properties:
schema.registry.url={url}
"
    )
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
