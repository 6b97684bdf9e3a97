//! `credential_source` with `environment_id: aws1`: the subject token is a SigV4-signed AWS
//! STS `GetCallerIdentity` request, which Google's STS replays to AWS to learn the caller.
//!
//! Region and credentials come from the environment (`AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`) or else from the EC2
//! instance metadata service, with an IMDSv2 session token when the file names
//! `imdsv2_session_token_url`. Signing is done by `aws-sigv4`, AWS's own signer; the request
//! is serialized as Google's auth libraries do: the URL-encoded JSON
//! `{"headers":[{"key","value"},...],"method":"POST","url":...}`, header keys sorted, with
//! `x-goog-cloud-target-resource` set to the audience.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{CredentialSourceConfig, SubjectTokenSource};
use crate::credentials::upstream::{self, HttpClients};
use crate::credentials::{BoxFuture, CredentialError};
use crate::env::Env;

/// The request Google's STS replays, unless the file names another.
pub const DEFAULT_VERIFICATION_URL: &str =
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
const TARGET_RESOURCE_HEADER: &str = "x-goog-cloud-target-resource";
const IMDSV2_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const IMDSV2_TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// Python's `urllib.parse.quote` (what Google's libraries use): everything but unreserved
/// characters and `/` is percent-encoded.
const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// AWS credentials, read from the environment or the instance metadata service.
struct AwsCredentials {
    access_key_id: String,
    secret_access_key: SecretString,
    session_token: Option<SecretString>,
}

/// A signed `GetCallerIdentity` request as the subject token.
pub struct AwsSource {
    audience: String,
    region_url: Option<String>,
    credentials_url: Option<String>,
    verification_url: String,
    imdsv2_session_token_url: Option<String>,
    env: Env,
    http: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentials {
    access_key_id: Option<String>,
    secret_access_key: Option<SecretString>,
    token: Option<SecretString>,
}

impl AwsSource {
    pub(crate) fn from_config(
        config: &CredentialSourceConfig,
        audience: &str,
        env: &Env,
        http: &HttpClients,
    ) -> Result<Self, CredentialError> {
        let id = config.environment_id.as_deref().unwrap_or("");
        match id.strip_prefix("aws") {
            Some("1") => {}
            Some(_) => {
                return Err(CredentialError::invalid(format!(
                    "credential_source.environment_id `{id}` is not supported; only aws1 is"
                )));
            }
            None => {
                return Err(CredentialError::invalid(format!(
                    "credential_source.environment_id `{id}` is not supported; only aws1 is"
                )));
            }
        }
        Ok(Self {
            audience: audience.to_owned(),
            region_url: config.region_url.clone().filter(|s| !s.is_empty()),
            credentials_url: config.url.clone().filter(|s| !s.is_empty()),
            verification_url: config
                .regional_cred_verification_url
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_VERIFICATION_URL.to_owned()),
            imdsv2_session_token_url: config
                .imdsv2_session_token_url
                .clone()
                .filter(|s| !s.is_empty()),
            env: env.clone(),
            http: http.metadata.clone(),
        })
    }

    fn env_region(&self) -> Option<String> {
        self.env
            .get("AWS_REGION")
            .or_else(|| self.env.get("AWS_DEFAULT_REGION"))
            .map(str::to_owned)
    }

    fn env_credentials(&self) -> Option<AwsCredentials> {
        Some(AwsCredentials {
            access_key_id: self.env.get("AWS_ACCESS_KEY_ID")?.to_owned(),
            secret_access_key: SecretString::from(self.env.get("AWS_SECRET_ACCESS_KEY")?),
            session_token: self.env.get("AWS_SESSION_TOKEN").map(SecretString::from),
        })
    }

    async fn imdsv2_token(&self) -> Result<Option<SecretString>, CredentialError> {
        let Some(url) = &self.imdsv2_session_token_url else {
            return Ok(None);
        };
        let what = "AWS instance metadata (IMDSv2 session token)";
        let request = self.http.put(url).header(IMDSV2_TTL_HEADER, "300");
        let body = upstream::exchange(what, url, request).await?;
        Ok(Some(SecretString::from(
            String::from_utf8_lossy(&body).trim().to_owned(),
        )))
    }

    async fn metadata_get(
        &self,
        url: &str,
        what: &str,
        session: Option<&SecretString>,
    ) -> Result<String, CredentialError> {
        let mut request = self.http.get(url);
        if let Some(token) = session {
            request = request.header(IMDSV2_TOKEN_HEADER, token.expose_secret());
        }
        let body = upstream::exchange(what, url, request).await?;
        Ok(String::from_utf8_lossy(&body).trim().to_owned())
    }

    async fn region(&self, session: Option<&SecretString>) -> Result<String, CredentialError> {
        let url = self.region_url.as_deref().ok_or_else(|| {
            CredentialError::invalid(
                "no AWS region: set AWS_REGION or give credential_source.region_url",
            )
        })?;
        let zone = self
            .metadata_get(url, "AWS instance metadata (availability zone)", session)
            .await?;
        // `us-east-1b` → `us-east-1`.
        let mut region = zone;
        region.pop();
        if region.is_empty() {
            return Err(CredentialError::transient(format!(
                "AWS instance metadata at {} returned no availability zone",
                upstream::display_url(url)
            )));
        }
        Ok(region)
    }

    async fn role_credentials(
        &self,
        session: Option<&SecretString>,
    ) -> Result<AwsCredentials, CredentialError> {
        let url = self.credentials_url.as_deref().ok_or_else(|| {
            CredentialError::invalid(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or give \
                 credential_source.url",
            )
        })?;
        let role = self
            .metadata_get(url, "AWS instance metadata (role name)", session)
            .await?;
        let role = role.lines().next().unwrap_or("").trim().to_owned();
        if role.is_empty() {
            return Err(CredentialError::invalid(format!(
                "AWS instance metadata at {} names no IAM role; attach an instance profile",
                upstream::display_url(url)
            )));
        }
        let role_url = format!("{}/{role}", url.trim_end_matches('/'));
        let body = self
            .metadata_get(
                &role_url,
                "AWS instance metadata (role credentials)",
                session,
            )
            .await?;
        let parsed: RoleCredentials = serde_json::from_str(&body).map_err(|_| {
            CredentialError::transient(format!(
                "AWS instance metadata at {} answered with something that is not role credentials",
                upstream::display_url(&role_url)
            ))
        })?;
        match (parsed.access_key_id, parsed.secret_access_key) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(AwsCredentials {
                access_key_id,
                secret_access_key,
                session_token: parsed.token,
            }),
            _ => Err(CredentialError::transient(format!(
                "AWS instance metadata at {} answered without AccessKeyId/SecretAccessKey",
                upstream::display_url(&role_url)
            ))),
        }
    }

    /// The serialized signed request, for `region` and `credentials` at time `now`.
    fn signed_request(
        &self,
        region: &str,
        credentials: &AwsCredentials,
        now: SystemTime,
    ) -> Result<String, CredentialError> {
        let url = self.verification_url.replace("{region}", region);
        let host = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .ok_or_else(|| {
                CredentialError::invalid(format!(
                    "credential_source.regional_cred_verification_url {url} is not a URL"
                ))
            })?;
        let identity = Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.expose_secret().to_owned(),
            credentials
                .session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            None,
            "gcp-kafka-auth-handler",
        )
        .into();
        let signing_params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("sts")
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| CredentialError::invalid(format!("cannot sign the AWS request: {e}")))?
            .into();
        let headers = [
            ("host", host.as_str()),
            (TARGET_RESOURCE_HEADER, self.audience.as_str()),
        ];
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| CredentialError::invalid(format!("cannot sign the AWS request: {e}")))?;
        let (instructions, _signature) = sign(signable, &signing_params)
            .map_err(|e| CredentialError::invalid(format!("cannot sign the AWS request: {e}")))?
            .into_parts();
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for (name, value) in instructions.headers() {
            let name = if name.eq_ignore_ascii_case("authorization") {
                "Authorization".to_owned()
            } else {
                name.to_owned()
            };
            all.push((name, value.to_owned()));
        }
        all.sort();
        let json = serde_json::json!({
            "headers": all
                .iter()
                .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                .collect::<Vec<_>>(),
            "method": "POST",
            "url": url,
        });
        Ok(utf8_percent_encode(&json.to_string(), QUOTE).to_string())
    }
}

impl std::fmt::Debug for AwsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSource")
            .field("audience", &self.audience)
            .field("region_url", &self.region_url)
            .field("credentials_url", &self.credentials_url)
            .field("verification_url", &self.verification_url)
            .finish()
    }
}

impl SubjectTokenSource for AwsSource {
    fn subject_token(&self) -> BoxFuture<'_, Result<SecretString, CredentialError>> {
        Box::pin(async move {
            let env_region = self.env_region();
            let env_credentials = self.env_credentials();
            // The session token is needed only when the metadata service is asked something.
            let session = if env_region.is_none() || env_credentials.is_none() {
                self.imdsv2_token().await?
            } else {
                None
            };
            let region = match env_region {
                Some(region) => region,
                None => self.region(session.as_ref()).await?,
            };
            let credentials = match env_credentials {
                Some(credentials) => credentials,
                None => self.role_credentials(session.as_ref()).await?,
            };
            self.signed_request(&region, &credentials, SystemTime::now())
                .map(SecretString::from)
        })
    }

    fn describe(&self) -> String {
        match &self.credentials_url {
            Some(url) if self.env.get("AWS_ACCESS_KEY_ID").is_none() => {
                format!("AWS (role credentials from {})", upstream::display_url(url))
            }
            _ => "AWS (credentials from AWS_ACCESS_KEY_ID)".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_request_is_serialized_as_google_expects() {
        let config: CredentialSourceConfig = serde_json::from_value(serde_json::json!({
            "environment_id": "aws1",
            "regional_cred_verification_url": DEFAULT_VERIFICATION_URL,
        }))
        .unwrap();
        let source = AwsSource::from_config(
            &config,
            "//iam.googleapis.com/aud",
            &Env::default(),
            &HttpClients::new(),
        )
        .unwrap();
        let credentials = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: Some(SecretString::from("session")),
        };
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_323_045);
        let token = source
            .signed_request("us-east-2", &credentials, at)
            .unwrap();
        assert!(!token.contains(['{', '"', ' ', ':', '+']), "{token}");
        let decoded = percent_encoding::percent_decode_str(&token)
            .decode_utf8()
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&decoded).unwrap();
        assert_eq!(value["method"], "POST");
        assert_eq!(
            value["url"],
            "https://sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
        );
        let keys: Vec<&str> = value["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "Authorization",
                "host",
                "x-amz-date",
                "x-amz-security-token",
                "x-goog-cloud-target-resource"
            ]
        );
        let header = |k: &str| {
            value["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["key"] == k)
                .unwrap()["value"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(header("host"), "sts.us-east-2.amazonaws.com");
        assert_eq!(header("x-amz-date"), "20260102T030405Z");
        assert_eq!(
            header("x-goog-cloud-target-resource"),
            "//iam.googleapis.com/aud"
        );
        let auth = header("Authorization");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260102/us-east-2/sts/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource, Signature="
            ),
            "{auth}"
        );
    }

    #[test]
    fn only_aws1_is_accepted() {
        let config: CredentialSourceConfig =
            serde_json::from_value(serde_json::json!({"environment_id": "aws2"})).unwrap();
        let err =
            AwsSource::from_config(&config, "a", &Env::default(), &HttpClients::new()).unwrap_err();
        assert_eq!(
            err.message(),
            "credential_source.environment_id `aws2` is not supported; only aws1 is"
        );
    }
}
