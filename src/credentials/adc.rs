//! Application Default Credentials: which credentials to use, found the way Google's
//! libraries find them.
//!
//! Order: the file named by `GOOGLE_APPLICATION_CREDENTIALS` (a missing file is an error, not
//! a fall-through); gcloud's well-known file; the metadata server. The choice is made again
//! before every refresh, so a rotated key, a new `gcloud auth application-default login` or a
//! file that appears after start is picked up without a restart.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::authorized_user::AuthorizedUser;
use super::external_account;
use super::external_account_authorized_user::WorkforceUser;
use super::impersonated::Impersonated;
use super::metadata_server::MetadataServer;
use super::service_account::ServiceAccountKey;
use super::upstream::{self, HttpClients};
use super::{BoxFuture, CredentialError, CredentialSource, ErrorKind, GoogleToken};
use crate::env::Env;
use crate::principal::Principal;

/// Environment variable naming a credentials file.
pub const CREDENTIALS_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// Environment variable naming gcloud's configuration directory.
pub const CLOUDSDK_CONFIG_VAR: &str = "CLOUDSDK_CONFIG";
/// The file gcloud writes for `gcloud auth application-default login`.
pub const WELL_KNOWN_FILE: &str = "application_default_credentials.json";

/// Where the credentials were found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// The file named by `GOOGLE_APPLICATION_CREDENTIALS`.
    EnvironmentFile(PathBuf),
    /// gcloud's application default credentials file.
    WellKnownFile(PathBuf),
    /// No file: the metadata server.
    MetadataServer,
}

/// The outcome of the search: where credentials are, and every place looked at, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Search {
    /// The place chosen.
    pub location: Location,
    /// One line per place checked, for error messages and `doctor`.
    pub checked: Vec<String>,
}

/// Looks for credentials the ADC way. Only the file system is touched; whether the metadata
/// server answers is learned when a token is fetched from it.
pub fn search(env: &Env) -> Result<Search, CredentialError> {
    let mut checked = Vec::new();
    if let Some(path) = env.get(CREDENTIALS_VAR) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(CredentialError::invalid(format!(
                "{CREDENTIALS_VAR} names {}, which {}; point it at a credentials JSON file or unset it",
                path.display(),
                if path.exists() {
                    "is not a file"
                } else {
                    "does not exist"
                }
            )));
        }
        checked.push(format!("{CREDENTIALS_VAR}: {}", path.display()));
        return Ok(Search {
            location: Location::EnvironmentFile(path),
            checked,
        });
    }
    checked.push(format!("{CREDENTIALS_VAR}: not set"));
    match well_known_file(env) {
        Some(path) if path.is_file() => {
            checked.push(format!("gcloud credentials: {}", path.display()));
            return Ok(Search {
                location: Location::WellKnownFile(path),
                checked,
            });
        }
        Some(path) => checked.push(format!(
            "gcloud credentials: {} (not found)",
            path.display()
        )),
        None => checked.push(format!(
            "gcloud credentials: neither {CLOUDSDK_CONFIG_VAR} nor HOME is set"
        )),
    }
    Ok(Search {
        location: Location::MetadataServer,
        checked,
    })
}

/// gcloud's file: `$CLOUDSDK_CONFIG/...`, else `~/.config/gcloud/...` (`%APPDATA%\gcloud\...`
/// on Windows).
pub fn well_known_file(env: &Env) -> Option<PathBuf> {
    if let Some(dir) = env.get(CLOUDSDK_CONFIG_VAR) {
        return Some(Path::new(dir).join(WELL_KNOWN_FILE));
    }
    if cfg!(windows) {
        return env
            .get("APPDATA")
            .map(|d| Path::new(d).join("gcloud").join(WELL_KNOWN_FILE));
    }
    env.get("HOME").map(|h| {
        Path::new(h)
            .join(".config")
            .join("gcloud")
            .join(WELL_KNOWN_FILE)
    })
}

#[derive(Deserialize)]
struct TypeField {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The credential types a file may hold.
pub const SUPPORTED_TYPES: &[&str] = &[
    "service_account",
    "authorized_user",
    "impersonated_service_account",
    "external_account",
    "external_account_authorized_user",
];

#[derive(Deserialize)]
struct ImpersonatedFile {
    service_account_impersonation_url: Option<String>,
    source_credentials: Option<serde_json::Value>,
    #[serde(default)]
    delegates: Vec<String>,
    universe_domain: Option<String>,
}

/// An `impersonated_service_account` file: its `source_credentials` (any other file type)
/// impersonate the account in `service_account_impersonation_url`.
fn impersonated_from_json(
    json: &[u8],
    env: &Env,
    http: &HttpClients,
) -> Result<Arc<dyn CredentialSource>, CredentialError> {
    let file: ImpersonatedFile = serde_json::from_slice(json).map_err(|e| {
        CredentialError::invalid(format!(
            "the impersonated_service_account file is not valid ({}); run \
             `gcloud auth application-default login --impersonate-service-account=EMAIL` again",
            upstream::describe_json_error(&e)
        ))
    })?;
    let url = file
        .service_account_impersonation_url
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            CredentialError::invalid(
                "the impersonated_service_account file has no service_account_impersonation_url",
            )
        })?;
    let source_json = file.source_credentials.ok_or_else(|| {
        CredentialError::invalid("the impersonated_service_account file has no source_credentials")
    })?;
    if source_json.get("type").and_then(|t| t.as_str()) == Some("impersonated_service_account") {
        return Err(CredentialError::invalid(
            "source_credentials of an impersonated_service_account file cannot be \
             impersonated_service_account themselves; list the intermediate accounts in delegates",
        ));
    }
    let source = source_from_json(
        &serde_json::to_vec(&source_json).unwrap_or_default(),
        env,
        http,
    )
    .map_err(|e| e.context("source_credentials"))?;
    let universe = file
        .universe_domain
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| super::DEFAULT_UNIVERSE_DOMAIN.to_owned());
    Ok(Arc::new(
        Impersonated::from_url(source, &url, &universe, env)?
            .with_delegates(file.delegates)
            .with_http(http),
    ))
}

/// Builds the source a credentials file describes, dispatching on its `"type"`.
pub fn source_from_json(
    json: &[u8],
    env: &Env,
    http: &HttpClients,
) -> Result<Arc<dyn CredentialSource>, CredentialError> {
    let kind = serde_json::from_slice::<TypeField>(json)
        .map_err(|e| {
            CredentialError::invalid(format!(
                "not a credentials JSON file ({})",
                upstream::describe_json_error(&e)
            ))
        })?
        .kind
        .unwrap_or_default();
    match kind.as_str() {
        "service_account" => Ok(Arc::new(
            ServiceAccountKey::from_json(json)?.with_http(http),
        )),
        "authorized_user" => Ok(Arc::new(
            AuthorizedUser::from_json(json, env)?.with_http(http, env),
        )),
        "impersonated_service_account" => impersonated_from_json(json, env, http),
        "external_account" => external_account::from_json(json, env, http),
        "external_account_authorized_user" => Ok(Arc::new(WorkforceUser::from_json(json, http)?)),
        "" => Err(CredentialError::invalid(
            "the credentials file has no \"type\" field; expected a file written by gcloud or a service-account key",
        )),
        other => Err(CredentialError::invalid(format!(
            "credential type `{other}` is not supported; supported types: {}",
            SUPPORTED_TYPES.join(", ")
        ))),
    }
}

/// Application Default Credentials as a [`CredentialSource`].
///
/// ```
/// use gcp_kafka_auth_handler::credentials::adc::ApplicationDefault;
/// use gcp_kafka_auth_handler::credentials::HttpClients;
/// use gcp_kafka_auth_handler::Env;
/// let adc = ApplicationDefault::new(Env::from_pairs([("HOME", "/nonexistent")]), HttpClients::new());
/// ```
pub struct ApplicationDefault {
    env: Env,
    http: HttpClients,
    metadata: Arc<MetadataServer>,
    current: Mutex<Option<Chosen>>,
}

#[derive(Clone)]
struct Chosen {
    location: Location,
    fingerprint: u64,
    source: Arc<dyn CredentialSource>,
}

impl ApplicationDefault {
    /// ADC as `env` describes it.
    pub fn new(env: Env, http: HttpClients) -> Self {
        let metadata = Arc::new(
            MetadataServer::builder()
                .with_env(&env)
                .with_http(http.clone())
                .build(),
        );
        Self {
            env,
            http,
            metadata,
            current: Mutex::new(None),
        }
    }

    /// Finds the credentials now and builds their source, reusing the previous one when the
    /// same file has the same contents (so per-source state such as a cached email survives).
    pub fn resolve(&self) -> Result<(Search, Arc<dyn CredentialSource>), CredentialError> {
        let search = search(&self.env)?;
        let (fingerprint, build): (u64, Option<Vec<u8>>) = match &search.location {
            Location::EnvironmentFile(path) | Location::WellKnownFile(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    CredentialError::invalid(format!(
                        "cannot read {}: {e}; check the path and its permissions",
                        path.display()
                    ))
                })?;
                let mut hasher = DefaultHasher::new();
                bytes.hash(&mut hasher);
                (hasher.finish(), Some(bytes))
            }
            Location::MetadataServer => (0, None),
        };
        let mut current = self.current.lock().expect("ADC lock is never poisoned");
        if let Some(chosen) = current.as_ref()
            && chosen.location == search.location
            && chosen.fingerprint == fingerprint
        {
            return Ok((search, chosen.source.clone()));
        }
        let source: Arc<dyn CredentialSource> = match build {
            Some(bytes) => {
                let path = match &search.location {
                    Location::EnvironmentFile(p) | Location::WellKnownFile(p) => p.clone(),
                    Location::MetadataServer => unreachable!("files only"),
                };
                source_from_json(&bytes, &self.env, &self.http)
                    .map_err(|e| e.context(path.display()))?
            }
            None => self.metadata.clone(),
        };
        if current.is_some() {
            tracing::info!(source = %source.describe(), "credentials changed; using the new ones");
        }
        *current = Some(Chosen {
            location: search.location.clone(),
            fingerprint,
            source: source.clone(),
        });
        Ok((search, source))
    }

    fn current_source(&self) -> Option<Arc<dyn CredentialSource>> {
        self.current
            .lock()
            .expect("ADC lock is never poisoned")
            .as_ref()
            .map(|c| c.source.clone())
    }
}

impl std::fmt::Debug for ApplicationDefault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplicationDefault")
            .field("current", &self.current_source())
            .finish()
    }
}

impl CredentialSource for ApplicationDefault {
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>> {
        Box::pin(async move {
            let (search, source) = self.resolve()?;
            source.fetch_token().await.map_err(|err| {
                if err.kind() == ErrorKind::NotFound {
                    let mut lines = search.checked.clone();
                    lines.push(err.message().to_owned());
                    CredentialError::new(
                        ErrorKind::NotFound,
                        format!(
                            "no Google credentials found. Looked at, in order: {}. Fix: run \
                             `gcloud auth application-default login`, set {CREDENTIALS_VAR} to a \
                             credentials file, or run on Google Cloud with a service account attached",
                            lines.join("; ")
                        ),
                    )
                } else {
                    err
                }
            })
        })
    }

    fn principal<'a>(
        &'a self,
        token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>> {
        Box::pin(async move {
            let source = match self.current_source() {
                Some(source) => source,
                None => self.resolve()?.1,
            };
            source.principal(token).await
        })
    }

    fn describe(&self) -> String {
        match self.current_source() {
            Some(source) => format!("application default credentials: {}", source.describe()),
            None => "application default credentials (not resolved yet)".to_owned(),
        }
    }

    fn universe_domain(&self) -> BoxFuture<'_, Result<String, CredentialError>> {
        Box::pin(async move {
            let source = match self.current_source() {
                Some(source) => source,
                None => self.resolve()?.1,
            };
            source.universe_domain().await
        })
    }
}
