//! User credentials (`gcloud auth application-default login`): a refresh-token grant.

use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::service_account::DEFAULT_TOKEN_URI;
use super::tokeninfo::Tokeninfo;
use super::upstream::{self, HttpClients};
use super::{BoxFuture, CredentialError, CredentialSource, GoogleToken};
use crate::env::Env;
use crate::principal::Principal;

#[derive(Deserialize)]
struct UserFile {
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    refresh_token: Option<SecretString>,
    token_uri: Option<String>,
    quota_project_id: Option<String>,
}

/// A user's refresh token and the OAuth client it was issued to. Built with [`Builder`].
pub struct AuthorizedUser {
    client_id: String,
    client_secret: SecretString,
    refresh_token: SecretString,
    token_uri: String,
    quota_project_id: Option<String>,
    tokeninfo: Tokeninfo,
    http: reqwest::Client,
}

/// Builds an [`AuthorizedUser`] from an `authorized_user` file (what
/// `gcloud auth application-default login` writes).
///
/// ```no_run
/// use gcp_kafka_auth_handler::credentials::authorized_user::Builder;
/// use gcp_kafka_auth_handler::credentials::HttpClients;
/// use gcp_kafka_auth_handler::Env;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let json = std::fs::read("application_default_credentials.json")?;
/// let user = Builder::from_json(&json)
///     .with_env(Env::from_process())
///     .with_http(HttpClients::try_new()?)
///     .build()?;
/// println!("{:?}", user.quota_project_id());
/// # Ok(()) }
/// ```
pub struct Builder {
    json: Vec<u8>,
    env: Env,
    http: Option<HttpClients>,
    token_uri: Option<String>,
}

impl Builder {
    /// Starts from the bytes of an `authorized_user` file; nothing is parsed until
    /// [`build`](Self::build).
    pub fn from_json(json: &[u8]) -> Self {
        Self {
            json: json.to_vec(),
            env: Env::default(),
            http: None,
            token_uri: None,
        }
    }

    /// Reads the tokeninfo URL override from `env` (none is read otherwise).
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

    /// Sends the refresh grant to `token_uri` instead of the file's (or Google's).
    pub fn with_token_uri(mut self, token_uri: impl Into<String>) -> Self {
        self.token_uri = Some(token_uri.into());
        self
    }

    /// Parses the file. Fails with an [`Invalid`](super::ErrorKind::Invalid) error naming the
    /// missing field, or when no HTTP clients were given and none can be created.
    pub fn build(self) -> Result<AuthorizedUser, CredentialError> {
        let http = match self.http {
            Some(http) => http,
            None => HttpClients::shared()?,
        };
        let mut user = AuthorizedUser::parse(&self.json, &self.env, http)?;
        if let Some(token_uri) = self.token_uri {
            user.token_uri = token_uri;
        }
        Ok(user)
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
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl AuthorizedUser {
    fn parse(json: &[u8], env: &Env, http: HttpClients) -> Result<Self, CredentialError> {
        let file: UserFile = serde_json::from_slice(json).map_err(|e| {
            CredentialError::invalid(format!(
                "the user credentials are not valid JSON ({}); run `gcloud auth application-default login` again",
                upstream::describe_json_error(&e)
            ))
        })?;
        let missing = |field: &str| {
            CredentialError::invalid(format!(
                "the user credentials have no {field}; run `gcloud auth application-default login` again"
            ))
        };
        Ok(Self {
            client_id: file
                .client_id
                .filter(|s| !s.is_empty())
                .ok_or_else(|| missing("client_id"))?,
            client_secret: file.client_secret.ok_or_else(|| missing("client_secret"))?,
            refresh_token: file
                .refresh_token
                .filter(|s| !s.expose_secret().is_empty())
                .ok_or_else(|| missing("refresh_token"))?,
            token_uri: file
                .token_uri
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned()),
            quota_project_id: file.quota_project_id,
            tokeninfo: Tokeninfo::from_env(env, &http),
            http: http.google,
        })
    }

    /// The quota project the file names, if any.
    pub fn quota_project_id(&self) -> Option<&str> {
        self.quota_project_id.as_deref()
    }
}

impl std::fmt::Debug for AuthorizedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizedUser")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[censored]")
            .field("refresh_token", &"[censored]")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl CredentialSource for AuthorizedUser {
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>> {
        Box::pin(async move {
            let what = "OAuth2 token endpoint";
            let sent_at = SystemTime::now();
            let request = self.http.post(&self.token_uri).form(&[
                ("grant_type", "refresh_token"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.expose_secret()),
                ("refresh_token", self.refresh_token.expose_secret()),
            ]);
            let body = upstream::exchange(what, &self.token_uri, request)
                .await
                .map_err(|err| {
                    err.context_unless_transient(
                        "Google refused the user credentials (expired or revoked login?); \
                         run `gcloud auth application-default login` again",
                    )
                })?;
            upstream::parse_token_response(what, &self.token_uri, &body, sent_at)
        })
    }

    fn principal<'a>(
        &'a self,
        token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>> {
        Box::pin(async move {
            match &token.principal_hint {
                Some(email) => Ok(Principal::new(email.as_str())?),
                None => self.tokeninfo.email(token).await,
            }
        })
    }

    fn describe(&self) -> String {
        format!("user credentials of OAuth client {}", self.client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &[u8] =
        br#"{"type":"authorized_user","client_id":"cid","client_secret":"hunter2-secret",
        "refresh_token":"refresh-secret-123","token_uri":"http://127.0.0.1:1/token"}"#;

    #[test]
    fn builder_debug_shows_neither_the_refresh_token_nor_the_client_secret() {
        let builder = Builder::from_json(FILE).with_token_uri("http://127.0.0.1:2/token");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(!shown.contains("refresh-secret-123"), "{shown}");
        assert_eq!(
            shown,
            format!(
                "Builder {{ json: [{} bytes, censored], token_uri: Some(\"http://127.0.0.1:2/token\"), .. }}",
                FILE.len()
            )
        );
    }

    #[test]
    fn with_token_uri_replaces_the_files_and_a_missing_field_is_named() {
        let user = Builder::from_json(FILE)
            .with_http(HttpClients::new())
            .with_token_uri("http://127.0.0.1:2/token")
            .build()
            .unwrap();
        assert_eq!(user.token_uri, "http://127.0.0.1:2/token");
        let err = Builder::from_json(br#"{"type":"authorized_user","client_id":"cid"}"#)
            .with_http(HttpClients::new())
            .build()
            .unwrap_err();
        assert_eq!(
            err.message(),
            "the user credentials have no client_secret; run `gcloud auth application-default login` again"
        );
    }
}
