//! Google Application Default Credentials → the SASL/OAUTHBEARER token Google Cloud Managed
//! Service for Apache Kafka accepts.
//!
//! Managed Kafka wants a Google access token wrapped in a three-part, JWT-shaped value
//! ([`KafkaToken`]). This crate fetches the Google token from Application Default
//! Credentials, wraps it, caches it and refreshes it in the background, and hands it out in
//! three ways:
//!
//! 1. **An OAuth2 token endpoint** for clients that can only be given a token URL (the Apache
//!    Kafka Java client, Beam's KafkaIO, librdkafka's `oidc` method): the
//!    `gcp-kafka-auth-handler` binary serves it on `localhost:14293`, and
//!    [`KafkaTokenProvider::router`] returns it as an axum `Router` (a tower `Service`) to
//!    mount in your own server.
//! 2. **[`KafkaTokenProvider`]** for Rust code that needs the token itself.
//! 3. **the `rdkafka` module** (feature `rdkafka`): a `ClientContext` with which an
//!    rdkafka producer or consumer authenticates to Managed Kafka, no sidecar needed.
//!
//! # Mount the endpoint in an axum application
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gcp_kafka_auth_handler::KafkaTokenProvider;
//! let provider = KafkaTokenProvider::builder().build()?;
//! let app = axum::Router::new().nest("/oauth/token", provider.router());
//! # let _ = app; Ok(()) }
//! ```
//!
//! Kafka clients then use `http://<host>:<port>/oauth/token` as their token endpoint URL.
//!
//! # Take tokens from the provider
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gcp_kafka_auth_handler::KafkaTokenProvider;
//! let provider = KafkaTokenProvider::builder().build()?;
//! let token = provider.token().await?;
//! println!("token for {} valid until {}", token.principal(), token.expires_at_unix());
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `cli` (on by default): the `gcp-kafka-auth-handler` binary and the dependencies only it
//!   uses (clap, clap_complete, tracing-subscriber, anyhow, humantime, tempfile). A library
//!   user sets `default-features = false`; the library's API is the same either way, but
//!   for the `proxy` module, which `cli` turns on.
//! - `proxy` (on with `cli`): the [`proxy`] module, the Kafka-protocol proxy (kafka-protocol,
//!   rustls, tokio-rustls). A library user adds `features = ["proxy"]`.
//! - `schema-registry` (on with `cli`): the [`registry`] module, the local schema registry
//!   endpoint. No dependencies of its own; a library user adds `features = ["schema-registry"]`.
//! - `rdkafka` (off by default): the `rdkafka` module. It builds
//!   librdkafka from source (static, with OpenSSL: a C compiler, `make`, `perl` and the
//!   OpenSSL headers must be installed).
//!
//! # Layout
//!
//! Public:
//! - [`KafkaTokenProvider`], [`ProviderBuilder`]: the cache's public face and its builder.
//! - [`credentials`]: where Google access tokens come from: one module per credential type,
//!   the Application Default Credentials search, and the [`CredentialSource`] trait for your
//!   own.
//! - [`endpoint`]: the axum router: token endpoint, `/healthz`, `/readyz`, `/metrics`, and
//!   the checks in front of them ([`endpoint::EndpointConfig`]: `Host`, browsers, client
//!   authentication).
//! - [`metrics`]: Prometheus metrics of the endpoint and the refresh task.
//! - [`proxy`] (feature `proxy`): the Kafka-protocol proxy that authenticates every client
//!   connection to Managed Kafka itself and rewrites broker addresses
//!   ([`proxy::Proxy`]).
//! - [`registry`] (feature `schema-registry`): a local, Confluent-compatible schema registry
//!   endpoint for Managed Kafka's schema registry, as an axum `Router`
//!   ([`registry::SchemaRegistryEndpoint`]): Google's bearer token added, errors in
//!   Confluent's shape, schemas by id cached.
//! - [`server`]: serving a router on a listener within connection limits
//!   ([`server::Limits`]), with graceful shutdown (what the binary does).
//! - [`doctor`]: the `doctor` command's checks: which credentials, whose, and whether a token
//!   can be served, explained without secrets.
//! - [`client_config`]: ready-to-paste Kafka client configuration for the endpoint.
//! - `rdkafka` (feature `rdkafka`): the librdkafka client context.
//! - [`KafkaToken`], [`Principal`], [`Env`]: the token, the `sub` claim, the environment seam.
//!
//! Private: `cache` (the background refresh task and the shared, lock-free-to-read cache),
//! `token_response` (the OAuth2 response body, rendered once per refresh), `kafka_token`,
//! `principal`, `env` and `provider` (their public types are re-exported here).
//!
//! [`CredentialSource`]: credentials::CredentialSource
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(hidden)]
pub mod bench_hooks;
mod cache;
pub mod client_config;
mod connection_slots;
pub mod credentials;
pub mod doctor;
pub mod endpoint;
mod env;
pub mod files;
mod kafka_token;
pub mod metrics;
mod principal;
mod provider;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub mod proxy;
#[cfg(feature = "rdkafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "rdkafka")))]
pub mod rdkafka;
#[cfg(feature = "schema-registry")]
#[cfg_attr(docsrs, doc(cfg(feature = "schema-registry")))]
pub mod registry;
#[cfg(any(feature = "proxy", feature = "schema-registry"))]
mod resource_name;
pub mod server;
mod token_response;

pub use cache::CacheTiming;
pub use env::Env;
pub use kafka_token::KafkaToken;
pub use principal::{PRINCIPAL_OVERRIDE_VAR, Principal, PrincipalError};
pub use provider::{
    BuildError, ImpersonationChain, ImpersonationChainError, KafkaTokenProvider, ProviderBuilder,
    TokenError, TokenErrorKind,
};
