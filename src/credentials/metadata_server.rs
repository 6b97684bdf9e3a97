//! The GCE metadata server: Compute Engine, GKE, Cloud Run, Dataflow workers.

use std::time::SystemTime;

use tokio::sync::OnceCell;

use super::upstream::{self, HttpClientError, HttpClients, display_url};
use super::{
    BoxFuture, CLOUD_PLATFORM_SCOPE, CredentialError, CredentialSource, ErrorKind, GoogleToken,
};
use crate::env::Env;
use crate::principal::Principal;

/// The metadata server's host name inside Google Cloud.
pub const DEFAULT_HOST: &str = "metadata.google.internal";
/// Environment variable that replaces [`DEFAULT_HOST`] (`host` or `host:port`).
pub const HOST_VAR: &str = "GCE_METADATA_HOST";

const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const EMAIL_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/email";
const UNIVERSE_PATH: &str = "/computeMetadata/v1/universe/universe-domain";
const PROJECT_PATH: &str = "/computeMetadata/v1/project/project-id";

/// Credentials of the service account attached to the VM, pod or worker.
///
/// ```
/// use gcp_kafka_auth_handler::credentials::metadata_server::MetadataServer;
/// use gcp_kafka_auth_handler::credentials::CredentialSource;
/// let mds = MetadataServer::builder().with_host("127.0.0.1:8080").build();
/// assert_eq!(mds.describe(), "metadata server at http://127.0.0.1:8080");
/// ```
#[derive(Debug)]
pub struct MetadataServer {
    base_url: String,
    /// The given client, or the shared one; an error (no TLS backend) is reported by the first
    /// request, so building the source never fails or panics.
    http: Result<reqwest::Client, HttpClientError>,
    email: OnceCell<Principal>,
    universe: OnceCell<String>,
}

/// Builds a [`MetadataServer`].
#[derive(Debug, Default)]
pub struct MetadataServerBuilder {
    host: Option<String>,
    http: Option<HttpClients>,
}

impl MetadataServerBuilder {
    /// Uses `host` (`name` or `name:port`) instead of `metadata.google.internal`.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Takes the host from `GCE_METADATA_HOST` when it is set.
    pub fn with_env(mut self, env: &Env) -> Self {
        if let Some(host) = env.get(HOST_VAR) {
            self.host = Some(host.to_owned());
        }
        self
    }

    /// Shares HTTP clients (and their connection pools) with other sources.
    pub fn with_http(mut self, http: HttpClients) -> Self {
        self.http = Some(http);
        self
    }

    /// The configured source.
    pub fn build(self) -> MetadataServer {
        let host = self.host.unwrap_or_else(|| DEFAULT_HOST.to_owned());
        let base_url = if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", host.trim_end_matches('/'))
        };
        MetadataServer {
            base_url,
            http: match self.http {
                Some(http) => Ok(http.metadata),
                None => HttpClients::shared().map(|http| http.metadata),
            },
            email: OnceCell::new(),
            universe: OnceCell::new(),
        }
    }
}

impl MetadataServer {
    /// A builder for the default host.
    pub fn builder() -> MetadataServerBuilder {
        MetadataServerBuilder::default()
    }

    /// The base URL, `http://metadata.google.internal` unless overridden.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The project the VM, pod or worker runs in (for `doctor`).
    pub async fn project_id(&self) -> Result<String, CredentialError> {
        let body = self.get(PROJECT_PATH, "metadata server").await?;
        Ok(String::from_utf8_lossy(&body).trim().to_owned())
    }

    /// One GET with `Metadata-Flavor: Google`, checking the server answers as the metadata
    /// server does. A refused connection or unknown host means "not on Google Cloud".
    async fn get(&self, path_and_query: &str, what: &str) -> Result<bytes::Bytes, CredentialError> {
        let url = format!("{}{path_and_query}", self.base_url);
        let response = self
            .http
            .as_ref()
            .map_err(|err| CredentialError::from(err.clone()))?
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| {
                let not_there = e.is_connect();
                let err = upstream::send_error(what, &url, e);
                if not_there {
                    CredentialError::new(
                        ErrorKind::NotFound,
                        format!("{} (not running on Google Cloud?)", err.message()),
                    )
                } else {
                    err
                }
            })?;
        let flavor_ok = response
            .headers()
            .get("metadata-flavor")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"Google"));
        let (status, body) = upstream::read_body(what, &url, response).await?;
        if !status.is_success() {
            let err = upstream::status_error(what, &url, status, &body);
            // 404 on the token path: no service account attached to this VM.
            return Err(if status == reqwest::StatusCode::NOT_FOUND {
                CredentialError::new(
                    ErrorKind::Invalid,
                    format!(
                        "{}; attach a service account to the VM, node pool or worker",
                        err.message()
                    ),
                )
            } else {
                err
            });
        }
        if !flavor_ok {
            return Err(CredentialError::new(
                ErrorKind::NotFound,
                format!(
                    "{what} at {} answered without the `Metadata-Flavor: Google` header, so it is not a metadata server",
                    display_url(&url)
                ),
            ));
        }
        Ok(body)
    }
}

impl CredentialSource for MetadataServer {
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>> {
        Box::pin(async move {
            let sent_at = SystemTime::now();
            let path = format!("{TOKEN_PATH}?scopes={CLOUD_PLATFORM_SCOPE}");
            let body = self.get(&path, "metadata server").await?;
            upstream::parse_token_response(
                "metadata server",
                &format!("{}{TOKEN_PATH}", self.base_url),
                &body,
                sent_at,
            )
        })
    }

    fn principal<'a>(
        &'a self,
        _token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>> {
        Box::pin(async move {
            // The attached service account cannot change under a running process: ask once.
            self.email
                .get_or_try_init(|| async {
                    let body = self.get(EMAIL_PATH, "metadata server").await?;
                    let email = String::from_utf8_lossy(&body).trim().to_owned();
                    Principal::new(email).map_err(|e| {
                        CredentialError::invalid(format!("metadata server service account: {e}"))
                    })
                })
                .await
                .cloned()
        })
    }

    fn describe(&self) -> String {
        format!("metadata server at {}", self.base_url)
    }

    fn universe_domain(&self) -> BoxFuture<'_, Result<String, CredentialError>> {
        Box::pin(async move {
            self.universe
                .get_or_try_init(|| async {
                    match self.get(UNIVERSE_PATH, "metadata server").await {
                        Ok(body) => {
                            let domain = String::from_utf8_lossy(&body).trim().to_owned();
                            Ok(if domain.is_empty() {
                                super::DEFAULT_UNIVERSE_DOMAIN.to_owned()
                            } else {
                                domain
                            })
                        }
                        // Older metadata servers have no universe entry: the public universe.
                        Err(e) if e.kind() == ErrorKind::Invalid => {
                            Ok(super::DEFAULT_UNIVERSE_DOMAIN.to_owned())
                        }
                        Err(e) => Err(e),
                    }
                })
                .await
                .cloned()
        })
    }
}
