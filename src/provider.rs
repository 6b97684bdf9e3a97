//! [`KafkaTokenProvider`]: the public face of the cache, for Rust programs and the endpoint.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;

use crate::cache::{CacheTiming, SERVE_FLOOR, TokenCache};
use crate::credentials::adc::ApplicationDefault;
use crate::credentials::impersonated::Impersonated;
use crate::credentials::{CredentialSource, HttpClientError, HttpClients};
use crate::env::Env;
use crate::kafka_token::KafkaToken;
use crate::metrics::{Metrics, RefreshMetrics};
use crate::principal::{PRINCIPAL_OVERRIDE_VAR, Principal, PrincipalError};

/// Longest refresh margin accepted. Google's tokens live about 3600 s, so a margin near that
/// is a mistake (seconds meant, minutes written, or the reverse) rather than a wish; the cache
/// never refreshes before half a token's life anyway.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(3000);

/// The `retry_after` of a blocking call refused on a current-thread runtime: the caller can
/// retry as soon as the first fetch may have finished, which is typically within a second.
const RETRY_AFTER_CURRENT_THREAD: Duration = Duration::from_secs(1);

/// Kafka tokens for one set of Google credentials, cached and refreshed in the background.
///
/// Build one per process with [`KafkaTokenProvider::builder`] and share it: clones are cheap
/// and share the cache, so every Kafka client, the endpoint and your own code cause one
/// upstream call per refresh between them. The background refresh starts at
/// [`build`](ProviderBuilder::build) and stops when the last clone is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use gcp_kafka_auth_handler::KafkaTokenProvider;
/// let provider = KafkaTokenProvider::builder().build()?; // Application Default Credentials
/// let token = provider.token().await?;
/// println!("{} until {}", token.principal(), token.expires_at_unix());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KafkaTokenProvider {
    cache: TokenCache,
    source: Arc<dyn CredentialSource>,
    metrics: Arc<Metrics>,
    /// The runtime the refresh task runs on, for callers outside any runtime.
    runtime: Handle,
}

impl std::fmt::Debug for KafkaTokenProvider {
    // What a person needs to see; never the cached token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTokenProvider")
            .field("source", &self.source.describe())
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// Configures a [`KafkaTokenProvider`]; every setting is optional.
///
/// Without settings the provider uses Application Default Credentials (as `gcloud` and
/// Google's client libraries find them), learns the principal from them unless
/// `GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL` is set, and refreshes 5 minutes before expiry.
/// Access tokens are always requested for the `cloud-platform` scope, the one Managed Kafka
/// accepts.
///
/// ```
/// use std::time::Duration;
/// use gcp_kafka_auth_handler::credentials::metadata_server::MetadataServer;
/// use gcp_kafka_auth_handler::{Env, KafkaTokenProvider};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gcp_kafka_auth_handler::BuildError> {
/// let provider = KafkaTokenProvider::builder()
///     // An explicit source instead of the ADC search (here: the metadata server).
///     .with_credentials(MetadataServer::builder().with_host("127.0.0.1:1").build())
///     // The `sub` claim, instead of the service account's email.
///     .with_principal("app@my-project.iam.gserviceaccount.com")
///     .with_refresh_margin(Duration::from_secs(600))
///     // Variables are read from this map, not from the process environment.
///     .with_env(Env::from_pairs([("GCE_METADATA_HOST", "127.0.0.1:1")]))
///     .build()?;
/// assert!(!provider.is_ready()); // nothing listens on port 1: no token yet
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct ProviderBuilder {
    source: Option<Arc<dyn CredentialSource>>,
    env: Option<Env>,
    principal: Option<String>,
    timing: CacheTiming,
    http: Option<HttpClients>,
    impersonate: Option<ImpersonationChain>,
}

/// `--impersonate-service-account`: the target and the delegates in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpersonationChain {
    /// The account whose tokens are served.
    pub target: String,
    /// Accounts between the credentials and the target, in call order.
    pub delegates: Vec<String>,
}

impl ImpersonationChain {
    /// Parses gcloud's syntax: a comma-separated chain of service-account emails whose last
    /// entry is the target and whose others are delegates, in order.
    ///
    /// ```
    /// use gcp_kafka_auth_handler::ImpersonationChain;
    /// let chain = ImpersonationChain::parse("hop@p.iam.gserviceaccount.com,kafka@p.iam.gserviceaccount.com").unwrap();
    /// assert_eq!(chain.target, "kafka@p.iam.gserviceaccount.com");
    /// assert_eq!(chain.delegates, ["hop@p.iam.gserviceaccount.com"]);
    /// ```
    pub fn parse(text: &str) -> Result<Self, ImpersonationChainError> {
        let mut accounts: Vec<String> = text
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if let Some(bad) = accounts.iter().find(|a| !a.contains('@')) {
            return Err(ImpersonationChainError::NotAnEmail { entry: bad.clone() });
        }
        let target = accounts.pop().ok_or(ImpersonationChainError::Empty)?;
        Ok(Self {
            target,
            delegates: accounts,
        })
    }
}

/// Why an impersonation chain could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImpersonationChainError {
    /// An entry is not an email address.
    #[error("`{entry}` is not a service-account email; write EMAIL or DELEGATE,...,EMAIL")]
    NotAnEmail {
        /// The entry, as given.
        entry: String,
    },
    /// No account was given at all.
    #[error("no service account to impersonate was given; write EMAIL or DELEGATE,...,EMAIL")]
    Empty,
}

impl std::fmt::Debug for ProviderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderBuilder")
            .field("source", &self.source)
            .field("env", &self.env)
            .field("principal", &self.principal)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

/// Why a provider could not be built.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use gcp_kafka_auth_handler::{BuildError, KafkaTokenProvider};
/// let err = KafkaTokenProvider::builder().with_principal("nobody").build().unwrap_err();
/// assert!(matches!(err, BuildError::Principal(_)));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The principal given (or in `GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL`) is not usable.
    #[error("invalid principal override: {0}")]
    Principal(#[from] PrincipalError),
    /// The refresh margin is longer than [`ProviderBuilder::with_refresh_margin`] allows.
    #[error(
        "the refresh margin is {} s; it must be at most {} s (tokens live about 3600 s)",
        .margin.as_secs(),
        .max.as_secs()
    )]
    RefreshMargin {
        /// The margin given.
        margin: Duration,
        /// The longest margin accepted.
        max: Duration,
    },
    /// [`ProviderBuilder::build`] was called outside a tokio runtime.
    #[error(
        "KafkaTokenProvider must be built inside a tokio runtime, where its refresh task runs: \
         call build() from async code or inside `Runtime::enter()`"
    )]
    NoRuntime,
    /// The HTTPS clients for Google could not be created.
    #[error(transparent)]
    Http(#[from] HttpClientError),
}

impl ProviderBuilder {
    /// Uses these credentials instead of Application Default Credentials: one of the sources
    /// in [`credentials`](crate::credentials), or your own [`CredentialSource`].
    ///
    /// ```
    /// use gcp_kafka_auth_handler::credentials::service_account::ServiceAccountKey;
    /// use gcp_kafka_auth_handler::KafkaTokenProvider;
    /// # fn key_json() -> Vec<u8> {
    /// #     serde_json::to_vec(&serde_json::json!({"type": "service_account",
    /// #         "client_email": "app@p.iam.gserviceaccount.com", "private_key_id": "k",
    /// #         "private_key": fake_google::fixture_private_key_pem(),
    /// #         "token_uri": "http://127.0.0.1:1/token"})).unwrap()
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = ServiceAccountKey::from_json(&key_json())?;
    /// let provider = KafkaTokenProvider::builder().with_credentials(key).build()?;
    /// assert!(provider.describe_source().contains("app@p.iam.gserviceaccount.com"));
    /// # Ok(()) }
    /// ```
    pub fn with_credentials(mut self, source: impl CredentialSource + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Uses a credential source shared with other code.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use gcp_kafka_auth_handler::credentials::CredentialSource;
    /// use gcp_kafka_auth_handler::credentials::metadata_server::MetadataServer;
    /// use gcp_kafka_auth_handler::KafkaTokenProvider;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: Arc<dyn CredentialSource> =
    ///     Arc::new(MetadataServer::builder().with_host("127.0.0.1:1").build());
    /// let provider = KafkaTokenProvider::builder()
    ///     .with_shared_credentials(source.clone())
    ///     .build()?;
    /// assert_eq!(provider.describe_source(), source.describe());
    /// # Ok(()) }
    /// ```
    pub fn with_shared_credentials(mut self, source: Arc<dyn CredentialSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Reads ADC variables (`GOOGLE_APPLICATION_CREDENTIALS`, `CLOUDSDK_CONFIG`, `HOME`,
    /// `GCE_METADATA_HOST`, ...) and the principal override from `env` instead of the process
    /// environment.
    ///
    /// ```
    /// use gcp_kafka_auth_handler::{Env, KafkaTokenProvider};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let env = Env::from_pairs([("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", "not a principal")]);
    /// let err = KafkaTokenProvider::builder().with_env(env).build().unwrap_err();
    /// assert!(err.to_string().contains("not a principal"));
    /// # Ok(()) }
    /// ```
    pub fn with_env(mut self, env: Env) -> Self {
        self.env = Some(env);
        self
    }

    /// Sets the principal (`sub`) instead of learning it from the credentials. Wins over
    /// `GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL`. It must be an email address or a
    /// `principal://iam.googleapis.com/...` identifier; [`build`](Self::build) checks it.
    ///
    /// ```
    /// use gcp_kafka_auth_handler::KafkaTokenProvider;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// assert!(KafkaTokenProvider::builder().with_principal("a@b.iam.gserviceaccount.com").build().is_ok());
    /// assert!(KafkaTokenProvider::builder().with_principal("my-proj.svc.id.goog").build().is_err());
    /// # }
    /// ```
    pub fn with_principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Refreshes when this much of a token's life is left (default 5 minutes, at most 50
    /// minutes); never before half its life has passed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gcp_kafka_auth_handler::KafkaTokenProvider;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let too_long = KafkaTokenProvider::builder().with_refresh_margin(Duration::from_secs(3601));
    /// assert!(too_long.build().unwrap_err().to_string().contains("at most 3000 s"));
    /// # }
    /// ```
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.timing.refresh_margin = margin;
        self
    }

    /// Replaces all cache timings at once (backoff, fetch timeout, how long a request waits).
    ///
    /// ```
    /// use std::time::Duration;
    /// use gcp_kafka_auth_handler::{CacheTiming, KafkaTokenProvider};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut timing = CacheTiming::default();
    /// timing.request_wait = Duration::from_secs(5);
    /// let provider = KafkaTokenProvider::builder().with_timing(timing).build()?;
    /// # let _ = provider; Ok(()) }
    /// ```
    pub fn with_timing(mut self, timing: CacheTiming) -> Self {
        self.timing = timing;
        self
    }

    /// Impersonates a service account with whatever credentials are configured, as
    /// `gcloud --impersonate-service-account` does; the principal becomes the target.
    pub fn with_impersonation(mut self, chain: ImpersonationChain) -> Self {
        self.impersonate = Some(chain);
        self
    }

    /// Uses these HTTP clients for the ADC sources (share connection pools with other code).
    ///
    /// ```
    /// use gcp_kafka_auth_handler::credentials::HttpClients;
    /// use gcp_kafka_auth_handler::KafkaTokenProvider;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let provider = KafkaTokenProvider::builder().with_http(HttpClients::try_new()?).build()?;
    /// # let _ = provider; Ok(()) }
    /// ```
    pub fn with_http(mut self, http: HttpClients) -> Self {
        self.http = Some(http);
        self
    }

    /// Validates the configuration and starts the background refresh (the first fetch starts
    /// at once). Must be called inside a tokio runtime, which the refresh task then runs on.
    ///
    /// ```
    /// use gcp_kafka_auth_handler::{BuildError, KafkaTokenProvider};
    /// let outside = KafkaTokenProvider::builder().build();
    /// assert!(matches!(outside, Err(BuildError::NoRuntime)));
    /// ```
    pub fn build(self) -> Result<KafkaTokenProvider, BuildError> {
        let runtime = Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let env = self.env.unwrap_or_else(Env::from_process);
        let principal = match self
            .principal
            .or_else(|| env.get(PRINCIPAL_OVERRIDE_VAR).map(str::to_owned))
        {
            Some(p) => Some(Principal::new(p)?),
            None => None,
        };
        if self.timing.refresh_margin > MAX_REFRESH_MARGIN {
            return Err(BuildError::RefreshMargin {
                margin: self.timing.refresh_margin,
                max: MAX_REFRESH_MARGIN,
            });
        }
        let http = match self.http {
            Some(http) => http,
            None => HttpClients::shared()?,
        };
        let mut source = self
            .source
            .unwrap_or_else(|| Arc::new(ApplicationDefault::new(env.clone(), http.clone())));
        if let Some(chain) = self.impersonate {
            source = Arc::new(
                Impersonated::new(source, chain.target)
                    .with_delegates(chain.delegates)
                    .with_env(&env)
                    .with_http(&http),
            );
        }
        let refresh_metrics = RefreshMetrics::new();
        let cache = TokenCache::start(
            source.clone(),
            principal,
            self.timing,
            Arc::new(refresh_metrics.clone()),
        );
        Ok(KafkaTokenProvider {
            metrics: Arc::new(Metrics::new(cache.clone(), &refresh_metrics)),
            cache,
            source,
            runtime,
        })
    }
}

/// Why no token could be had.
///
/// Its message says what is wrong and how to fix it, and never contains a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    kind: TokenErrorKind,
    message: String,
    retry_after: Duration,
}

/// Whether waiting may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenErrorKind {
    /// Google is unreachable or failing, or no credentials were found yet: try again later.
    Unavailable,
    /// The credentials are wrong or were refused: somebody must fix them.
    Rejected,
}

impl TokenError {
    /// Whether waiting may help.
    pub fn kind(&self) -> TokenErrorKind {
        self.kind
    }

    /// When the next refresh attempt is due.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl From<crate::cache::Unavailable> for TokenError {
    fn from(u: crate::cache::Unavailable) -> Self {
        let kind = if u.error.is_transient() {
            TokenErrorKind::Unavailable
        } else {
            TokenErrorKind::Rejected
        };
        Self {
            kind,
            message: u.error.message().to_owned(),
            retry_after: u.retry_after,
        }
    }
}

impl KafkaTokenProvider {
    /// A builder; without settings it uses Application Default Credentials.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let provider = gcp_kafka_auth_handler::KafkaTokenProvider::builder().build()?;
    /// # let _ = provider; Ok(()) }
    /// ```
    pub fn builder() -> ProviderBuilder {
        ProviderBuilder::default()
    }

    /// The current Kafka token. Returns at once with a warm cache; otherwise waits for the
    /// refresh in progress (at most 15 s by default), or fails at once with the last error
    /// while the refresh task is backing off.
    ///
    /// ```no_run
    /// # async fn run(provider: gcp_kafka_auth_handler::KafkaTokenProvider) -> Result<(), Box<dyn std::error::Error>> {
    /// let token = provider.token().await?;
    /// let sasl_value = token.expose(); // a credential: never log it
    /// # let _ = sasl_value; Ok(()) }
    /// ```
    pub async fn token(&self) -> Result<KafkaToken, TokenError> {
        Ok(self.cache.get().await?.token.clone())
    }

    /// The current Kafka token if one is usable right now (at least 10 s left), without
    /// waiting. Works from any thread, inside a runtime or not.
    ///
    /// ```
    /// use gcp_kafka_auth_handler::KafkaTokenProvider;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let provider = KafkaTokenProvider::builder()
    ///     .with_env(gcp_kafka_auth_handler::Env::from_pairs([("GCE_METADATA_HOST", "127.0.0.1:1")]))
    ///     .build()?;
    /// assert!(provider.try_token().is_none()); // the first fetch has not finished
    /// # Ok(()) }
    /// ```
    pub fn try_token(&self) -> Option<KafkaToken> {
        let snapshot = self.cache.snapshot();
        let cached = snapshot.token.as_ref()?;
        (cached.seconds_left(Instant::now()) >= SERVE_FLOOR.as_secs()).then(|| cached.token.clone())
    }

    /// The current Kafka token, for synchronous code such as librdkafka's token callback.
    ///
    /// With a warm cache it returns at once. Otherwise it blocks the calling thread while it
    /// waits as [`token`](Self::token) does:
    /// - on a thread outside any tokio runtime, on the runtime the provider was built in;
    /// - on a worker of a multi-thread runtime, inside
    ///   [`block_in_place`](tokio::task::block_in_place), so other tasks move to other workers;
    /// - inside a current-thread runtime it cannot wait without stopping that runtime (the
    ///   refresh may need it), so it fails at once with [`TokenErrorKind::Unavailable`]
    ///   (also on that runtime's `spawn_blocking` threads, which it cannot tell apart).
    ///
    /// Prefer [`token`](Self::token) in async code.
    ///
    /// ```
    /// use gcp_kafka_auth_handler::{KafkaTokenProvider, TokenErrorKind};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let provider = KafkaTokenProvider::builder()
    ///     .with_env(gcp_kafka_auth_handler::Env::from_pairs([("GCE_METADATA_HOST", "127.0.0.1:1")]))
    ///     .build()?;
    /// // From a plain thread: waits for the first fetch (which fails: nothing listens there).
    /// let result = std::thread::spawn(move || provider.blocking_token()).join().unwrap();
    /// assert_eq!(result.unwrap_err().kind(), TokenErrorKind::Unavailable);
    /// # Ok(()) }
    /// ```
    pub fn blocking_token(&self) -> Result<KafkaToken, TokenError> {
        if let Some(token) = self.try_token() {
            return Ok(token);
        }
        match Handle::try_current() {
            Err(_) => self.runtime.block_on(self.token()),
            Ok(current) if current.runtime_flavor() == RuntimeFlavor::CurrentThread => {
                Err(TokenError {
                    kind: TokenErrorKind::Unavailable,
                    message: "no Kafka token is cached yet, and a blocking caller on a \
                              current-thread tokio runtime cannot wait for one without \
                              stopping that runtime; call it from a multi-thread runtime or \
                              another thread, or await `token()` first"
                        .to_owned(),
                    retry_after: RETRY_AFTER_CURRENT_THREAD,
                })
            }
            Ok(_) => tokio::task::block_in_place(|| self.runtime.block_on(self.token())),
        }
    }

    /// Whether a token can be served right now.
    ///
    /// ```no_run
    /// # fn run(provider: gcp_kafka_auth_handler::KafkaTokenProvider) {
    /// if !provider.is_ready() {
    ///     eprintln!("waiting for the first token from {}", provider.describe_source());
    /// }
    /// # }
    /// ```
    pub fn is_ready(&self) -> bool {
        self.cache.is_ready()
    }

    /// The credential source, described for people (type and where it came from).
    ///
    /// ```
    /// use gcp_kafka_auth_handler::credentials::metadata_server::MetadataServer;
    /// use gcp_kafka_auth_handler::KafkaTokenProvider;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let provider = KafkaTokenProvider::builder()
    ///     .with_credentials(MetadataServer::builder().with_host("127.0.0.1:1").build())
    ///     .build()?;
    /// assert!(provider.describe_source().contains("127.0.0.1:1"));
    /// # Ok(()) }
    /// ```
    pub fn describe_source(&self) -> String {
        self.source.describe()
    }

    /// This provider's metrics (also served on `/metrics` by the router of
    /// [`crate::endpoint`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The serialized OAuth2 token response for the current token, waiting as
    /// [`token`](Self::token) does: what the endpoint sends, rendered once per refresh and
    /// completed with the seconds left per request.
    pub(crate) async fn token_response(&self) -> Result<bytes::Bytes, TokenError> {
        let cached = self.cache.get().await?;
        Ok(cached.response.render(cached.seconds_left(Instant::now())))
    }

    /// Whether a token can be served now, and whose and for how long, or why not.
    pub(crate) fn readiness(&self) -> Readiness {
        let snapshot = self.cache.snapshot();
        let now = Instant::now();
        match snapshot.token.as_ref().filter(|_| self.cache.is_ready()) {
            Some(token) => Readiness::Ready {
                principal: token.token.principal().as_str().to_owned(),
                expires_in: token.seconds_left(now),
            },
            None => Readiness::NotReady {
                reason: snapshot
                    .last_error
                    .as_ref()
                    .map(|e| e.message().to_owned())
                    .unwrap_or_else(|| "the first token is being fetched".to_owned()),
            },
        }
    }
}

/// What `/readyz` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// A token for `principal` can be served at once; it has `expires_in` seconds left.
    Ready { principal: String, expires_in: u64 },
    /// No token can be served at once, because of `reason` (the last error, or the first
    /// fetch still running).
    NotReady { reason: String },
}
