//! `external_account` files: workload and workforce identity federation.
//!
//! A subject token from outside Google (a Kubernetes or CI OIDC token, a SAML assertion, a
//! signed AWS request) is exchanged at STS (`token_url`, RFC 8693) for a federated Google
//! token; with `service_account_impersonation_url` that token then impersonates a service
//! account ([`Impersonated`]).
//!
//! Layout: one module per `credential_source` kind ([`file_source`], [`url_source`],
//! [`executable_source`], [`aws_source`]), each a [`SubjectTokenSource`]; this module parses
//! the file and performs the exchange.

pub mod aws_source;
pub mod executable_source;
pub mod file_source;
pub mod url_source;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::impersonated::Impersonated;
use super::upstream::{self, HttpClients};
use super::{
    BoxFuture, CLOUD_PLATFORM_SCOPE, CredentialError, CredentialSource, DEFAULT_UNIVERSE_DOMAIN,
    GoogleToken,
};
use crate::env::Env;
use crate::principal::{PRINCIPAL_OVERRIDE_VAR, Principal};

/// The `service_account_impersonation.token_lifetime_seconds` Google's auth libraries accept:
/// 10 minutes to 12 hours, the range IAM's generateAccessToken allows (above 1 hour only where
/// the organization policy permits it).
const IMPERSONATION_LIFETIME_SECS: std::ops::RangeInclusive<u64> = 600..=43_200;

/// STS in Google's public universe.
pub const DEFAULT_TOKEN_URL: &str = "https://sts.googleapis.com/v1/token";
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Where a subject token comes from: one `credential_source` kind.
pub trait SubjectTokenSource: Send + Sync + std::fmt::Debug {
    /// Reads (or fetches, or runs) the subject token anew.
    fn subject_token(&self) -> BoxFuture<'_, Result<SecretString, CredentialError>>;
    /// For logs and `doctor`: what kind and where, never the token.
    fn describe(&self) -> String;
}

/// How a file or URL presents the subject token (`credential_source.format`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectTokenFormat {
    /// The whole content is the token.
    Text,
    /// A JSON object; the token is the string in this field.
    Json {
        /// `subject_token_field_name`.
        field: String,
    },
}

impl SubjectTokenFormat {
    fn from_config(format: Option<&FormatConfig>) -> Result<Self, CredentialError> {
        match format {
            None => Ok(Self::Text),
            Some(f) => match f.kind.as_deref().unwrap_or("text") {
                "text" => Ok(Self::Text),
                "json" => Ok(Self::Json {
                    field: f
                        .subject_token_field_name
                        .clone()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| {
                            CredentialError::invalid(
                                "credential_source.format is json but has no subject_token_field_name",
                            )
                        })?,
                }),
                other => Err(CredentialError::invalid(format!(
                    "credential_source.format.type `{other}` is not supported; use text or json"
                ))),
            },
        }
    }

    /// Extracts the token from `content`; `origin` names where it came from (for errors).
    pub(crate) fn extract(
        &self,
        content: &[u8],
        origin: &str,
    ) -> Result<SecretString, CredentialError> {
        let token = match self {
            Self::Text => String::from_utf8_lossy(content).trim().to_owned(),
            Self::Json { field } => {
                let value: serde_json::Value = serde_json::from_slice(content).map_err(|e| {
                    CredentialError::invalid(format!(
                        "{origin} is not JSON ({}), but credential_source.format says json",
                        upstream::describe_json_error(&e)
                    ))
                })?;
                value
                    .get(field)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        CredentialError::invalid(format!(
                            "{origin} has no string field `{field}` (subject_token_field_name)"
                        ))
                    })?
            }
        };
        if token.is_empty() {
            return Err(CredentialError::invalid(format!(
                "{origin} holds an empty subject token"
            )));
        }
        Ok(SecretString::from(token))
    }
}

#[derive(Deserialize, Clone)]
pub(crate) struct FormatConfig {
    #[serde(rename = "type")]
    kind: Option<String>,
    subject_token_field_name: Option<String>,
}

#[derive(Deserialize)]
struct ExternalAccountFile {
    audience: Option<String>,
    subject_token_type: Option<String>,
    token_url: Option<String>,
    service_account_impersonation_url: Option<String>,
    service_account_impersonation: Option<ImpersonationOptions>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    workforce_pool_user_project: Option<String>,
    universe_domain: Option<String>,
    credential_source: Option<CredentialSourceConfig>,
}

#[derive(Deserialize)]
struct ImpersonationOptions {
    token_lifetime_seconds: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct CredentialSourceConfig {
    file: Option<String>,
    url: Option<String>,
    headers: Option<std::collections::BTreeMap<String, String>>,
    format: Option<FormatConfig>,
    executable: Option<executable_source::ExecutableConfig>,
    environment_id: Option<String>,
    region_url: Option<String>,
    regional_cred_verification_url: Option<String>,
    imdsv2_session_token_url: Option<String>,
}

/// The STS exchange of an `external_account` file, without the impersonation step.
pub struct StsExchange {
    audience: String,
    subject_token_type: String,
    token_url: String,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    workforce_pool_user_project: Option<String>,
    universe_domain: String,
    subject: Box<dyn SubjectTokenSource>,
    http: reqwest::Client,
}

/// Builds the source an `external_account` file describes: the exchange, wrapped in an
/// impersonation when the file names a service account.
pub fn from_json(
    json: &[u8],
    env: &Env,
    http: &HttpClients,
) -> Result<Arc<dyn CredentialSource>, CredentialError> {
    let file: ExternalAccountFile = serde_json::from_slice(json).map_err(|e| {
        CredentialError::invalid(format!(
            "the external_account file is not valid ({}); regenerate it with \
             `gcloud iam workload-identity-pools create-cred-config`",
            upstream::describe_json_error(&e)
        ))
    })?;
    let missing = |field: &str| {
        CredentialError::invalid(format!(
            "the external_account file has no {field}; regenerate it with \
             `gcloud iam workload-identity-pools create-cred-config`"
        ))
    };
    let audience = file
        .audience
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("audience"))?;
    let subject_token_type = file
        .subject_token_type
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("subject_token_type"))?;
    let universe_domain = file
        .universe_domain
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_UNIVERSE_DOMAIN.to_owned());
    let token_url = upstream::in_universe(
        file.token_url
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_TOKEN_URL),
        "sts",
        &universe_domain,
    );
    let source = file
        .credential_source
        .ok_or_else(|| missing("credential_source"))?;
    let impersonated_email = file
        .service_account_impersonation_url
        .as_deref()
        .and_then(super::impersonated::target_from_url);
    let subject = subject_source(
        source,
        &audience,
        &subject_token_type,
        impersonated_email,
        env,
        http,
    )?;
    let exchange = StsExchange {
        audience,
        subject_token_type,
        token_url,
        client_id: file.client_id.filter(|s| !s.is_empty()),
        client_secret: file.client_secret,
        workforce_pool_user_project: file.workforce_pool_user_project.filter(|s| !s.is_empty()),
        universe_domain: universe_domain.clone(),
        subject,
        http: http.google.clone(),
    };
    match file
        .service_account_impersonation_url
        .filter(|s| !s.is_empty())
    {
        None => Ok(Arc::new(exchange)),
        Some(url) => {
            let mut impersonated =
                Impersonated::from_url(Arc::new(exchange), &url, &universe_domain, env)?
                    .with_http(http);
            if let Some(secs) = file
                .service_account_impersonation
                .and_then(|o| o.token_lifetime_seconds)
            {
                if !IMPERSONATION_LIFETIME_SECS.contains(&secs) {
                    return Err(CredentialError::invalid(format!(
                        "service_account_impersonation.token_lifetime_seconds is {secs}; \
                         it must be between {} and {}",
                        IMPERSONATION_LIFETIME_SECS.start(),
                        IMPERSONATION_LIFETIME_SECS.end()
                    )));
                }
                impersonated = impersonated.with_lifetime(Duration::from_secs(secs));
            }
            Ok(Arc::new(impersonated))
        }
    }
}

fn subject_source(
    source: CredentialSourceConfig,
    audience: &str,
    subject_token_type: &str,
    impersonated_email: Option<String>,
    env: &Env,
    http: &HttpClients,
) -> Result<Box<dyn SubjectTokenSource>, CredentialError> {
    if source.environment_id.is_some() {
        return Ok(Box::new(aws_source::AwsSource::from_config(
            &source, audience, env, http,
        )?));
    }
    if let Some(executable) = &source.executable {
        return Ok(Box::new(executable_source::ExecutableSource::from_config(
            executable,
            audience,
            subject_token_type,
            impersonated_email,
            env,
        )?));
    }
    let format = SubjectTokenFormat::from_config(source.format.as_ref())?;
    match (source.file, source.url) {
        (Some(path), None) => Ok(Box::new(file_source::FileSource::new(path, format))),
        (None, Some(url)) => Ok(Box::new(url_source::UrlSource::new(
            url,
            source.headers.unwrap_or_default(),
            format,
            http,
        ))),
        (Some(_), Some(_)) => Err(CredentialError::invalid(
            "credential_source names both a file and a url; keep one",
        )),
        (None, None) => Err(CredentialError::invalid(
            "credential_source has none of file, url, executable or environment_id (aws); \
             regenerate the file with `gcloud iam workload-identity-pools create-cred-config`",
        )),
    }
}

impl StsExchange {
    /// The subject token's source.
    pub fn subject_source(&self) -> &dyn SubjectTokenSource {
        self.subject.as_ref()
    }
}

impl std::fmt::Debug for StsExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsExchange")
            .field("audience", &self.audience)
            .field("subject_token_type", &self.subject_token_type)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[censored]"),
            )
            .field("subject", &self.subject)
            .finish()
    }
}

impl CredentialSource for StsExchange {
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>> {
        Box::pin(async move {
            let subject_token = self.subject.subject_token().await?;
            let what = "STS token exchange";
            let url = &self.token_url;
            let mut form: Vec<(&str, &str)> = vec![
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("audience", &self.audience),
                ("scope", CLOUD_PLATFORM_SCOPE),
                ("requested_token_type", ACCESS_TOKEN_TYPE),
                ("subject_token", subject_token.expose_secret()),
                ("subject_token_type", &self.subject_token_type),
            ];
            // With client authentication the client id names the project; Google refuses
            // `userProject` then.
            let options = match (&self.workforce_pool_user_project, &self.client_id) {
                (Some(project), None) => {
                    Some(serde_json::json!({ "userProject": project }).to_string())
                }
                _ => None,
            };
            if let Some(options) = &options {
                form.push(("options", options));
            }
            let mut request = self.http.post(url).form(&form);
            if let Some(client_id) = &self.client_id {
                request = request.header(
                    reqwest::header::AUTHORIZATION,
                    basic_auth(client_id, self.client_secret.as_ref()),
                );
            }
            let sent_at = SystemTime::now();
            let body = upstream::exchange(what, url, request)
                .await
                .map_err(|err| {
                    err.context_unless_transient(format!(
                        "STS refused the subject token from {} for audience {}; check the pool \
                         provider's attribute conditions and that the token is for this audience",
                        self.subject.describe(),
                        self.audience
                    ))
                })?;
            upstream::parse_token_response(what, url, &body, sent_at)
        })
    }

    fn principal<'a>(
        &'a self,
        _token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>> {
        Box::pin(async move {
            Err(CredentialError::invalid(format!(
                "a federated token (workload or workforce identity pool {}) does not say which \
                 principal it is; set {PRINCIPAL_OVERRIDE_VAR} to the principal:// identifier \
                 your Kafka ACLs name, or add service_account_impersonation_url to the file",
                self.audience
            )))
        })
    }

    fn describe(&self) -> String {
        format!(
            "external account (audience {}) with a subject token from {}",
            self.audience,
            self.subject.describe()
        )
    }

    fn universe_domain(&self) -> BoxFuture<'_, Result<String, CredentialError>> {
        Box::pin(async move { Ok(self.universe_domain.clone()) })
    }
}

/// `Basic base64(client_id:client_secret)`, written as Google's auth libraries write it (no
/// form-encoding of the parts, an absent secret as empty).
pub(crate) fn basic_auth(client_id: &str, client_secret: Option<&SecretString>) -> String {
    let secret = client_secret.map(|s| s.expose_secret()).unwrap_or_default();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_formats() {
        assert_eq!(
            SubjectTokenFormat::Text
                .extract(b"eyJ.a.b\n", "f")
                .unwrap()
                .expose_secret(),
            "eyJ.a.b"
        );
        let json = SubjectTokenFormat::Json {
            field: "id_token".into(),
        };
        assert_eq!(
            json.extract(br#"{"id_token":"eyJ.x.y"}"#, "f")
                .unwrap()
                .expose_secret(),
            "eyJ.x.y"
        );
        assert_eq!(
            json.extract(br#"{"token":"eyJ.x.y"}"#, "the file /t")
                .unwrap_err()
                .message(),
            "the file /t has no string field `id_token` (subject_token_field_name)"
        );
        assert_eq!(
            SubjectTokenFormat::Text
                .extract(b"  \n", "the file /t")
                .unwrap_err()
                .message(),
            "the file /t holds an empty subject token"
        );
    }

    #[test]
    fn basic_auth_is_written_as_google_writes_it() {
        assert_eq!(
            basic_auth("id", Some(&SecretString::from("s:e cret"))),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("id:s:e cret")
            )
        );
        assert_eq!(
            basic_auth("id", None),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("id:")
            )
        );
    }

    #[test]
    fn missing_fields_and_unknown_sources_are_named() {
        let http = HttpClients::new();
        let err = from_json(br#"{"type":"external_account"}"#, &Env::default(), &http).unwrap_err();
        assert!(
            err.message()
                .starts_with("the external_account file has no audience"),
            "{err}"
        );
        let err = from_json(
            br#"{"type":"external_account","audience":"a","subject_token_type":"t","credential_source":{}}"#,
            &Env::default(),
            &http,
        )
        .unwrap_err();
        assert!(
            err.message()
                .starts_with("credential_source has none of file, url"),
            "{err}"
        );
    }
}
