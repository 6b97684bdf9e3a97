//! Service-account impersonation: IAM Credentials `generateAccessToken`.
//!
//! One wrapper serves three callers: `impersonated_service_account` files (what
//! `gcloud auth application-default login --impersonate-service-account` writes),
//! `serve --impersonate-service-account` wrapping any ADC source, and `external_account`
//! files with a `service_account_impersonation_url`. The principal is always the target.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::upstream::{self, HttpClients};
use super::{BoxFuture, CLOUD_PLATFORM_SCOPE, CredentialError, CredentialSource, GoogleToken};
use crate::env::Env;
use crate::principal::Principal;

/// IAM Credentials in Google's public universe.
pub const DEFAULT_IAM_CREDENTIALS_URL: &str = "https://iamcredentials.googleapis.com";
/// Environment variable that replaces the IAM Credentials base URL (tests, private endpoints).
pub const IAM_CREDENTIALS_URL_VAR: &str = "GCP_KAFKA_AUTH_IAM_CREDENTIALS_URL";
/// Environment variable equivalent of `serve --impersonate-service-account`.
pub const IMPERSONATE_VAR: &str = "GCP_KAFKA_AUTH_IMPERSONATE_SERVICE_ACCOUNT";
/// Lifetime asked for when nobody says otherwise (Google's default maximum).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Where `generateAccessToken` is called.
#[derive(Debug, Clone)]
enum Endpoint {
    /// A full URL from a credentials file (`service_account_impersonation_url`).
    Url(String),
    /// The base URL is decided at fetch time: the override variable, else
    /// `https://iamcredentials.{universe}` with the source's universe domain.
    Base { override_base: Option<String> },
}

/// A source that impersonates a service account with the tokens of another source. Built
/// with [`Builder`].
pub struct Impersonated {
    source: Arc<dyn CredentialSource>,
    target: String,
    delegates: Vec<String>,
    lifetime: Duration,
    endpoint: Endpoint,
    http: reqwest::Client,
}

/// Whom a [`Builder`] impersonates, and how the URL is found.
enum Target {
    /// An email, at the IAM Credentials base URL.
    Email(String),
    /// A `service_account_impersonation_url` from a credentials file.
    Url {
        url: String,
        universe_domain: String,
    },
}

/// Builds an [`Impersonated`] source. Impersonation wraps another source instead of reading a
/// file of its own, so the builder starts from that source ([`new`](Self::new), or
/// [`from_url`](Self::from_url) for a file's `service_account_impersonation_url`).
///
/// ```
/// use std::sync::Arc;
/// use gcp_kafka_auth_handler::credentials::{impersonated, metadata_server, HttpClients};
/// use gcp_kafka_auth_handler::Env;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let http = HttpClients::try_new()?;
/// let mds = Arc::new(metadata_server::Builder::default().with_http(http.clone()).build()?);
/// let target = impersonated::Builder::new(mds, "kafka@proj.iam.gserviceaccount.com")
///     .with_delegates(vec!["hop@proj.iam.gserviceaccount.com".into()])
///     .with_env(Env::from_process())
///     .with_http(http)
///     .build()?;
/// assert_eq!(target.target(), "kafka@proj.iam.gserviceaccount.com");
/// # Ok(()) }
/// ```
pub struct Builder {
    source: Arc<dyn CredentialSource>,
    target: Target,
    delegates: Vec<String>,
    lifetime: Duration,
    env: Env,
    http: Option<HttpClients>,
}

impl Builder {
    /// Impersonates `target` (an email) with the tokens of `source`, at Google's IAM
    /// Credentials endpoint for the source's universe.
    pub fn new(source: Arc<dyn CredentialSource>, target: impl Into<String>) -> Self {
        Self::with_target(source, Target::Email(target.into()))
    }

    /// Impersonates the account named in a `service_account_impersonation_url`
    /// (`.../serviceAccounts/{email}:generateAccessToken`), calling that URL with its default
    /// host moved into `universe_domain` (or to `GCP_KAFKA_AUTH_IAM_CREDENTIALS_URL` when the
    /// environment given to [`with_env`](Self::with_env) sets it). A URL naming no account is
    /// reported by [`build`](Self::build).
    pub fn from_url(
        source: Arc<dyn CredentialSource>,
        url: impl Into<String>,
        universe_domain: impl Into<String>,
    ) -> Self {
        Self::with_target(
            source,
            Target::Url {
                url: url.into(),
                universe_domain: universe_domain.into(),
            },
        )
    }

    fn with_target(source: Arc<dyn CredentialSource>, target: Target) -> Self {
        Self {
            source,
            target,
            delegates: Vec::new(),
            lifetime: DEFAULT_LIFETIME,
            env: Env::default(),
            http: None,
        }
    }

    /// Reads the IAM Credentials base URL override, `GCP_KAFKA_AUTH_IAM_CREDENTIALS_URL`, from
    /// `env` (none is read otherwise).
    pub fn with_env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// Shares HTTP clients (and their connection pools) with other sources; without them
    /// [`build`](Self::build) uses the process-wide shared clients.
    pub fn with_http(mut self, http: HttpClients) -> Self {
        self.http = Some(http);
        self
    }

    /// The chain of accounts between the source and the target, each needing
    /// `roles/iam.serviceAccountTokenCreator` on the next. Emails or
    /// `projects/-/serviceAccounts/EMAIL`.
    pub fn with_delegates(mut self, delegates: Vec<String>) -> Self {
        self.delegates = delegates;
        self
    }

    /// How long the impersonated token should live (IAM accepts 1 s to 1 h, up to 12 h with
    /// the `constraints/iam.allowServiceAccountCredentialLifetimeExtension` policy).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The configured source. Fails when a `service_account_impersonation_url` names no
    /// account, or when no HTTP clients were given and none can be created.
    pub fn build(self) -> Result<Impersonated, CredentialError> {
        let override_base = self
            .env
            .get(IAM_CREDENTIALS_URL_VAR)
            .map(|b| b.trim_end_matches('/').to_owned());
        let (target, endpoint) = match self.target {
            Target::Email(email) => (email, Endpoint::Base { override_base }),
            Target::Url {
                url,
                universe_domain,
            } => {
                let target = target_from_url(&url).ok_or_else(|| {
                    CredentialError::invalid(format!(
                        "service_account_impersonation_url {} does not end in \
                         /serviceAccounts/EMAIL:generateAccessToken",
                        upstream::display_url(&url)
                    ))
                })?;
                let mut url = upstream::in_universe(&url, "iamcredentials", &universe_domain);
                if let Some(base) = override_base
                    && let Some(rest) =
                        url.strip_prefix(&format!("https://iamcredentials.{universe_domain}"))
                {
                    url = format!("{base}{rest}");
                }
                (target, Endpoint::Url(url))
            }
        };
        let http = match self.http {
            Some(http) => http,
            None => HttpClients::shared()?,
        };
        Ok(Impersonated {
            source: self.source,
            target,
            delegates: self
                .delegates
                .into_iter()
                .map(|d| {
                    if d.starts_with("projects/") {
                        d
                    } else {
                        format!("projects/-/serviceAccounts/{d}")
                    }
                })
                .collect(),
            lifetime: self.lifetime,
            endpoint,
            http: http.google,
        })
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::Email(email) => email.clone(),
            Target::Url { url, .. } => upstream::display_url(url).to_string(),
        };
        f.debug_struct("Builder")
            .field("source", &self.source.describe())
            .field("target", &target)
            .field("delegates", &self.delegates)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Impersonated {
    /// The impersonated service account.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The credentials doing the impersonating.
    pub fn source(&self) -> &Arc<dyn CredentialSource> {
        &self.source
    }

    async fn url(&self) -> Result<String, CredentialError> {
        match &self.endpoint {
            Endpoint::Url(url) => Ok(url.clone()),
            Endpoint::Base { override_base } => {
                let base = match override_base {
                    Some(base) => base.clone(),
                    None => format!(
                        "https://iamcredentials.{}",
                        self.source.universe_domain().await?
                    ),
                };
                Ok(format!(
                    "{base}/v1/projects/-/serviceAccounts/{}:generateAccessToken",
                    self.target
                ))
            }
        }
    }
}

/// The email in `.../serviceAccounts/{email}:generateAccessToken` (percent-decoded).
pub(crate) fn target_from_url(url: &str) -> Option<String> {
    let path = upstream::display_url(url);
    let name = path
        .rsplit_once("/serviceAccounts/")?
        .1
        .strip_suffix(":generateAccessToken")?;
    let email: String = form_urlencoded::parse(format!("e={name}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    (email.contains('@') && !email.contains('/')).then_some(email)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateAccessTokenResponse {
    access_token: Option<SecretString>,
    expire_time: Option<String>,
}

impl std::fmt::Debug for Impersonated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Impersonated")
            .field("target", &self.target)
            .field("delegates", &self.delegates)
            .field("lifetime", &self.lifetime)
            .field("source", &self.source)
            .finish()
    }
}

impl CredentialSource for Impersonated {
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>> {
        Box::pin(async move {
            let source_token = self.source.fetch_token().await?;
            let url = self.url().await?;
            let what = "IAM Credentials generateAccessToken";
            let sent_at = SystemTime::now();
            let request = self
                .http
                .post(&url)
                .bearer_auth(source_token.access_token.expose_secret())
                .json(&serde_json::json!({
                    "scope": [CLOUD_PLATFORM_SCOPE],
                    "delegates": self.delegates,
                    "lifetime": format!("{}s", self.lifetime.as_secs()),
                }));
            let body = upstream::exchange(what, &url, request)
                .await
                .map_err(|err| {
                    err.context_unless_transient(format!(
                        "cannot impersonate {}: the source credentials ({}) need \
                         roles/iam.serviceAccountTokenCreator on it{}",
                        self.target,
                        self.source.describe(),
                        if self.delegates.is_empty() {
                            ""
                        } else {
                            " (through each delegate in turn)"
                        }
                    ))
                })?;
            let garbage = |why: &str| {
                CredentialError::transient(format!(
                    "{what} at {} answered with {why}",
                    upstream::display_url(&url)
                ))
            };
            let parsed: GenerateAccessTokenResponse =
                serde_json::from_slice(&body).map_err(|_| garbage("something that is not JSON"))?;
            let access_token = parsed
                .access_token
                .filter(|t| !t.expose_secret().trim().is_empty())
                .ok_or_else(|| garbage("no accessToken"))?;
            let expire_time = parsed.expire_time.ok_or_else(|| garbage("no expireTime"))?;
            let expires_at = upstream::parse_rfc3339(&expire_time)
                .ok_or_else(|| garbage("an expireTime that is not an RFC 3339 time"))?;
            let expires_in = match expires_at.duration_since(sent_at) {
                Ok(d) => d.as_secs() as i64,
                Err(e) => -(e.duration().as_secs() as i64),
            };
            upstream::checked_expiry(what, &url, sent_at, expires_in)?;
            Ok(GoogleToken {
                access_token,
                expires_at,
                principal_hint: None,
            })
        })
    }

    fn principal<'a>(
        &'a self,
        _token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>> {
        Box::pin(async move { Ok(Principal::new(self.target.as_str())?) })
    }

    fn describe(&self) -> String {
        format!("{} impersonated by {}", self.target, self.source.describe())
    }

    fn universe_domain(&self) -> BoxFuture<'_, Result<String, CredentialError>> {
        self.source.universe_domain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_read_from_the_impersonation_url() {
        assert_eq!(
            target_from_url(
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken"
            )
            .as_deref(),
            Some("sa@p.iam.gserviceaccount.com")
        );
        assert_eq!(
            target_from_url(
                "http://127.0.0.1:1/v1/projects/-/serviceAccounts/sa%40p.iam.gserviceaccount.com:generateAccessToken"
            )
            .as_deref(),
            Some("sa@p.iam.gserviceaccount.com")
        );
        assert_eq!(
            target_from_url(
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p:signJwt"
            ),
            None
        );
        assert_eq!(target_from_url("https://example.com/"), None);
    }

    #[test]
    fn file_urls_follow_the_universe_and_the_override() {
        let mds: Arc<dyn CredentialSource> = Arc::new(
            super::super::metadata_server::Builder::default()
                .build()
                .unwrap(),
        );
        let url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@b.c:generateAccessToken";
        let plain = Builder::from_url(mds.clone(), url, "u.test")
            .build()
            .unwrap();
        assert!(
            matches!(&plain.endpoint, Endpoint::Url(u) if u == "https://iamcredentials.u.test/v1/projects/-/serviceAccounts/a@b.c:generateAccessToken")
        );
        let env = Env::from_pairs([(IAM_CREDENTIALS_URL_VAR, "http://127.0.0.1:9/")]);
        let overridden = Builder::from_url(mds, url, "googleapis.com")
            .with_env(env)
            .build()
            .unwrap();
        assert!(
            matches!(&overridden.endpoint, Endpoint::Url(u) if u == "http://127.0.0.1:9/v1/projects/-/serviceAccounts/a@b.c:generateAccessToken")
        );
    }

    #[tokio::test]
    async fn without_an_override_the_iam_host_follows_the_metadata_servers_universe() {
        let fake = fake_google::FakeGoogle::start().await;
        let mds: Arc<dyn CredentialSource> = Arc::new(
            super::super::metadata_server::Builder::default()
                .with_host(fake.metadata_host())
                .build()
                .unwrap(),
        );
        let target = Builder::new(mds, "t@p.iam.gserviceaccount.com")
            .with_env(Env::default())
            .build()
            .unwrap();
        assert_eq!(
            target.url().await.unwrap(),
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/t@p.iam.gserviceaccount.com:generateAccessToken"
        );
        let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/computeMetadata/v1/universe/universe-domain"]);
    }

    #[test]
    fn a_url_naming_no_account_fails_at_build_saying_what_it_must_end_in() {
        let mds: Arc<dyn CredentialSource> = Arc::new(
            super::super::metadata_server::Builder::default()
                .build()
                .unwrap(),
        );
        let err = Builder::from_url(
            mds,
            "https://iamcredentials.googleapis.com/v1/x?k=secret",
            "googleapis.com",
        )
        .build()
        .unwrap_err();
        assert_eq!(err.kind(), super::super::ErrorKind::Invalid);
        assert_eq!(
            err.message(),
            "service_account_impersonation_url https://iamcredentials.googleapis.com/v1/x does not \
             end in /serviceAccounts/EMAIL:generateAccessToken"
        );
    }

    #[test]
    fn delegates_become_resource_names() {
        let mds: Arc<dyn CredentialSource> = Arc::new(
            super::super::metadata_server::Builder::default()
                .build()
                .unwrap(),
        );
        let i = Builder::new(mds, "t@p.iam.gserviceaccount.com")
            .with_delegates(vec![
                "d1@p.iam.gserviceaccount.com".into(),
                "projects/-/serviceAccounts/d2@p.iam.gserviceaccount.com".into(),
            ])
            .build()
            .unwrap();
        assert_eq!(
            i.delegates,
            [
                "projects/-/serviceAccounts/d1@p.iam.gserviceaccount.com",
                "projects/-/serviceAccounts/d2@p.iam.gserviceaccount.com"
            ]
        );
    }
}
