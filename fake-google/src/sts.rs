//! Security Token Service `POST /v1/token` (RFC 8693 token exchange), the first step of
//! `external_account` (workload / workforce identity federation) credentials.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::credentials::WORKLOAD_POOL_AUDIENCE;
use crate::faults::{self, Outcome};
use crate::oauth::parse_form;
use crate::respond;
use crate::state::{CLOUD_PLATFORM, Endpoint, Shared};

/// `grant_type` of a token exchange.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `requested_token_type` / `issued_token_type` for a Google access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The subject token types Google's STS documents besides AWS's
/// ([`crate::aws::AWS_SUBJECT_TOKEN_TYPE`]); any other is refused, also RFC 8693 types such
/// as `access_token` that Google does not take.
pub const SUBJECT_TOKEN_TYPES: [&str; 3] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:saml2",
];
/// Message for a `subject_token_type` outside [`SUBJECT_TOKEN_TYPES`] and AWS's.
pub const INVALID_SUBJECT_TOKEN_TYPE: &str = "Invalid value for \"subject_token_type\".";
/// Message for an unknown subject token.
pub const INVALID_SUBJECT_TOKEN: &str = "The given subject token is invalid.";

/// `POST /v1/token`.
pub(crate) async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    shared.count(Endpoint::StsToken);
    let expires_in = match faults::apply(&shared).await {
        Outcome::Respond(response) => return response,
        Outcome::Proceed { expires_in } => expires_in,
    };
    let form = parse_form(&body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let refusal = if field("grant_type") != TOKEN_EXCHANGE {
        Some((
            "unsupported_grant_type",
            format!(
                "Invalid value for \"grant_type\": {:?}.",
                field("grant_type")
            ),
        ))
    } else if field("requested_token_type") != ACCESS_TOKEN_TYPE {
        Some((
            "invalid_request",
            "Invalid value for \"requested_token_type\".".to_owned(),
        ))
    } else if !SUBJECT_TOKEN_TYPES.contains(&field("subject_token_type"))
        && field("subject_token_type") != crate::aws::AWS_SUBJECT_TOKEN_TYPE
    {
        Some(("invalid_request", INVALID_SUBJECT_TOKEN_TYPE.to_owned()))
    } else if field("audience") != WORKLOAD_POOL_AUDIENCE {
        Some((
            "invalid_target",
            "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.".to_owned(),
        ))
    } else if !field("scope").split(' ').any(|s| s == CLOUD_PLATFORM) {
        Some(("invalid_scope", "Invalid value for \"scope\".".to_owned()))
    } else {
        None
    };
    if let Some((error, description)) = refusal {
        shared.count_rejected();
        return respond::oauth_error(StatusCode::BAD_REQUEST, error, &description);
    }
    let aws_principal = if field("subject_token_type") == crate::aws::AWS_SUBJECT_TOKEN_TYPE {
        match crate::aws::verify_subject_token(field("subject_token"), WORKLOAD_POOL_AUDIENCE) {
            Ok(subject) => Some(crate::credentials::federated_principal(&subject)),
            Err(why) => {
                shared.count_rejected();
                return respond::oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    &format!("{INVALID_SUBJECT_TOKEN} ({why})"),
                );
            }
        }
    } else {
        None
    };
    let Some(subject) = aws_principal
        .map(|principal| crate::state::SubjectToken {
            principal,
            audience: WORKLOAD_POOL_AUDIENCE.to_owned(),
        })
        .or_else(|| shared.subject_token(field("subject_token")))
        .filter(|s| s.audience == WORKLOAD_POOL_AUDIENCE)
    else {
        shared.count_rejected();
        return respond::oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            INVALID_SUBJECT_TOKEN,
        );
    };
    let (access_token, expires_in) = shared.issue_token(
        &subject.principal,
        "external_account",
        "",
        field("scope"),
        expires_in,
    );
    respond::token(&json!({
        "access_token": access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": expires_in,
    }))
}
