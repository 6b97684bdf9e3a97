//! The Managed Kafka API's `clusters.get`
//! (`GET /v1/projects/{project}/locations/{location}/clusters/{cluster}`), enough for a proxy
//! to look up a cluster's `bootstrapAddress` from its resource name.
//!
//! It knows the clusters it is told about ([`crate::FakeGoogle::add_managed_kafka_cluster`] or
//! `POST /_fake/managed-kafka/cluster {"name","bootstrap_address"}`), demands a bearer token
//! the fake issued, and answers the rest the way Google does: 404 `NOT_FOUND` with a
//! `ResourceInfo` for an unknown cluster, and on command ([`ManagedKafkaFault`], or
//! `POST /_fake/managed-kafka/fault {"fault":"none"|"permission_denied"|"service_disabled"|"status:N"}`)
//! 403 `IAM_PERMISSION_DENIED` naming `managedkafka.clusters.get`, 403 `SERVICE_DISABLED`
//! with the `ErrorInfo` Google's front end sends for a disabled API, or any status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::iam::UNAUTHENTICATED;
use crate::respond;
use crate::state::{Shared, now_unix, numeric_id};

/// The permission `clusters.get` needs.
pub const GET_PERMISSION: &str = "managedkafka.clusters.get";
/// The API's service name.
pub const SERVICE: &str = "managedkafka.googleapis.com";

/// A way the Managed Kafka API fails, until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedKafkaFault {
    /// 403 `PERMISSION_DENIED`, `ErrorInfo` reason `IAM_PERMISSION_DENIED`: the caller lacks
    /// `managedkafka.clusters.get`.
    PermissionDenied,
    /// 403 `PERMISSION_DENIED`, `ErrorInfo` reason `SERVICE_DISABLED`: the API is not enabled
    /// in the consumer project (the `x-goog-user-project` one when sent).
    ServiceDisabled,
    /// This status with a Google API error body.
    Status(u16),
}

impl std::str::FromStr for ManagedKafkaFault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "permission_denied" => Ok(Self::PermissionDenied),
            "service_disabled" => Ok(Self::ServiceDisabled),
            _ => s
                .strip_prefix("status:")
                .and_then(|n| n.parse().ok())
                .map(Self::Status)
                .ok_or_else(|| {
                    format!(
                        "unknown Managed Kafka fault {s:?}: expected none, permission_denied, service_disabled or status:N"
                    )
                }),
        }
    }
}

/// Clusters by resource name, and the current fault.
#[derive(Debug, Default)]
pub(crate) struct Clusters {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    bootstrap: HashMap<String, String>,
    fault: Option<ManagedKafkaFault>,
    gets: u64,
}

impl Clusters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add(&self, name: &str, bootstrap_address: &str) {
        self.lock()
            .bootstrap
            .insert(name.to_owned(), bootstrap_address.to_owned());
    }

    pub(crate) fn set_fault(&self, fault: Option<ManagedKafkaFault>) {
        self.lock().fault = fault;
    }

    pub(crate) fn gets(&self) -> u64 {
        self.lock().gets
    }
}

#[derive(Clone)]
struct Api {
    shared: Arc<Shared>,
    clusters: Arc<Clusters>,
}

/// The API and its control endpoints.
pub(crate) fn router<S>(shared: Arc<Shared>, clusters: Arc<Clusters>) -> Router<S> {
    Router::new()
        .route(
            "/v1/projects/{project}/locations/{location}/clusters/{cluster}",
            get(get_cluster),
        )
        .route("/_fake/managed-kafka/cluster", post(add_cluster))
        .route("/_fake/managed-kafka/fault", post(set_fault))
        .with_state(Api { shared, clusters })
}

async fn get_cluster(
    State(api): State<Api>,
    Path((project, location, cluster)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let name = format!("projects/{project}/locations/{location}/clusters/{cluster}");
    let (bootstrap, fault) = {
        let mut inner = api.clusters.lock();
        inner.gets += 1;
        (inner.bootstrap.get(&name).cloned(), inner.fault.clone())
    };
    let caller_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| api.shared.token(token.trim()))
        .is_some_and(|record| record.issued.expires_at_unix > now_unix());
    if !caller_ok {
        return respond::api_error(StatusCode::UNAUTHORIZED, UNAUTHENTICATED);
    }
    match fault {
        Some(ManagedKafkaFault::PermissionDenied) => {
            let resource = format!("//{SERVICE}/{name}");
            return error(
                StatusCode::FORBIDDEN,
                &format!(
                    "Permission '{GET_PERMISSION}' denied on resource '{resource}' (or it may not exist)."
                ),
                json!([{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": SERVICE,
                    "metadata": { "permission": GET_PERMISSION, "resource": name },
                }]),
            );
        }
        Some(ManagedKafkaFault::ServiceDisabled) => {
            // Google names the consumer by number; the quota project wins when one is sent.
            let consumer = headers
                .get("x-goog-user-project")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(&project);
            let number = numeric_id(consumer);
            let activation = format!(
                "https://console.developers.google.com/apis/api/{SERVICE}/overview?project={number}"
            );
            let message = format!(
                "Managed Service for Apache Kafka API has not been used in project {number} before or it is disabled. Enable it by visiting {activation} then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry."
            );
            return error(
                StatusCode::FORBIDDEN,
                &message,
                json!([
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "SERVICE_DISABLED",
                        "domain": "googleapis.com",
                        "metadata": {
                            "service": SERVICE,
                            "serviceTitle": "Managed Service for Apache Kafka API",
                            "consumer": format!("projects/{number}"),
                            "containerInfo": number,
                            "activationUrl": activation,
                        },
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                        "locale": "en-US",
                        "message": message,
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.Help",
                        "links": [{
                            "description": "Google developers console API activation",
                            "url": activation,
                        }],
                    },
                ]),
            );
        }
        Some(ManagedKafkaFault::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return respond::api_error(status, "The service is currently unavailable.");
        }
        None => {}
    }
    match bootstrap {
        Some(address) => respond::json(
            StatusCode::OK,
            &json!({
                "name": name,
                "createTime": "2026-01-01T00:00:00.000000000Z",
                "updateTime": "2026-01-01T00:00:00.000000000Z",
                "capacityConfig": { "vcpuCount": "3", "memoryBytes": "3221225472" },
                "rebalanceConfig": { "mode": "AUTO_REBALANCE_ON_SCALE_UP" },
                "gcpConfig": { "accessConfig": { "networkConfigs": [{
                    "subnet": format!("projects/{project}/regions/{location}/subnetworks/default")
                }] } },
                "state": "ACTIVE",
                "satisfiesPzi": false,
                "satisfiesPzs": false,
                "bootstrapAddress": address,
            }),
        ),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("Resource '{name}' was not found"),
            json!([{
                "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                "resourceName": name,
            }]),
        ),
    }
}

/// A Google API error with `details`.
fn error(status: StatusCode, message: &str, details: Value) -> Response {
    let status_name = match status.as_u16() {
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        _ => "UNKNOWN",
    };
    respond::json(
        status,
        &json!({
            "error": {
                "code": status.as_u16(),
                "message": message,
                "status": status_name,
                "details": details,
            }
        }),
    )
}

#[derive(Deserialize)]
struct AddCluster {
    name: String,
    bootstrap_address: String,
}

async fn add_cluster(State(api): State<Api>, body: Bytes) -> Response {
    match serde_json::from_slice::<AddCluster>(&body) {
        Ok(add) => {
            api.clusters.add(&add.name, &add.bootstrap_address);
            respond::json(StatusCode::OK, &json!({ "name": add.name }))
        }
        Err(e) => respond::json(
            StatusCode::BAD_REQUEST,
            &json!({ "error": format!("bad JSON body: {e}; send {{\"name\":\"projects/P/locations/L/clusters/C\",\"bootstrap_address\":\"HOST:PORT\"}}") }),
        ),
    }
}

#[derive(Deserialize)]
struct SetFault {
    fault: String,
}

async fn set_fault(State(api): State<Api>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<SetFault>(&body)
        .map_err(|e| format!("bad JSON body: {e}"))
        .and_then(|f| match f.fault.as_str() {
            "none" => Ok(None),
            other => other.parse().map(Some),
        });
    match parsed {
        Ok(fault) => {
            api.clusters.set_fault(fault);
            respond::json(StatusCode::OK, &json!({ "ok": true }))
        }
        Err(e) => respond::json(StatusCode::BAD_REQUEST, &json!({ "error": e })),
    }
}
