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

use super::upstream::{self, HttpClientError, HttpClients};
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

/// A source that impersonates `target` with the token of another source.
///
/// ```
/// use std::sync::Arc;
/// use gcp_kafka_auth_handler::credentials::impersonated::Impersonated;
/// use gcp_kafka_auth_handler::credentials::metadata_server::MetadataServer;
/// use gcp_kafka_auth_handler::credentials::CredentialSource;
/// let mds = Arc::new(MetadataServer::builder().build());
/// let target = Impersonated::new(mds, "kafka@proj.iam.gserviceaccount.com")
///     .with_delegates(vec!["hop@proj.iam.gserviceaccount.com".into()]);
/// assert_eq!(target.target(), "kafka@proj.iam.gserviceaccount.com");
/// ```
pub struct Impersonated {
    source: Arc<dyn CredentialSource>,
    target: String,
    delegates: Vec<String>,
    lifetime: Duration,
    endpoint: Endpoint,
    /// The shared client unless one was given; an error (no TLS backend) is reported by the
    /// first fetch, so constructing the source never fails or panics.
    http: Result<reqwest::Client, HttpClientError>,
}

impl Impersonated {
    /// Impersonates `target` (an email) with the tokens of `source`, at Google's IAM
    /// Credentials endpoint for the source's universe.
    pub fn new(source: Arc<dyn CredentialSource>, target: impl Into<String>) -> Self {
        Self {
            source,
            target: target.into(),
            delegates: Vec::new(),
            lifetime: DEFAULT_LIFETIME,
            endpoint: Endpoint::Base {
                override_base: None,
            },
            http: HttpClients::shared().map(|http| http.google),
        }
    }

    /// Impersonates the account named in a `service_account_impersonation_url`
    /// (`.../serviceAccounts/{email}:generateAccessToken`), calling that URL (its default
    /// host moved into `universe_domain`, or to `GCP_KAFKA_AUTH_IAM_CREDENTIALS_URL`).
    pub fn from_url(
        source: Arc<dyn CredentialSource>,
        url: &str,
        universe_domain: &str,
        env: &Env,
    ) -> Result<Self, CredentialError> {
        let target = target_from_url(url).ok_or_else(|| {
            CredentialError::invalid(format!(
                "service_account_impersonation_url {} does not end in \
                 /serviceAccounts/EMAIL:generateAccessToken",
                upstream::display_url(url)
            ))
        })?;
        let mut url = upstream::in_universe(url, "iamcredentials", universe_domain);
        if let Some(base) = env.get(IAM_CREDENTIALS_URL_VAR)
            && let Some(rest) =
                url.strip_prefix(&format!("https://iamcredentials.{universe_domain}"))
        {
            url = format!("{}{rest}", base.trim_end_matches('/'));
        }
        let mut this = Self::new(source, target);
        this.endpoint = Endpoint::Url(url);
        Ok(this)
    }

    /// Takes the base URL from `GCP_KAFKA_AUTH_IAM_CREDENTIALS_URL` when it is set.
    pub fn with_env(mut self, env: &Env) -> Self {
        if let Endpoint::Base { override_base } = &mut self.endpoint {
            *override_base = env
                .get(IAM_CREDENTIALS_URL_VAR)
                .map(|b| b.trim_end_matches('/').to_owned());
        }
        self
    }

    /// The chain of accounts between the source and the target, each needing
    /// `roles/iam.serviceAccountTokenCreator` on the next. Emails or
    /// `projects/-/serviceAccounts/EMAIL`.
    pub fn with_delegates(mut self, delegates: Vec<String>) -> Self {
        self.delegates = delegates
            .into_iter()
            .map(|d| {
                if d.starts_with("projects/") {
                    d
                } else {
                    format!("projects/-/serviceAccounts/{d}")
                }
            })
            .collect();
        self
    }

    /// How long the impersonated token should live (IAM accepts 1 s to 1 h, up to 12 h with
    /// the `constraints/iam.allowServiceAccountCredentialLifetimeExtension` policy).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Shares HTTP clients with other sources.
    pub fn with_http(mut self, http: &HttpClients) -> Self {
        self.http = Ok(http.google.clone());
        self
    }

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
                .as_ref()
                .map_err(|err| CredentialError::from(err.clone()))?
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
        let mds: Arc<dyn CredentialSource> =
            Arc::new(super::super::metadata_server::MetadataServer::builder().build());
        let url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@b.c:generateAccessToken";
        let plain = Impersonated::from_url(mds.clone(), url, "u.test", &Env::default()).unwrap();
        assert!(
            matches!(&plain.endpoint, Endpoint::Url(u) if u == "https://iamcredentials.u.test/v1/projects/-/serviceAccounts/a@b.c:generateAccessToken")
        );
        let env = Env::from_pairs([(IAM_CREDENTIALS_URL_VAR, "http://127.0.0.1:9/")]);
        let overridden = Impersonated::from_url(mds, url, "googleapis.com", &env).unwrap();
        assert!(
            matches!(&overridden.endpoint, Endpoint::Url(u) if u == "http://127.0.0.1:9/v1/projects/-/serviceAccounts/a@b.c:generateAccessToken")
        );
    }

    #[tokio::test]
    async fn without_an_override_the_iam_host_follows_the_metadata_servers_universe() {
        let fake = fake_google::FakeGoogle::start().await;
        let mds: Arc<dyn CredentialSource> = Arc::new(
            super::super::metadata_server::MetadataServer::builder()
                .with_host(fake.metadata_host())
                .build(),
        );
        let target =
            Impersonated::new(mds, "t@p.iam.gserviceaccount.com").with_env(&Env::default());
        assert_eq!(
            target.url().await.unwrap(),
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/t@p.iam.gserviceaccount.com:generateAccessToken"
        );
        let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/computeMetadata/v1/universe/universe-domain"]);
    }

    #[test]
    fn delegates_become_resource_names() {
        let mds: Arc<dyn CredentialSource> =
            Arc::new(super::super::metadata_server::MetadataServer::builder().build());
        let i = Impersonated::new(mds, "t@p.iam.gserviceaccount.com").with_delegates(vec![
            "d1@p.iam.gserviceaccount.com".into(),
            "projects/-/serviceAccounts/d2@p.iam.gserviceaccount.com".into(),
        ]);
        assert_eq!(
            i.delegates,
            [
                "projects/-/serviceAccounts/d1@p.iam.gserviceaccount.com",
                "projects/-/serviceAccounts/d2@p.iam.gserviceaccount.com"
            ]
        );
    }
}
