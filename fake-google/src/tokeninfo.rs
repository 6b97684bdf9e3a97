//! `https://oauth2.googleapis.com/tokeninfo`: who an access token belongs to. The sidecar uses
//! it to learn the email behind `authorized_user` credentials.
//!
//! Google names the user (`email`, `email_verified`) only when the user consented to the
//! `email` scope (`email` or `https://www.googleapis.com/auth/userinfo.email`); a user token
//! with cloud-platform alone gets scopes and expiry but no email. gcloud's
//! `application-default login` asks for that scope, a hand-made consent may not.
//! Service-account tokens keep their `email` here whatever their scopes: the interop suite's
//! broker validator stands in for Managed Kafka's own principal lookup with it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::faults::{self, FaultTarget, Outcome};
use crate::oauth::parse_form;
use crate::respond;
use crate::state::{Endpoint, Shared, now_unix};

/// The scopes whose consent makes tokeninfo report a user's email.
pub const EMAIL_SCOPES: [&str; 2] = ["email", "https://www.googleapis.com/auth/userinfo.email"];

/// `GET|POST /tokeninfo?access_token=X` (or `access_token` in a form body).
///
/// Google writes every number in this response as a string; so does the fake.
pub(crate) async fn tokeninfo(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    shared.count(Endpoint::Tokeninfo);
    // `ExpiresIn` only shapes token grants; here it is a normal answer.
    if let Outcome::Respond(response) = faults::apply_to(&shared, FaultTarget::Tokeninfo).await {
        return response;
    }
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
    let mut info = json!({
        "azp": record.client_id,
        "aud": record.client_id,
        "scope": record.issued.scope,
        "exp": exp.to_string(),
        "expires_in": (exp - now).to_string(),
        "access_type": "online",
    });
    let is_user = record.issued.source == "authorized_user";
    let email_consented = record
        .issued
        .scope
        .split(' ')
        .any(|s| EMAIL_SCOPES.contains(&s));
    if !is_user || email_consented {
        info["email"] = json!(record.issued.principal);
        info["email_verified"] = json!("true");
    }
    respond::json(StatusCode::OK, &info)
}
