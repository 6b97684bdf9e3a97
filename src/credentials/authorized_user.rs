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

/// A user's refresh token and the OAuth client it was issued to.
///
/// ```no_run
/// use gcp_kafka_auth_handler::credentials::authorized_user::AuthorizedUser;
/// use gcp_kafka_auth_handler::Env;
/// let json = std::fs::read("application_default_credentials.json").unwrap();
/// let user = AuthorizedUser::from_json(&json, &Env::from_process()).unwrap();
/// ```
pub struct AuthorizedUser {
    client_id: String,
    client_secret: SecretString,
    refresh_token: SecretString,
    token_uri: String,
    quota_project_id: Option<String>,
    tokeninfo: Tokeninfo,
    http: reqwest::Client,
}

impl AuthorizedUser {
    /// Parses an `authorized_user` file; `env` may override the tokeninfo URL.
    pub fn from_json(json: &[u8], env: &Env) -> Result<Self, CredentialError> {
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
        let http = HttpClients::shared()?;
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

    /// Shares HTTP clients with other sources.
    pub fn with_http(mut self, http: &HttpClients, env: &Env) -> Self {
        self.http = http.google.clone();
        self.tokeninfo = Tokeninfo::from_env(env, http);
        self
    }

    /// Sends the refresh grant to `token_uri` instead of the file's (or Google's).
    pub fn with_token_uri(mut self, token_uri: impl Into<String>) -> Self {
        self.token_uri = token_uri.into();
        self
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
