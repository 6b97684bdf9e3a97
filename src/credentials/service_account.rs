//! Service-account key files: an RS256-signed assertion exchanged for an access token.
//!
//! The assertion is exchanged at the key's `token_uri` (JWT bearer grant, RFC 7523) for a real
//! `ya29` token; a self-signed JWT is never used as the token itself, because Managed Kafka
//! needs a token Google's tokeninfo recognises.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::upstream::{self, HttpClients};
use super::{BoxFuture, CLOUD_PLATFORM_SCOPE, CredentialError, CredentialSource, GoogleToken};
use crate::principal::Principal;

/// Google's OAuth2 token endpoint, used when a key file names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ASSERTION_LIFETIME_SECS: u64 = 3600;

#[derive(Deserialize)]
struct KeyFile {
    client_email: Option<String>,
    private_key: Option<SecretString>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    project_id: Option<String>,
    universe_domain: Option<String>,
}

/// A service account's JSON key, parsed and ready to sign.
///
/// ```no_run
/// use gcp_kafka_auth_handler::credentials::service_account::ServiceAccountKey;
/// let json = std::fs::read("key.json").unwrap();
/// let key = ServiceAccountKey::from_json(&json).unwrap();
/// println!("{}", key.client_email());
/// ```
pub struct ServiceAccountKey {
    client_email: String,
    key_id: Option<String>,
    token_uri: String,
    project_id: Option<String>,
    universe_domain: String,
    signer: RsaKeyPair,
    http: reqwest::Client,
}

impl ServiceAccountKey {
    /// Parses a key file (`"type": "service_account"`) and loads its private key.
    pub fn from_json(json: &[u8]) -> Result<Self, CredentialError> {
        let file: KeyFile = serde_json::from_slice(json).map_err(|e| {
            CredentialError::invalid(format!(
                "the service-account key is not valid JSON ({}); download a new JSON key",
                upstream::describe_json_error(&e)
            ))
        })?;
        let client_email = file
            .client_email
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| {
                CredentialError::invalid("the service-account key has no client_email")
            })?;
        let private_key = file.private_key.ok_or_else(|| {
            CredentialError::invalid(format!(
                "the service-account key of {client_email} has no private_key"
            ))
        })?;
        let signer = load_signer(private_key.expose_secret()).map_err(|why| {
            CredentialError::invalid(format!(
                "the private_key of the service-account key of {client_email} {why}; \
                 download a new JSON key with `gcloud iam service-accounts keys create`"
            ))
        })?;
        Ok(Self {
            client_email,
            key_id: file.private_key_id.filter(|k| !k.is_empty()),
            token_uri: file
                .token_uri
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned()),
            project_id: file.project_id,
            universe_domain: file
                .universe_domain
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| super::DEFAULT_UNIVERSE_DOMAIN.to_owned()),
            signer,
            http: HttpClients::shared()?.google,
        })
    }

    /// Shares HTTP clients with other sources.
    pub fn with_http(mut self, http: &HttpClients) -> Self {
        self.http = http.google.clone();
        self
    }

    /// Sends the assertion to `token_uri` instead of the one in the file.
    pub fn with_token_uri(mut self, token_uri: impl Into<String>) -> Self {
        self.token_uri = token_uri.into();
        self
    }

    /// The service account's email, the principal of its tokens.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The project the key belongs to, when the file says.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }

    /// The signed JWT bearer assertion for `scope`, issued at `iat` (seconds since the epoch).
    pub fn assertion(&self, scope: &str, iat: u64) -> Result<String, CredentialError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = kid.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.signer.public_modulus_len()];
        self.signer
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| {
                CredentialError::invalid(format!(
                    "could not sign with the private key of {}",
                    self.client_email
                ))
            })?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

fn load_signer(pem: &str) -> Result<RsaKeyPair, &'static str> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| "is not a PKCS#8 PEM block (-----BEGIN PRIVATE KEY-----)")?;
    RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|_| "is not a usable RSA key")
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.key_id)
            .field("private_key", &"[censored]")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl CredentialSource for ServiceAccountKey {
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>> {
        Box::pin(async move {
            let what = "OAuth2 token endpoint";
            let sent_at = SystemTime::now();
            let iat = sent_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let assertion = self.assertion(CLOUD_PLATFORM_SCOPE, iat)?;
            let request = self
                .http
                .post(&self.token_uri)
                .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)]);
            let body = upstream::exchange(what, &self.token_uri, request)
                .await
                .map_err(|err| {
                    err.context_unless_transient(format!(
                        "Google refused the key {} of {} (deleted or disabled key or service account?); \
                         create a new key or use another credential",
                        self.key_id.as_deref().unwrap_or("(no private_key_id)"),
                        self.client_email
                    ))
                })?;
            upstream::parse_token_response(what, &self.token_uri, &body, sent_at)
        })
    }

    fn principal<'a>(
        &'a self,
        _token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>> {
        Box::pin(async move { Ok(Principal::new(self.client_email.as_str())?) })
    }

    fn describe(&self) -> String {
        format!("service account key of {}", self.client_email)
    }

    fn universe_domain(&self) -> BoxFuture<'_, Result<String, CredentialError>> {
        Box::pin(async move { Ok(self.universe_domain.clone()) })
    }
}
