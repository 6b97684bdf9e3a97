//! rdkafka clients that authenticate to Managed Kafka with tokens from a
//! [`KafkaTokenProvider`], without a sidecar (feature `rdkafka`).
//!
//! librdkafka asks for an OAUTHBEARER token through
//! [`ClientContext::generate_oauth_token`] when a client starts and again at 80 % of each
//! token's remaining life. [`ManagedKafkaContext`] answers from the provider's cache, so every
//! client in the process shares one Google token and one refresh task.
//!
//! ```no_run
//! use std::time::Duration;
//! use gcp_kafka_auth_handler::KafkaTokenProvider;
//! use gcp_kafka_auth_handler::rdkafka::{ManagedKafkaContext, client_config};
//! use rdkafka::producer::{FutureProducer, FutureRecord};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let provider = KafkaTokenProvider::builder().build()?; // Application Default Credentials
//!     provider.token().await?; // fail early when the credentials are wrong
//!     let producer: FutureProducer<ManagedKafkaContext> =
//!         client_config("bootstrap.CLUSTER.REGION.managedkafka.PROJECT.cloud.goog:9092")
//!             .create_with_context(ManagedKafkaContext::new(provider))?;
//!     producer
//!         .send(FutureRecord::to("my-topic").key("k").payload("hello"), Duration::from_secs(10))
//!         .await
//!         .map_err(|(err, _)| err)?;
//!     Ok(())
//! }
//! ```
//!
//! # Threads and runtimes
//!
//! `generate_oauth_token` is synchronous and runs on whichever thread polls the client:
//! rdkafka's own polling thread for `FutureProducer` and `ThreadedProducer`, your thread for
//! `BaseProducer`/`BaseConsumer`, a tokio worker for `StreamConsumer`. With a warm cache it
//! returns at once; otherwise it waits as [`KafkaTokenProvider::blocking_token`] does (at
//! most 15 s, without stalling other tokio tasks). On a current-thread tokio runtime it cannot
//! wait, so the first call fails and librdkafka asks again 10 s later: await
//! [`KafkaTokenProvider::token`] once before creating the client, as above.
//!
//! # Your own context
//!
//! Consumer rebalance callbacks receive the consumer typed by its context, so a wrapper cannot
//! forward them; instead, keep a [`ManagedKafkaContext`] in your context and forward the one
//! token method to it:
//!
//! ```no_run
//! use gcp_kafka_auth_handler::rdkafka::ManagedKafkaContext;
//! use rdkafka::client::{ClientContext, OAuthToken};
//! use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
//!
//! struct MyContext {
//!     kafka_auth: ManagedKafkaContext,
//! }
//!
//! impl ClientContext for MyContext {
//!     const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;
//!
//!     fn generate_oauth_token(
//!         &self,
//!         config: Option<&str>,
//!     ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
//!         self.kafka_auth.generate_oauth_token(config)
//!     }
//! }
//!
//! impl ConsumerContext for MyContext {
//!     fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
//!         println!("rebalanced: {rebalance:?}");
//!     }
//! }
//! ```

use std::error::Error;

use ::rdkafka::ClientConfig;
use ::rdkafka::client::{ClientContext, OAuthToken};
use ::rdkafka::consumer::ConsumerContext;
use ::rdkafka::producer::{DeliveryResult, ProducerContext};

use crate::provider::{KafkaTokenProvider, TokenError};

/// A `ClientContext` whose OAUTHBEARER tokens come from a [`KafkaTokenProvider`].
///
/// Usable as the context of every rdkafka client: `FutureProducer`, `ThreadedProducer`,
/// `BaseProducer` (deliveries are not reported), `StreamConsumer` and `BaseConsumer` (default
/// rebalancing). Logs, statistics and errors take rdkafka's default paths (the `log` crate).
///
/// ```
/// use gcp_kafka_auth_handler::KafkaTokenProvider;
/// use gcp_kafka_auth_handler::rdkafka::{ManagedKafkaContext, client_config};
/// use rdkafka::producer::BaseProducer;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let provider = KafkaTokenProvider::builder()
/// #     .with_env(gcp_kafka_auth_handler::Env::from_pairs([("GCE_METADATA_HOST", "127.0.0.1:1")]))
/// #     .build()?;
/// let context = ManagedKafkaContext::new(provider);
/// let producer: BaseProducer<ManagedKafkaContext> =
///     client_config("127.0.0.1:9092").create_with_context(context)?;
/// # drop(producer); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ManagedKafkaContext {
    provider: KafkaTokenProvider,
}

impl ManagedKafkaContext {
    /// A context that takes its tokens from `provider` (a clone shares the cache).
    pub fn new(provider: KafkaTokenProvider) -> Self {
        Self { provider }
    }

    /// The provider the tokens come from.
    pub fn provider(&self) -> &KafkaTokenProvider {
        &self.provider
    }

    /// The current token as librdkafka takes it: the Kafka token, the principal, and the
    /// Google token's expiry in milliseconds since the Unix epoch. Blocks as
    /// [`KafkaTokenProvider::blocking_token`] does when no token is cached.
    ///
    /// ```no_run
    /// # fn run(context: gcp_kafka_auth_handler::rdkafka::ManagedKafkaContext) -> Result<(), Box<dyn std::error::Error>> {
    /// let token = context.oauth_token()?;
    /// println!("{} until {} ms", token.principal_name, token.lifetime_ms);
    /// # Ok(()) }
    /// ```
    pub fn oauth_token(&self) -> Result<OAuthToken, TokenError> {
        let token = self.provider.blocking_token()?;
        tracing::debug!(
            principal = %token.principal(),
            exp = token.expires_at_unix(),
            "handing a Kafka token to librdkafka"
        );
        Ok(OAuthToken {
            token: token.expose().to_owned(),
            principal_name: token.principal().as_str().to_owned(),
            // `lifetime_ms` is an absolute time despite its name (librdkafka's
            // `md_lifetime_ms`), and i64 milliseconds reach far beyond any real expiry.
            lifetime_ms: i64::try_from(token.expires_at_unix())
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
        })
    }
}

impl ClientContext for ManagedKafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    /// Answers librdkafka's token request from the provider; `sasl.oauthbearer.config` is
    /// not used. An error reaches librdkafka as the reason of a failed token refresh, which it
    /// reports as an authentication error and retries 10 s later.
    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn Error>> {
        Ok(self.oauth_token()?)
    }
}

impl ConsumerContext for ManagedKafkaContext {}

impl ProducerContext for ManagedKafkaContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// A client configuration for Managed Kafka: `bootstrap.servers`, `security.protocol=SASL_SSL`
/// and `sasl.mechanism=OAUTHBEARER`. Add the rest of your settings before creating the client
/// with a [`ManagedKafkaContext`].
///
/// ```
/// let config = gcp_kafka_auth_handler::rdkafka::client_config("bootstrap.c.r.managedkafka.p.cloud.goog:9092");
/// assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
/// assert_eq!(config.get("sasl.mechanism"), Some("OAUTHBEARER"));
/// ```
pub fn client_config(bootstrap_servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "OAUTHBEARER");
    config
}
