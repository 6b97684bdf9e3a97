//! IAM Credentials `generateAccessToken`, the impersonation step of
//! `impersonated_service_account` and of `external_account` with
//! `service_account_impersonation_url`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::faults::{self, Outcome};
use crate::respond;
use crate::state::{CLOUD_PLATFORM, Endpoint, Shared, now_unix, numeric_id};

/// Google's message for a missing, unknown or expired bearer token.
pub const UNAUTHENTICATED: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
/// Message for a resource name whose project is not the `-` wildcard: IAM Credentials
/// requires `projects/-/serviceAccounts/...` and refuses a project id there (400).
pub const PROJECT_NOT_WILDCARD: &str = "Request contains an invalid argument.";
/// The longest lifetime the fake grants (Google's default maximum without the org policy).
pub const MAX_LIFETIME_SECS: i64 = 3600;

/// `POST /v1/projects/{project}/serviceAccounts/{email}:generateAccessToken`.
pub(crate) async fn generate_access_token(
    State(shared): State<Arc<Shared>>,
    Path((project, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.count(Endpoint::IamGenerateAccessToken);
    // The route cannot match on a suffix after a parameter, so the method is split off here.
    let Some(target) = name.strip_suffix(":generateAccessToken") else {
        return respond::api_error(StatusCode::NOT_FOUND, "Method not found.");
    };
    let target = target.to_owned();
    let expires_in = match faults::apply(&shared).await {
        Outcome::Respond(response) => return response,
        Outcome::Proceed { expires_in } => expires_in,
    };
    match generate(&shared, &project, &target, &headers, &body, expires_in) {
        Ok(response) => response,
        Err((status, message)) => {
            shared.count_rejected();
            respond::api_error(status, &message)
        }
    }
}

fn generate(
    shared: &Shared,
    project: &str,
    target: &str,
    headers: &HeaderMap,
    body: &[u8],
    expires_in: Option<i64>,
) -> Result<Response, (StatusCode, String)> {
    let caller_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| shared.token(token.trim()))
        .is_some_and(|record| record.issued.expires_at_unix > now_unix());
    if !caller_ok {
        return Err((StatusCode::UNAUTHORIZED, UNAUTHENTICATED.to_owned()));
    }
    // "The `-` wildcard character is required; replacing it with a project ID is invalid."
    // (IAM Credentials API reference, generateAccessToken `name`).
    if project != "-" {
        return Err((StatusCode::BAD_REQUEST, PROJECT_NOT_WILDCARD.to_owned()));
    }
    if !target.contains('@') {
        return Err((
            StatusCode::NOT_FOUND,
            format!("Not found; Gaia id not found for email {target}"),
        ));
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("Invalid JSON payload received. {e}"),
        )
    })?;
    let scopes: Vec<&str> = request["scope"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !scopes.contains(&CLOUD_PLATFORM) {
        return Err((StatusCode::BAD_REQUEST, "Scope required.".to_owned()));
    }
    // Google takes delegates only as resource names, never as bare emails.
    if let Some(bad) = request["delegates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| {
            d.as_str()
                .and_then(|d| d.strip_prefix("projects/-/serviceAccounts/"))
                .is_none_or(|email| !email.contains('@'))
        })
    {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "Invalid form of account ID {bad}. Should be [Gaia ID |Email |Unique ID |] of the account"
            ),
        ));
    }
    let configured = i64::try_from(shared.lifetime().as_secs()).unwrap_or(i64::MAX);
    let lifetime = match request.get("lifetime") {
        None => configured,
        Some(value) => {
            let requested = value
                .as_str()
                .and_then(|s| s.strip_suffix('s'))
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|secs| *secs >= 1.0 && *secs <= MAX_LIFETIME_SECS as f64)
                .ok_or_else(|| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!(
                            "The lifetime {value} is out of range: it must be between 1s and {MAX_LIFETIME_SECS}s."
                        ),
                    )
                })?;
            configured.min(requested as i64)
        }
    };
    let scope = scopes.join(" ");
    let (access_token, expires_in) = shared.issue_token(
        target,
        "impersonated",
        &numeric_id(target),
        &scope,
        Some(expires_in.unwrap_or(lifetime)),
    );
    let expire_time = rfc3339(now_unix().saturating_add_signed(expires_in));
    Ok(respond::json(
        StatusCode::OK,
        &json!({ "accessToken": access_token, "expireTime": expire_time }),
    ))
}

/// `2026-01-02T03:04:05Z` for a Unix time (UTC, whole seconds).
pub fn rfc3339(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX);
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
