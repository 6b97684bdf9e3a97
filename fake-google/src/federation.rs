//! What workload and workforce identity federation need besides STS's token exchange: a
//! local token service for `credential_source.url` that insists on its headers, and STS's
//! refresh endpoint for workforce users (`external_account_authorized_user`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::json;

use crate::credentials::subject_token;
use crate::faults::{self, Outcome};
use crate::oauth::parse_form;
use crate::respond;
use crate::state::{Endpoint, GCLOUD_CLIENT_ID, GCLOUD_CLIENT_SECRET, Shared};

/// The header (and value) the subject token service demands, like Azure's `Metadata: True`.
pub const SUBJECT_SERVICE_HEADER: (&str, &str) = ("metadata", "True");
/// Path of the workforce refresh endpoint (`https://sts.googleapis.com/v1/oauthtoken`).
pub const OAUTHTOKEN_PATH: &str = "/v1/oauthtoken";

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/subject-token-service/{format}", get(subject_service))
        .route(OAUTHTOKEN_PATH, post(workforce_refresh))
}

#[derive(serde::Deserialize)]
struct SubjectQuery {
    subject: String,
}

/// `GET /subject-token-service/{text|json}?subject=S` with `Metadata: True`: a fresh subject
/// token for S, as text or as `{"access_token": ...}`.
async fn subject_service(
    State(shared): State<Arc<Shared>>,
    Path(format): Path<String>,
    Query(query): Query<SubjectQuery>,
    headers: HeaderMap,
) -> Response {
    let (name, value) = SUBJECT_SERVICE_HEADER;
    if headers
        .get(name)
        .is_none_or(|v| v.as_bytes() != value.as_bytes())
    {
        shared.count_rejected();
        return respond::api_error(
            StatusCode::BAD_REQUEST,
            "Required metadata header not present",
        );
    }
    let token = subject_token(&shared, &query.subject);
    match format.as_str() {
        "text" => respond::text(StatusCode::OK, "text/plain", token),
        "json" => respond::json(StatusCode::OK, &json!({ "access_token": token })),
        _ => respond::api_error(StatusCode::NOT_FOUND, "format is text or json"),
    }
}

/// `POST /v1/oauthtoken`: refresh grant for workforce users, with Basic client auth.
async fn workforce_refresh(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.count(Endpoint::StsOauthtoken);
    // A token-issuing endpoint like the others: it fails on command too.
    let expires_in = match faults::apply(&shared).await {
        Outcome::Respond(response) => return response,
        Outcome::Proceed { expires_in } => expires_in,
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{GCLOUD_CLIENT_ID}:{GCLOUD_CLIENT_SECRET}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .is_none_or(|v| v.as_bytes() != expected.as_bytes())
    {
        shared.count_rejected();
        return respond::oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client authentication failed.",
        );
    }
    let form = parse_form(&body);
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        shared.count_rejected();
        return respond::oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only refresh_token is supported.",
        );
    }
    let Some(user) = form
        .get("refresh_token")
        .and_then(|t| shared.authorized_user(t))
        .filter(|u| !u.revoked)
    else {
        shared.count_rejected();
        return respond::oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The refresh token is invalid.",
        );
    };
    let (access_token, expires_in) =
        shared.issue_token(&user.email, "external_account", "", &user.scope, expires_in);
    respond::token(&json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    }))
}
