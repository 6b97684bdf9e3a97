//! `https://oauth2.googleapis.com/tokeninfo`: who an access token belongs to. The sidecar uses
//! it to learn the email behind `authorized_user` credentials.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::oauth::parse_form;
use crate::respond;
use crate::state::{Endpoint, Shared, now_unix};

/// `GET|POST /tokeninfo?access_token=X` (or `access_token` in a form body).
///
/// Google writes every number in this response as a string; so does the fake.
pub(crate) async fn tokeninfo(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    shared.count(Endpoint::Tokeninfo);
    let access_token = parse_form(query.unwrap_or_default().as_bytes())
        .remove("access_token")
        .or_else(|| parse_form(&body).remove("access_token"));
    let now = now_unix();
    let record = access_token
        .and_then(|token| shared.token(&token))
        .filter(|record| record.issued.expires_at_unix > now);
    let Some(record) = record else {
        shared.count_rejected();
        return respond::json(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "invalid_token", "error_description": "Invalid Value" }),
        );
    };
    let exp = record.issued.expires_at_unix;
    respond::json(
        StatusCode::OK,
        &json!({
            "azp": record.client_id,
            "aud": record.client_id,
            "scope": record.issued.scope,
            "exp": exp.to_string(),
            "expires_in": (exp - now).to_string(),
            "email": record.issued.principal,
            "email_verified": "true",
            "access_type": "online",
        }),
    )
}
