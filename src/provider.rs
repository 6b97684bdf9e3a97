//! [`KafkaTokenProvider`]: the public face of the cache, for Rust programs and the endpoint.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CacheTiming, TokenCache};
use crate::credentials::adc::ApplicationDefault;
use crate::credentials::impersonated::Impersonated;
use crate::credentials::{CredentialSource, ErrorKind, HttpClients};
use crate::env::Env;
use crate::kafka_token::KafkaToken;
use crate::metrics::{Metrics, RefreshMetrics};
use crate::principal::{PRINCIPAL_OVERRIDE_VAR, Principal, PrincipalError};

/// Kafka tokens for one set of Google credentials, cached and refreshed in the background.
///
/// Cheap to clone; clones share the cache. The background refresh stops when the last clone
/// is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use gcp_kafka_auth_handler::KafkaTokenProvider;
/// let provider = KafkaTokenProvider::builder().build()?; // Application Default Credentials
/// let token = provider.token().await?;
/// println!("{} until {}", token.principal(), token.expires_at_unix());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct KafkaTokenProvider {
    pub(crate) cache: TokenCache,
    source: Arc<dyn CredentialSource>,
    metrics: Arc<Metrics>,
}

/// Configures a [`KafkaTokenProvider`].
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
    /// use gcp_kafka_auth_handler::provider::ImpersonationChain;
    /// let chain = ImpersonationChain::parse("hop@p.iam.gserviceaccount.com,kafka@p.iam.gserviceaccount.com").unwrap();
    /// assert_eq!(chain.target, "kafka@p.iam.gserviceaccount.com");
    /// assert_eq!(chain.delegates, ["hop@p.iam.gserviceaccount.com"]);
    /// ```
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut accounts: Vec<String> = text
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if let Some(bad) = accounts.iter().find(|a| !a.contains('@')) {
            return Err(format!(
                "`{bad}` is not a service-account email; write EMAIL or DELEGATE,...,EMAIL"
            ));
        }
        let target = accounts
            .pop()
            .ok_or_else(|| "no service account to impersonate was given".to_owned())?;
        Ok(Self {
            target,
            delegates: accounts,
        })
    }
}

/// Why a provider could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The principal given (or in `GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL`) is not usable.
    #[error("invalid principal override: {0}")]
    Principal(#[from] PrincipalError),
    /// A duration is out of range.
    #[error("{0}")]
    Timing(String),
}

impl ProviderBuilder {
    /// Uses these credentials instead of Application Default Credentials.
    pub fn with_credentials(mut self, source: impl CredentialSource + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Uses a shared credential source.
    pub fn with_shared_credentials(mut self, source: Arc<dyn CredentialSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Reads ADC variables and the principal override from `env` instead of the process
    /// environment.
    pub fn with_env(mut self, env: Env) -> Self {
        self.env = Some(env);
        self
    }

    /// Sets the principal (`sub`) instead of learning it from the credentials. Wins over
    /// `GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL`.
    pub fn with_principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Refresh when this much of a token's life is left (default 5 minutes).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.timing.refresh_margin = margin;
        self
    }

    /// Replaces all cache timings at once.
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

    /// Shares HTTP clients with other code.
    pub fn with_http(mut self, http: HttpClients) -> Self {
        self.http = Some(http);
        self
    }

    /// Validates the configuration and starts the background refresh (the first fetch starts
    /// at once). Must be called inside a tokio runtime.
    pub fn build(self) -> Result<KafkaTokenProvider, BuildError> {
        let env = self.env.unwrap_or_else(Env::from_process);
        let principal = match self
            .principal
            .or_else(|| env.get(PRINCIPAL_OVERRIDE_VAR).map(str::to_owned))
        {
            Some(p) => Some(Principal::new(p)?),
            None => None,
        };
        if self.timing.refresh_margin > Duration::from_secs(3000) {
            return Err(BuildError::Timing(format!(
                "the refresh margin is {} s; it must be at most 3000 s (tokens live about 3600 s)",
                self.timing.refresh_margin.as_secs()
            )));
        }
        let http = self.http.unwrap_or_default();
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
            refresh_metrics.clone(),
        );
        Ok(KafkaTokenProvider {
            metrics: Arc::new(Metrics::new(cache.clone(), &refresh_metrics)),
            cache,
            source,
        })
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    kind: TokenErrorKind,
    message: String,
    retry_after: Duration,
}

/// Whether waiting may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        let kind = match u.error.kind() {
            ErrorKind::Rejected | ErrorKind::Invalid => TokenErrorKind::Rejected,
            ErrorKind::Transient | ErrorKind::NotFound => TokenErrorKind::Unavailable,
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
    pub fn builder() -> ProviderBuilder {
        ProviderBuilder::default()
    }

    /// The current Kafka token. Returns at once with a warm cache; otherwise waits for the
    /// refresh in progress (at most 15 s by default).
    pub async fn token(&self) -> Result<KafkaToken, TokenError> {
        Ok(self.cache.get().await?.token.clone())
    }

    /// Whether a token can be served right now.
    pub fn is_ready(&self) -> bool {
        self.cache.is_ready()
    }

    /// The credential source, described for people.
    pub fn describe_source(&self) -> String {
        self.source.describe()
    }

    /// This provider's metrics (also served on `/metrics` by [`KafkaTokenProvider::router`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The OAuth2 token endpoint for this provider as an axum [`Router`](axum::Router): a
    /// tower `Service` to mount anywhere (see [`crate::endpoint`]).
    pub fn router(&self) -> axum::Router {
        crate::endpoint::router(self.clone())
    }

    /// The token endpoint with explicit checks (allowed hosts, client credentials); see
    /// [`crate::endpoint::EndpointConfig`].
    pub fn router_with(&self, config: crate::endpoint::EndpointConfig) -> axum::Router {
        crate::endpoint::router_with(self.clone(), config)
    }
}
