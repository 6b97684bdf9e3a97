//! Google Application Default Credentials → the SASL/OAUTHBEARER token Google Cloud Managed
//! Service for Apache Kafka accepts.
//!
//! Kafka clients that can only be given an OAuth2 token endpoint URL (the Apache Kafka Java
//! client, Beam's KafkaIO, librdkafka) point at the endpoint this crate serves; Rust programs
//! can also take tokens straight from a [`KafkaTokenProvider`].
//!
//! # Layout
//!
//! - [`credentials`]: where Google access tokens come from: one module per credential type and
//!   the Application Default Credentials search.
//! - [`principal`]: the `sub` claim and its rules.
//! - [`kafka_token`]: the JWT-shaped token Managed Kafka accepts.
//! - `cache` (private): the background refresh task and the shared, lock-free-to-read cache.
//! - [`provider`]: [`KafkaTokenProvider`], the cache's public face, and its builder.
//! - `token_response` (private): the OAuth2 token response body, rendered once per refresh.
//! - [`doctor`]: the `doctor` command's checks: which credentials, whose, and whether a token
//!   can be served, explained without secrets.
//! - [`endpoint`]: the axum router: token endpoint, `/healthz`, `/readyz`, `/metrics`, and
//!   the checks in front of them (`Host`, browsers, client authentication).
//! - [`metrics`]: Prometheus metrics of the endpoint and the refresh task.
//! - [`server`]: serving a router on a listener within connection limits, with graceful
//!   shutdown.
//! - [`client_config`]: ready-to-paste Kafka client configuration for the endpoint.
//! - [`env`]: the one seam through which environment variables are read.
//!
//! # Example: mount the endpoint in an axum application
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gcp_kafka_auth_handler::KafkaTokenProvider;
//! let provider = KafkaTokenProvider::builder().build()?;
//! let app = axum::Router::new().nest("/oauth/token", provider.router());
//! # let _ = app; Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
pub mod client_config;
pub mod credentials;
pub mod doctor;
pub mod endpoint;
pub mod env;
pub mod kafka_token;
pub mod metrics;
pub mod principal;
pub mod provider;
pub mod server;
mod token_response;

pub use cache::CacheTiming;
pub use env::Env;
pub use kafka_token::KafkaToken;
pub use principal::Principal;
pub use provider::{KafkaTokenProvider, ProviderBuilder, TokenError, TokenErrorKind};
