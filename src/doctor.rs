//! `gcp-kafka-auth-handler doctor`: what the sidecar would do with these credentials, for a
//! person (or, with `--json`, a machine).
//!
//! It walks the same path as a refresh: the ADC search (every place checked, in order), the
//! source built from what was found, one Google token, the principal, the Kafka token. It
//! reports each step and stops at the first failure with the fix. Nothing secret is ever
//! printed: no token, key, refresh token or client secret, only names, paths, lifetimes and
//! the principal.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde::Serialize;

use crate::credentials::adc::{self, ApplicationDefault, Location};
use crate::credentials::{CredentialError, CredentialSource, ErrorKind, HttpClients};
use crate::credentials::{impersonated, metadata_server};
use crate::env::Env;
use crate::kafka_token::KafkaToken;
use crate::principal::{PRINCIPAL_OVERRIDE_VAR, Principal};
use crate::provider::ImpersonationChain;

/// What `doctor` is asked to check beyond ADC.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The principal (`sub`) to check instead of the one the credentials name (else
    /// `GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL` from the environment).
    pub principal: Option<String>,
    /// Where [`principal`](Self::principal) came from, as [`Report::principal_from`] says
    /// it: `from {this}` (default `doctor::Options::principal`). For a program that takes
    /// the principal from settings of its own, such as a command-line flag.
    pub principal_origin: Option<String>,
    /// The service account (and delegates) to impersonate with the credentials found.
    pub impersonate: Option<ImpersonationChain>,
}

/// Everything `doctor` found out.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Every place ADC looked, in order.
    pub checked: Vec<String>,
    /// The place chosen and why.
    pub chosen: Option<String>,
    /// The credential type (`service_account`, `metadata_server`, ...).
    pub credential_type: Option<String>,
    /// The source described (no secrets).
    pub source: Option<String>,
    /// The project, when the credentials name one.
    pub project: Option<String>,
    /// Where the project was read.
    pub project_from: Option<String>,
    /// The principal the Kafka token names.
    pub principal: Option<String>,
    /// How the principal was found.
    pub principal_from: Option<String>,
    /// Seconds the Google token has left (it was fetched).
    pub google_token_lifetime_secs: Option<i64>,
    /// Whether the Kafka token's claims decode with the URL-safe alphabet (Kafka 4.2+).
    pub kafka_token_decodes_url_safe: Option<bool>,
    /// Whether they decode with the standard alphabet (kafka-clients before 4.2).
    pub kafka_token_decodes_standard: Option<bool>,
    /// The first failure, if any.
    pub problem: Option<Problem>,
}

/// What went wrong and how to fix it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Problem {
    /// The step that failed: `search`, `credentials`, `token`, `principal`, `kafka_token`.
    pub step: &'static str,
    /// `not_found`, `transient`, `rejected` or `invalid`.
    pub kind: &'static str,
    /// The error, which says how to fix it.
    pub message: String,
}

impl Report {
    /// Whether the sidecar could serve a token with these credentials right now.
    pub fn can_serve(&self) -> bool {
        self.problem.is_none()
            && self.kafka_token_decodes_standard == Some(true)
            && self.kafka_token_decodes_url_safe == Some(true)
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["ok"] = self.can_serve().into();
        value.to_string()
    }

    /// Text for a person.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "Places checked, in order:");
        for (i, place) in self.checked.iter().enumerate() {
            let _ = writeln!(out, "  {}. {place}", i + 1);
        }
        let line = |out: &mut String, label: &str, value: &Option<String>| {
            if let Some(v) = value {
                let _ = writeln!(out, "{label:<14}{v}");
            }
        };
        line(&mut out, "Chosen:", &self.chosen);
        line(&mut out, "Type:", &self.credential_type);
        line(&mut out, "Source:", &self.source);
        line(
            &mut out,
            "Project:",
            &self.project.as_ref().map(|p| match &self.project_from {
                Some(from) => format!("{p} (from {from})"),
                None => p.clone(),
            }),
        );
        line(
            &mut out,
            "Google token:",
            &self
                .google_token_lifetime_secs
                .map(|s| format!("fetched; valid for {s} s more")),
        );
        line(
            &mut out,
            "Principal:",
            &self.principal.as_ref().map(|p| match &self.principal_from {
                Some(from) => format!("{p} ({from})"),
                None => p.clone(),
            }),
        );
        if let (Some(std), Some(url)) = (
            self.kafka_token_decodes_standard,
            self.kafka_token_decodes_url_safe,
        ) {
            let yes = |b: bool| if b { "yes" } else { "NO" };
            let _ = writeln!(
                out,
                "Kafka token:  decodes as base64url (Kafka 4.2+): {}; as standard Base64 (kafka-clients < 4.2): {}",
                yes(url),
                yes(std)
            );
        }
        match &self.problem {
            None if self.can_serve() => {
                let _ = writeln!(out, "OK: the sidecar can serve Kafka tokens.");
            }
            None => {
                let _ = writeln!(
                    out,
                    "PROBLEM: the Kafka token does not decode under both alphabets."
                );
            }
            Some(problem) => {
                let _ = writeln!(out, "PROBLEM ({}): {}", problem.step, problem.message);
            }
        }
        out
    }

    fn fail(mut self, step: &'static str, err: &CredentialError) -> Self {
        self.problem = Some(Problem {
            step,
            kind: match err.kind() {
                ErrorKind::NotFound => "not_found",
                ErrorKind::Transient => "transient",
                ErrorKind::Rejected => "rejected",
                ErrorKind::Invalid => "invalid",
            },
            message: err.message().to_owned(),
        });
        self
    }
}

/// Runs every check against the credentials `env` describes.
pub async fn examine(env: Env, options: Options) -> Report {
    let mut report = Report::default();
    let given = match &options.principal {
        Some(p) => Some((
            p.clone(),
            options
                .principal_origin
                .clone()
                .unwrap_or_else(|| "doctor::Options::principal".to_owned()),
        )),
        None => env
            .get(PRINCIPAL_OVERRIDE_VAR)
            .map(|p| (p.to_owned(), PRINCIPAL_OVERRIDE_VAR.to_owned())),
    };
    let override_principal = match given {
        None => None,
        Some((p, origin)) => match Principal::new(p) {
            Ok(p) => Some((p, origin)),
            Err(e) => return report.fail("principal", &CredentialError::from(e)),
        },
    };
    let search = match adc::search(&env) {
        Ok(search) => search,
        Err(err) => {
            report
                .checked
                .push(format!("{}: set", adc::CREDENTIALS_VAR));
            return report.fail("search", &err);
        }
    };
    report.checked = search.checked.clone();
    report.chosen = Some(match &search.location {
        Location::EnvironmentFile(p) => {
            format!(
                "{} (because {} names it)",
                p.display(),
                adc::CREDENTIALS_VAR
            )
        }
        Location::WellKnownFile(p) => format!(
            "{} (gcloud's file; {} is not set)",
            p.display(),
            adc::CREDENTIALS_VAR
        ),
        Location::MetadataServer => {
            "the metadata server (no credentials file was found)".to_owned()
        }
    });
    let http = match HttpClients::try_new() {
        Ok(http) => http,
        Err(err) => return report.fail("credentials", &err.into()),
    };
    describe_file_or_server(&mut report, &search.location, &env, &http).await;
    let adc = Arc::new(ApplicationDefault::new(env.clone(), http.clone()));
    let base = match adc.resolve() {
        Ok((_, source)) => source,
        Err(err) => return report.fail("credentials", &err),
    };
    report.source = Some(base.describe());
    let source: Arc<dyn CredentialSource> = match options.impersonate {
        Some(chain) => {
            let wrapped = match impersonated::Builder::new(adc.clone(), chain.target)
                .with_delegates(chain.delegates)
                .with_env(env.clone())
                .with_http(http.clone())
                .build()
            {
                Ok(wrapped) => wrapped,
                Err(err) => return report.fail("credentials", &err),
            };
            report.source = Some(format!(
                "{} impersonated by {}",
                wrapped.target(),
                base.describe()
            ));
            Arc::new(wrapped)
        }
        None => adc,
    };
    let token = match source.fetch_token().await {
        Ok(token) => token,
        Err(err) => return report.fail("token", &err),
    };
    report.google_token_lifetime_secs = Some(token.seconds_left());
    let principal = match override_principal {
        Some((p, origin)) => {
            report.principal_from = Some(format!("from {origin}"));
            p
        }
        None => match source.principal(&token).await {
            Ok(p) => {
                report.principal_from =
                    Some(format!("named by the credentials: {}", source.describe()));
                p
            }
            Err(err) => return report.fail("principal", &err),
        },
    };
    report.principal = Some(principal.to_string());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let exp = token
        .expires_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let kafka = KafkaToken::encode(
        secrecy::ExposeSecret::expose_secret(&token.access_token),
        &principal,
        exp,
        now,
    );
    let claims = kafka.expose().split('.').nth(1).unwrap_or("");
    let decodes = |engine: &base64::engine::GeneralPurpose| {
        engine
            .decode(claims)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["sub"] == principal.as_str())
    };
    report.kafka_token_decodes_url_safe = Some(decodes(&URL_SAFE_NO_PAD));
    report.kafka_token_decodes_standard = Some(decodes(&STANDARD_NO_PAD));
    report
}

/// Type and project, read from the file or asked of the metadata server. Failures here are
/// left to the later steps, which report them with their fix.
async fn describe_file_or_server(
    report: &mut Report,
    location: &Location,
    env: &Env,
    http: &HttpClients,
) {
    match location {
        Location::EnvironmentFile(path) | Location::WellKnownFile(path) => {
            let Ok(bytes) = crate::files::read_capped(
                path,
                crate::files::MAX_CREDENTIALS_FILE_BYTES,
                "a credentials file",
            ) else {
                return;
            };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                return;
            };
            let field = |v: &serde_json::Value, name: &str| {
                v.get(name)
                    .and_then(|f| f.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            report.credential_type = field(&json, "type");
            let inner = json.get("source_credentials").cloned().unwrap_or_default();
            for (value, name, from) in [
                (&json, "project_id", "the file's project_id"),
                (&json, "quota_project_id", "the file's quota_project_id"),
                (
                    &json,
                    "workforce_pool_user_project",
                    "the file's workforce_pool_user_project",
                ),
                (&inner, "project_id", "source_credentials.project_id"),
                (
                    &inner,
                    "quota_project_id",
                    "source_credentials.quota_project_id",
                ),
            ] {
                if let Some(project) = field(value, name) {
                    report.project = Some(project);
                    report.project_from = Some(from.to_owned());
                    return;
                }
            }
            if let Some(number) = field(&json, "audience").and_then(|a| {
                a.split("/projects/")
                    .nth(1)
                    .and_then(|rest| rest.split('/').next())
                    .map(str::to_owned)
            }) {
                report.project = Some(number);
                report.project_from = Some("the project number in the file's audience".to_owned());
            }
        }
        Location::MetadataServer => {
            report.credential_type = Some("metadata_server".to_owned());
            let mds = metadata_server::Builder::default()
                .with_env(env.clone())
                .with_http(http.clone())
                .build();
            // The project is a detail of the report; without it the checks go on.
            if let Ok(mds) = mds
                && let Ok(project) = mds.project_id().await
            {
                report.project = Some(project);
                report.project_from = Some("the metadata server".to_owned());
            }
        }
    }
}
