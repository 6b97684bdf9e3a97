//! `external_account_authorized_user`: a workforce identity federation user's refresh token,
//! as `gcloud auth application-default login` writes it for a workforce pool login.
//!
//! Refreshed at `token_url` (STS `/v1/oauthtoken`) with Basic client authentication. The
//! federated token names no principal, so `GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL` must.

use std::sync::Mutex;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::external_account::basic_auth;
use super::upstream::{self, HttpClients};
use super::{BoxFuture, CredentialError, CredentialSource, DEFAULT_UNIVERSE_DOMAIN, GoogleToken};
use crate::principal::{PRINCIPAL_OVERRIDE_VAR, Principal};

/// STS's refresh endpoint for workforce users in Google's public universe.
pub const DEFAULT_TOKEN_URL: &str = "https://sts.googleapis.com/v1/oauthtoken";

#[derive(Deserialize)]
struct WorkforceUserFile {
    audience: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    refresh_token: Option<SecretString>,
    token_url: Option<String>,
    universe_domain: Option<String>,
}

#[derive(Deserialize)]
struct RefreshResponse {
    refresh_token: Option<SecretString>,
}

/// A workforce pool user's refresh token. Built with [`Builder`].
pub struct WorkforceUser {
    audience: Option<String>,
    client_id: String,
    client_secret: SecretString,
    /// STS may rotate the refresh token; the newest one is kept for the next refresh.
    refresh_token: Mutex<SecretString>,
    token_url: String,
    universe_domain: String,
    http: reqwest::Client,
}

/// Builds a [`WorkforceUser`] from an `external_account_authorized_user` file.
///
/// ```no_run
/// use gcp_kafka_auth_handler::credentials::external_account_authorized_user::Builder;
/// use gcp_kafka_auth_handler::credentials::HttpClients;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let json = std::fs::read("application_default_credentials.json")?;
/// let user = Builder::from_json(&json)
///     .with_http(HttpClients::try_new()?)
///     .build()?;
/// # Ok(()) }
/// ```
pub struct Builder {
    json: Vec<u8>,
    http: Option<HttpClients>,
}

impl Builder {
    /// Starts from the bytes of an `external_account_authorized_user` file; nothing is parsed
    /// until [`build`](Self::build).
    pub fn from_json(json: &[u8]) -> Self {
        Self {
            json: json.to_vec(),
            http: None,
        }
    }

    /// Accepted so every credential builder has the same shape; the file's `token_url` and
    /// `universe_domain` say everything, nothing is read from the environment.
    pub fn with_env(self, env: crate::env::Env) -> Self {
        let _ = env;
        self
    }

    /// Shares HTTP clients (and their connection pools) with other sources; without them
    /// [`build`](Self::build) uses the process-wide shared clients.
    pub fn with_http(mut self, http: HttpClients) -> Self {
        self.http = Some(http);
        self
    }

    /// Parses the file. Fails with an [`Invalid`](super::ErrorKind::Invalid) error naming the
    /// missing field, or when no HTTP clients were given and none can be created.
    pub fn build(self) -> Result<WorkforceUser, CredentialError> {
        let http = match self.http {
            Some(http) => http,
            None => HttpClients::shared()?,
        };
        WorkforceUser::parse(&self.json, &http)
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The JSON holds the refresh token and client secret: only its size is shown.
        f.debug_struct("Builder")
            .field(
                "json",
                &format_args!("[{} bytes, censored]", self.json.len()),
            )
            .finish_non_exhaustive()
    }
}

impl WorkforceUser {
    fn parse(json: &[u8], http: &HttpClients) -> Result<Self, CredentialError> {
        let fix = "run `gcloud auth application-default login --login-config=...` again";
        let file: WorkforceUserFile = serde_json::from_slice(json).map_err(|e| {
            CredentialError::invalid(format!(
                "the workforce user credentials are not valid JSON ({}); {fix}",
                upstream::describe_json_error(&e)
            ))
        })?;
        let missing = |field: &str| {
            CredentialError::invalid(format!(
                "the workforce user credentials have no {field}; {fix}"
            ))
        };
        let universe_domain = file
            .universe_domain
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_UNIVERSE_DOMAIN.to_owned());
        Ok(Self {
            audience: file.audience,
            client_id: file
                .client_id
                .filter(|s| !s.is_empty())
                .ok_or_else(|| missing("client_id"))?,
            client_secret: file.client_secret.ok_or_else(|| missing("client_secret"))?,
            refresh_token: Mutex::new(
                file.refresh_token
                    .filter(|s| !s.expose_secret().is_empty())
                    .ok_or_else(|| missing("refresh_token"))?,
            ),
            token_url: upstream::in_universe(
                file.token_url
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .unwrap_or(DEFAULT_TOKEN_URL),
                "sts",
                &universe_domain,
            ),
            universe_domain,
            http: http.google.clone(),
        })
    }
}

impl std::fmt::Debug for WorkforceUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkforceUser")
            .field("audience", &self.audience)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[censored]")
            .field("refresh_token", &"[censored]")
            .field("token_url", &self.token_url)
            .finish()
    }
}

impl CredentialSource for WorkforceUser {
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>> {
        Box::pin(async move {
            let what = "STS refresh (workforce user)";
            let url = &self.token_url;
            let refresh_token = self
                .refresh_token
                .lock()
                .expect("refresh token lock is never poisoned")
                .clone();
            let sent_at = SystemTime::now();
            let request = self
                .http
                .post(url)
                .header(
                    reqwest::header::AUTHORIZATION,
                    basic_auth(&self.client_id, Some(&self.client_secret)),
                )
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.expose_secret()),
                ]);
            let body = upstream::exchange(what, url, request)
                .await
                .map_err(|err| {
                    err.context_unless_transient(
                        "Google refused the workforce user's login (expired or revoked?); run \
                         `gcloud auth application-default login --login-config=...` again",
                    )
                })?;
            let token = upstream::parse_token_response(what, url, &body, sent_at)?;
            if let Ok(RefreshResponse {
                refresh_token: Some(new),
            }) = serde_json::from_slice::<RefreshResponse>(&body)
                && !new.expose_secret().is_empty()
            {
                *self
                    .refresh_token
                    .lock()
                    .expect("refresh token lock is never poisoned") = new;
            }
            Ok(token)
        })
    }

    fn principal<'a>(
        &'a self,
        _token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>> {
        Box::pin(async move {
            Err(CredentialError::invalid(format!(
                "a workforce identity user's token does not say which principal it is; set \
                 {PRINCIPAL_OVERRIDE_VAR} to the principal://iam.googleapis.com/locations/global/\
                 workforcePools/POOL/subject/SUBJECT your Kafka ACLs name"
            )))
        })
    }

    fn describe(&self) -> String {
        format!(
            "workforce identity user (audience {})",
            self.audience.as_deref().unwrap_or("not given")
        )
    }

    fn universe_domain(&self) -> BoxFuture<'_, Result<String, CredentialError>> {
        Box::pin(async move { Ok(self.universe_domain.clone()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_censors_the_refresh_token_and_client_secret() {
        let json = br#"{"type":"external_account_authorized_user","audience":"//iam.googleapis.com/locations/global/workforcePools/p/providers/x",
            "client_id":"cid","client_secret":"hunter2-secret","refresh_token":"refresh-secret-123"}"#;
        let user = Builder::from_json(json)
            .with_http(HttpClients::new())
            .build()
            .unwrap();
        let shown = format!("{user:?}");
        assert!(
            !shown.contains("hunter2-secret") && !shown.contains("refresh-secret-123"),
            "{shown}"
        );
        assert!(shown.contains("[censored]"));
        assert_eq!(user.token_url, DEFAULT_TOKEN_URL);
    }

    #[test]
    fn universe_domain_moves_the_default_sts_host() {
        let json = br#"{"client_id":"cid","client_secret":"s","refresh_token":"r","universe_domain":"example-universe.test"}"#;
        let user = Builder::from_json(json)
            .with_http(HttpClients::new())
            .build()
            .unwrap();
        assert_eq!(
            user.token_url,
            "https://sts.example-universe.test/v1/oauthtoken"
        );
    }
}
