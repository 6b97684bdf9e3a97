//! Managed Kafka cluster names (`projects/P/locations/L/clusters/C`) and the Managed Kafka API
//! call that turns one into its bootstrap address, as Cloud SQL Auth Proxy does with instance
//! connection names.
//!
//! The address is the cluster's `bootstrapAddress` from
//! `GET https://managedkafka.{universe}/v1/projects/P/locations/L/clusters/C`, called with the
//! provider's access token (and `x-goog-user-project` when a quota project is set). It cannot
//! be derived from the name: newer clusters have `bootstrap-<id>...` hosts. Every failure
//! says what to do: a missing cluster, a missing `managedkafka.clusters.get` permission, a
//! disabled API, a malformed name.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde_json::Value;

use crate::KafkaTokenProvider;

/// The port Managed Kafka serves SASL over TLS on, used when `bootstrapAddress` has none.
pub const DEFAULT_KAFKA_PORT: u16 = 9092;
/// The role that grants `managedkafka.clusters.get`.
pub const VIEWER_ROLE: &str = "roles/managedkafka.viewer";
/// The permission the lookup needs.
pub const GET_PERMISSION: &str = "managedkafka.clusters.get";
/// The form a cluster name takes, for error messages.
pub const NAME_FORM: &str = "projects/PROJECT/locations/REGION/clusters/CLUSTER";

/// A Managed Kafka cluster's resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterName {
    /// The project id (or number).
    pub project: String,
    /// The region (`locations/L`).
    pub location: String,
    /// The cluster id.
    pub cluster: String,
}

/// A string that is not a cluster name; the message shows the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a Managed Kafka cluster name ({why}): write {NAME_FORM}, e.g. projects/my-project/locations/us-central1/clusters/my-cluster (`gcloud managed-kafka clusters list --location=REGION` lists them); for any other Kafka give its bootstrap servers to ProxyBuilder::with_bootstrap_servers"
)]
pub struct BadClusterName {
    /// What was given.
    pub text: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl FromStr for ClusterName {
    type Err = BadClusterName;

    fn from_str(text: &str) -> Result<Self, BadClusterName> {
        let bad = |why| BadClusterName {
            text: text.to_owned(),
            why,
        };
        let [project, location, cluster] = crate::resource_name::split(
            text,
            "clusters",
            "the parts must be projects/…/locations/…/clusters/…",
        )
        .map_err(bad)?;
        if !crate::resource_name::id_ok(cluster) {
            return Err(bad(
                "the cluster id is empty or has characters ids cannot have",
            ));
        }
        Ok(ClusterName {
            project: project.to_owned(),
            location: location.to_owned(),
            cluster: cluster.to_owned(),
        })
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "projects/{}/locations/{}/clusters/{}",
            self.project, self.location, self.cluster
        )
    }
}

/// Why a cluster's bootstrap address could not be looked up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// 404: no such cluster.
    #[error(
        "Managed Kafka cluster {name} not found (404 from {url}): check the project, the region and the cluster id; `gcloud managed-kafka clusters list --project={project} --location={location}` lists the clusters there",
        project = .name.project,
        location = .name.location
    )]
    NotFound {
        /// The cluster.
        name: Box<ClusterName>,
        /// The URL called.
        url: String,
    },
    /// 403 without `SERVICE_DISABLED`: the principal lacks the permission.
    #[error(
        "permission denied reading Managed Kafka cluster {name} (403 from {url}): {principal} needs the {GET_PERMISSION} permission on it, which the role {VIEWER_ROLE} grants (gcloud projects add-iam-policy-binding {project} --member=<that principal> --role={VIEWER_ROLE}); Google said: {message}",
        project = .name.project
    )]
    PermissionDenied {
        /// The cluster.
        name: Box<ClusterName>,
        /// The URL called.
        url: String,
        /// Whose token was used.
        principal: String,
        /// Google's message.
        message: String,
    },
    /// 403 `SERVICE_DISABLED`: the API is not enabled in the consumer project.
    #[error(
        "the Managed Kafka API (managedkafka.googleapis.com) is disabled in project {consumer}: enable it with `gcloud services enable managedkafka.googleapis.com --project={consumer}`{activation} (the consumer project is LookupOptions::quota_project when it is set), then retry"
    )]
    ServiceDisabled {
        /// The project the API is disabled in, as Google names it.
        consumer: String,
        /// `" or at URL"` when Google gave an activation URL.
        activation: String,
    },
    /// 401: the token was refused.
    #[error(
        "the Managed Kafka API refused the credentials' token (401 from {url}): {message}; check the credentials with `gcp-kafka-auth-handler doctor`"
    )]
    Unauthenticated {
        /// The URL called.
        url: String,
        /// Google's message.
        message: String,
    },
    /// Any other status.
    #[error("the Managed Kafka API answered {status} for {name} from {url}: {message}")]
    Status {
        /// The cluster.
        name: Box<ClusterName>,
        /// The URL called.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Google's message, or the start of the body.
        message: String,
    },
    /// The request could not be sent or its answer read.
    #[error(
        "cannot reach the Managed Kafka API at {url}: {detail} (set LookupOptions::endpoint for a private endpoint)"
    )]
    Unreachable {
        /// The URL called.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// 200 without a usable `bootstrapAddress`.
    #[error(
        "the Managed Kafka API's answer for {name} has no usable bootstrapAddress ({detail}); is the cluster still being created? (`gcloud managed-kafka clusters describe {cluster} --location={location} --project={project}`)",
        cluster = .name.cluster,
        location = .name.location,
        project = .name.project
    )]
    NoBootstrapAddress {
        /// The cluster.
        name: Box<ClusterName>,
        /// What is wrong.
        detail: String,
    },
    /// No token to call the API with.
    #[error("no access token to call the Managed Kafka API with: {0}")]
    Token(String),
}

/// How to call the Managed Kafka API.
#[derive(Debug, Clone, Default)]
pub struct LookupOptions {
    /// The API's base URL (default `https://managedkafka.{universe domain}`): a private
    /// endpoint or a test server.
    pub endpoint: Option<String>,
    /// Sent as `x-goog-user-project`: the project billed and quota-checked for the call.
    pub quota_project: Option<String>,
    /// How long the call may take (default 30 s).
    pub timeout: Option<Duration>,
}

/// The API base URL for `options` and the provider's universe.
pub async fn api_endpoint(
    provider: &KafkaTokenProvider,
    options: &LookupOptions,
) -> Result<String, LookupError> {
    match &options.endpoint {
        Some(endpoint) => Ok(endpoint.trim_end_matches('/').to_owned()),
        None => {
            let universe = provider
                .universe_domain()
                .await
                .map_err(|e| LookupError::Token(e.to_string()))?;
            Ok(format!("https://managedkafka.{universe}"))
        }
    }
}

/// Looks up `name`'s bootstrap address (`HOST:PORT`, port 9092 when the API gives none).
pub async fn lookup_bootstrap(
    provider: &KafkaTokenProvider,
    name: &ClusterName,
    options: &LookupOptions,
) -> Result<String, LookupError> {
    let endpoint = api_endpoint(provider, options).await?;
    let url = format!("{endpoint}/v1/{name}");
    let token = provider
        .token()
        .await
        .map_err(|e| LookupError::Token(e.to_string()))?;
    let client = reqwest::Client::builder()
        .timeout(options.timeout.unwrap_or(Duration::from_secs(30)))
        .connect_timeout(crate::credentials::CONNECT_TIMEOUT)
        .build()
        .map_err(|e| LookupError::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        })?;
    let mut request = client
        .get(&url)
        .bearer_auth(token.access_token().expose_secret());
    if let Some(project) = &options.quota_project {
        request = request.header("x-goog-user-project", project);
    }
    let unreachable = |e: reqwest::Error| LookupError::Unreachable {
        url: url.clone(),
        detail: error_chain(&e),
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    // Capped like every other answer from Google: a broken or hostile endpoint streaming an
    // endless body costs at most that much memory.
    let (_, body) =
        crate::credentials::upstream::read_body("the Managed Kafka API", &url, response)
            .await
            .map_err(|e| LookupError::Unreachable {
                url: url.clone(),
                detail: e.to_string(),
            })?;
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if status == 200 {
        return bootstrap_from(name, json.as_ref());
    }
    let message = json
        .as_ref()
        .and_then(|j| j["error"]["message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    Err(match status {
        404 => LookupError::NotFound {
            name: Box::new(name.clone()),
            url,
        },
        401 => LookupError::Unauthenticated { url, message },
        403 => match service_disabled(json.as_ref()) {
            Some((consumer, activation)) => LookupError::ServiceDisabled {
                consumer: consumer.unwrap_or_else(|| {
                    options
                        .quota_project
                        .clone()
                        .unwrap_or_else(|| name.project.clone())
                }),
                activation: activation
                    .map(|u| format!(" or at {u}"))
                    .unwrap_or_default(),
            },
            None => LookupError::PermissionDenied {
                name: Box::new(name.clone()),
                url,
                principal: token.principal().as_str().to_owned(),
                message,
            },
        },
        _ => LookupError::Status {
            name: Box::new(name.clone()),
            url,
            status,
            message,
        },
    })
}

/// `Some((consumer project, activation URL))` when a 403 body carries Google's
/// `ErrorInfo` with reason `SERVICE_DISABLED`.
fn service_disabled(json: Option<&Value>) -> Option<(Option<String>, Option<String>)> {
    let details = json?["error"]["details"].as_array()?;
    let info = details.iter().find(|d| {
        d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
            && d["reason"] == "SERVICE_DISABLED"
    })?;
    let meta = &info["metadata"];
    let consumer = meta["consumer"]
        .as_str()
        .map(|c| c.trim_start_matches("projects/").to_owned());
    let activation = meta["activationUrl"].as_str().map(str::to_owned);
    Some((consumer, activation))
}

fn bootstrap_from(name: &ClusterName, json: Option<&Value>) -> Result<String, LookupError> {
    let missing = |detail: &str| LookupError::NoBootstrapAddress {
        name: Box::new(name.clone()),
        detail: detail.to_owned(),
    };
    let json = json.ok_or_else(|| missing("the answer is not JSON"))?;
    let address = json["bootstrapAddress"]
        .as_str()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            let state = json["state"].as_str().unwrap_or("unknown");
            missing(&format!(
                "the field is missing or empty; cluster state {state}"
            ))
        })?;
    // Host only, or HOST:PORT; an IPv6 literal would come bracketed.
    let has_port = address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.ends_with(':') && port.parse::<u16>().is_ok()
    });
    if has_port {
        Ok(address.to_owned())
    } else {
        Ok(format!("{address}:{DEFAULT_KAFKA_PORT}"))
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        let name: ClusterName = "projects/my-proj/locations/us-central1/clusters/c-1"
            .parse()
            .unwrap();
        assert_eq!(
            name,
            ClusterName {
                project: "my-proj".to_owned(),
                location: "us-central1".to_owned(),
                cluster: "c-1".to_owned(),
            }
        );
        assert_eq!(
            name.to_string(),
            "projects/my-proj/locations/us-central1/clusters/c-1"
        );
    }

    #[test]
    fn bad_names_show_the_expected_form() {
        for (text, why) in [
            ("my-cluster", "it must have six parts separated by `/`"),
            (
                "projects/p/regions/r/clusters/c",
                "the parts must be projects/…/locations/…/clusters/…",
            ),
            (
                "projects//locations/r/clusters/c",
                "the project id is empty or has characters ids cannot have",
            ),
            (
                "projects/p/locations/r/clusters/c?x",
                "the cluster id is empty or has characters ids cannot have",
            ),
        ] {
            let err = text.parse::<ClusterName>().unwrap_err();
            assert_eq!(err.why, why, "{text}");
            assert!(
                err.to_string()
                    .contains("write projects/PROJECT/locations/REGION/clusters/CLUSTER"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_port_defaults_to_9092() {
        let name: ClusterName = "projects/p/locations/r/clusters/c".parse().unwrap();
        let with =
            |a: &str| bootstrap_from(&name, Some(&serde_json::json!({"bootstrapAddress": a})));
        assert_eq!(
            with("b.c.r.managedkafka.p.cloud.goog").unwrap(),
            "b.c.r.managedkafka.p.cloud.goog:9092"
        );
        assert_eq!(
            with("b.c.r.managedkafka.p.cloud.goog:9094").unwrap(),
            "b.c.r.managedkafka.p.cloud.goog:9094"
        );
        let err =
            bootstrap_from(&name, Some(&serde_json::json!({"state": "CREATING"}))).unwrap_err();
        assert!(err.to_string().contains("cluster state CREATING"), "{err}");
    }
}
