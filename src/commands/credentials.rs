//! The one `build_provider` of every command: [`ProviderArgs`] (Application Default
//! Credentials, or `--credentials-file`, or `--token`, as Google's own proxies take them;
//! `--impersonate-service-account`, `--refresh-margin`) and `--principal` to a provider, with
//! errors that name the option to fix.

use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow};
use gcp_kafka_auth_handler::credentials::tokeninfo::Tokeninfo;
use gcp_kafka_auth_handler::credentials::{
    BoxFuture, CredentialError, CredentialSource, GoogleToken, HttpClients,
};
use gcp_kafka_auth_handler::{BuildError, Env, KafkaTokenProvider, Principal};
use secrecy::SecretString;

use crate::commands::args::ProviderArgs;

/// Google access tokens live at most this long, so a `--token` is surely dead after it.
const MAX_ACCESS_TOKEN_LIFE: Duration = Duration::from_secs(3600);

/// A provider for the process environment and these flags, with errors that name the option
/// to fix.
pub fn build_provider(
    credentials: &ProviderArgs,
    principal: Option<&str>,
) -> anyhow::Result<KafkaTokenProvider> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    if let Some(path) = &credentials.credentials_file {
        std::fs::metadata(path).with_context(|| {
            format!(
                "--credentials-file {} (GCP_KAFKA_AUTH_CREDENTIALS_FILE) cannot be read",
                path.display()
            )
        })?;
        vars.retain(|(k, _)| k != "GOOGLE_APPLICATION_CREDENTIALS");
        vars.push((
            "GOOGLE_APPLICATION_CREDENTIALS".to_owned(),
            path.display().to_string(),
        ));
    }
    let env = Env::from_pairs(vars);
    let mut builder = KafkaTokenProvider::builder()
        .with_env(env.clone())
        .with_refresh_margin(credentials.refresh_margin);
    if let Some(token) = &credentials.token {
        if token.0.trim().is_empty() {
            return Err(anyhow!(
                "--token (GCP_KAFKA_AUTH_TOKEN) is empty: pass an access token, e.g. $(gcloud auth print-access-token)"
            ));
        }
        builder = builder.with_credentials(FixedToken {
            token: SecretString::from(token.0.trim().to_owned()),
            dead_at: SystemTime::now() + MAX_ACCESS_TOKEN_LIFE,
            tokeninfo: Tokeninfo::from_env(&env, &HttpClients::default()),
        });
    }
    if let Some(principal) = principal {
        builder = builder.with_principal(principal);
    }
    if let Some(chain) = credentials
        .impersonation
        .impersonate_service_account
        .clone()
    {
        builder = builder.with_impersonation(chain);
    }
    builder.build().map_err(|err| match err {
        BuildError::Principal(_) => {
            anyhow!("invalid --principal (GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL): {err}")
        }
        BuildError::RefreshMargin { .. } => {
            anyhow!("invalid --refresh-margin (GCP_KAFKA_AUTH_REFRESH_MARGIN): {err}")
        }
        _ => anyhow!("{err}"),
    })
}

/// `--token`: one access token, never refreshed.
struct FixedToken {
    token: SecretString,
    /// An upper bound of its expiry: an hour after start.
    dead_at: SystemTime,
    tokeninfo: Tokeninfo,
}

impl std::fmt::Debug for FixedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedToken")
            .field("token", &"[censored]")
            .finish_non_exhaustive()
    }
}

impl CredentialSource for FixedToken {
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>> {
        Box::pin(async move {
            if SystemTime::now() >= self.dead_at {
                return Err(CredentialError::invalid(
                    "the --token access token is more than an hour old, so it has expired: restart with a fresh one, or use credentials that refresh (ADC, --credentials-file)",
                ));
            }
            Ok(GoogleToken {
                access_token: self.token.clone(),
                expires_at: self.dead_at,
                principal_hint: None,
            })
        })
    }

    fn principal<'a>(
        &'a self,
        token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>> {
        Box::pin(async move { self.tokeninfo.email(token).await })
    }

    fn describe(&self) -> String {
        "the access token given with --token (not refreshed)".to_owned()
    }
}
