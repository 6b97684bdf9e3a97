//! The control plane under `/_fake/`, so that out-of-process users (the interop suite, the
//! demo) can steer the fake the way in-process tests do through [`crate::FakeGoogle`].
//! Bodies are parsed as JSON whatever their `Content-Type`, so `curl -d` works as is.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::credentials::{self, AuthorizedUserOptions};
use crate::faults::{Fault, FaultTarget};
use crate::respond;
use crate::state::Shared;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_fake/stats", get(stats))
        .route("/_fake/requests", get(requests))
        .route("/_fake/fault", post(fault))
        .route("/_fake/config", get(config).post(set_config))
        .route("/_fake/lookup", get(lookup))
        .route("/_fake/service-account-key", post(service_account_key))
        .route("/_fake/authorized-user", post(authorized_user))
        .route("/_fake/subject-token", post(subject_token))
        .route("/_fake/external-account", post(external_account))
        .route("/_fake/revoke", post(revoke))
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    respond::json(
        StatusCode::BAD_REQUEST,
        &json!({ "error": message.to_string() }),
    )
}

/// Parses a JSON body into `T`, or says why not.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    // An empty body means "all defaults" for the endpoints whose fields are all optional.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("bad JSON body: {e}"))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    respond::json(StatusCode::OK, &json!(shared.stats()))
}

async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    respond::json(StatusCode::OK, &json!(shared.requests()))
}

#[derive(Deserialize)]
struct FaultRequest {
    fault: String,
    count: Option<u32>,
    /// `token` (the default: every token-issuing endpoint) or `tokeninfo`.
    endpoint: Option<String>,
}

/// `{"fault":"none"|"status:503"|...,"count":N?,"endpoint":"token"|"tokeninfo"?}`: with a
/// count the next N requests to the endpoints fail; without, the fault stands until `none`.
/// `none` clears both for those endpoints.
async fn fault(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: FaultRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let target = match request.endpoint.as_deref() {
        None | Some("token") => FaultTarget::TokenIssuing,
        Some("tokeninfo") => FaultTarget::Tokeninfo,
        Some(other) => {
            return bad_request(format!(
                "unknown fault endpoint {other:?}: expected \"token\" or \"tokeninfo\""
            ));
        }
    };
    if request.fault == "none" {
        shared.set_fault(target, None);
        shared.fail_next(target, 0, Fault::Hang);
        return respond::json(StatusCode::OK, &json!({ "fault": "none" }));
    }
    let fault: Fault = match request.fault.parse() {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    match request.count {
        Some(n) => shared.fail_next(target, n, fault.clone()),
        None => shared.set_fault(target, Some(fault.clone())),
    }
    respond::json(
        StatusCode::OK,
        &json!({ "fault": fault.to_string(), "count": request.count }),
    )
}

#[derive(Deserialize)]
struct ConfigRequest {
    token_lifetime_secs: Option<u64>,
    metadata_email: Option<String>,
    metadata_cache: Option<bool>,
}

async fn config(State(shared): State<Arc<Shared>>) -> Response {
    respond::json(
        StatusCode::OK,
        &json!({
            "token_lifetime_secs": shared.lifetime().as_secs(),
            "metadata_email": shared.metadata_email(),
            "metadata_cache": shared.metadata_cache(),
        }),
    )
}

async fn set_config(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: ConfigRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    if let Some(secs) = request.token_lifetime_secs {
        shared.set_lifetime(Duration::from_secs(secs));
    }
    if let Some(email) = request.metadata_email {
        shared.set_metadata_email(&email);
    }
    if let Some(on) = request.metadata_cache {
        shared.set_metadata_cache(on);
    }
    config(State(shared)).await
}

#[derive(Deserialize)]
struct LookupQuery {
    access_token: String,
}

async fn lookup(State(shared): State<Arc<Shared>>, Query(query): Query<LookupQuery>) -> Response {
    match shared.token(&query.access_token) {
        Some(record) => respond::json(StatusCode::OK, &json!(record.issued)),
        None => respond::json(
            StatusCode::NOT_FOUND,
            &json!({ "error": "no such token issued by this fake" }),
        ),
    }
}

#[derive(Deserialize)]
struct EmailRequest {
    email: String,
}

async fn service_account_key(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<EmailRequest>(&body) {
        Ok(r) => respond::json(
            StatusCode::OK,
            &credentials::service_account_key(&shared, &r.email),
        ),
        Err(e) => bad_request(e),
    }
}

#[derive(Deserialize)]
struct AuthorizedUserRequest {
    email: String,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    include_token_uri: bool,
}

async fn authorized_user(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: AuthorizedUserRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let mut options = AuthorizedUserOptions {
        include_token_uri: request.include_token_uri,
        ..AuthorizedUserOptions::default()
    };
    if let Some(scopes) = request.scopes {
        options.scopes = scopes;
    }
    respond::json(
        StatusCode::OK,
        &credentials::authorized_user(&shared, &request.email, &options),
    )
}

#[derive(Deserialize)]
struct SubjectRequest {
    subject: String,
}

/// `{"subject":"..."}` → `{"subject_token":"...","principal":"principal://..."}`.
async fn subject_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<SubjectRequest>(&body) {
        Ok(r) => respond::json(
            StatusCode::OK,
            &json!({
                "subject_token": credentials::subject_token(&shared, &r.subject),
                "principal": credentials::federated_principal(&r.subject),
            }),
        ),
        Err(e) => bad_request(e),
    }
}

#[derive(Deserialize)]
struct ExternalAccountRequest {
    subject_token_file: String,
    impersonate: Option<String>,
}

async fn external_account(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<ExternalAccountRequest>(&body) {
        Ok(r) => respond::json(
            StatusCode::OK,
            &credentials::external_account(
                &shared,
                &r.subject_token_file,
                r.impersonate.as_deref(),
            ),
        ),
        Err(e) => bad_request(e),
    }
}

#[derive(Deserialize)]
struct RevokeRequest {
    refresh_token: Option<String>,
    service_account_email: Option<String>,
}

/// `{"refresh_token":"..."}` and/or `{"service_account_email":"..."}`.
async fn revoke(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: RevokeRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    if let Some(token) = &request.refresh_token {
        shared.revoke_refresh_token(token);
    }
    if let Some(email) = &request.service_account_email {
        shared.revoke_service_account(email);
    }
    respond::json(StatusCode::OK, &Value::Object(Default::default()))
}
