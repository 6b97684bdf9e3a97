//! Google's tokeninfo endpoint: whose access token is this?
//!
//! Used for user credentials, whose token response does not name the user. The token is sent
//! in a POST body, never in the URL, so it cannot end up in a proxy's or server's access log.

use secrecy::ExposeSecret;
use serde::Deserialize;

use super::upstream::{self, HttpClients};
use super::{CredentialError, GoogleToken};
use crate::env::Env;
use crate::principal::Principal;

/// Google's tokeninfo endpoint.
pub const DEFAULT_URL: &str = "https://oauth2.googleapis.com/tokeninfo";
/// Environment variable that replaces [`DEFAULT_URL`], for tests and private endpoints.
pub const URL_VAR: &str = "GCP_KAFKA_AUTH_TOKENINFO_URL";

/// A client of the tokeninfo endpoint.
#[derive(Clone, Debug)]
pub struct Tokeninfo {
    url: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct TokeninfoResponse {
    email: Option<String>,
}

impl Tokeninfo {
    /// The endpoint at `url`.
    pub fn new(url: impl Into<String>, http: &HttpClients) -> Self {
        Self {
            url: url.into(),
            http: http.google.clone(),
        }
    }

    /// The endpoint named by `GCP_KAFKA_AUTH_TOKENINFO_URL`, else Google's.
    pub fn from_env(env: &Env, http: &HttpClients) -> Self {
        Self::new(env.get(URL_VAR).unwrap_or(DEFAULT_URL), http)
    }

    /// The email address the token was issued to.
    pub async fn email(&self, token: &GoogleToken) -> Result<Principal, CredentialError> {
        let what = "tokeninfo endpoint";
        let request = self
            .http
            .post(&self.url)
            .form(&[("access_token", token.access_token.expose_secret())]);
        let body = upstream::exchange(what, &self.url, request).await?;
        let parsed: TokeninfoResponse = serde_json::from_slice(&body).map_err(|e| {
            CredentialError::transient(format!(
                "{what} at {} answered with something that is not JSON ({})",
                upstream::display_url(&self.url),
                upstream::describe_json_error(&e)
            ))
        })?;
        let email = parsed.email.unwrap_or_default();
        if email.trim().is_empty() {
            return Err(CredentialError::invalid(format!(
                "{what} at {} did not return the user's email: the credentials lack the \
                 `email` scope; run `gcloud auth application-default login` again, or set {}",
                upstream::display_url(&self.url),
                crate::principal::PRINCIPAL_OVERRIDE_VAR
            )));
        }
        Ok(Principal::new(email)?)
    }
}
