//! The OAuth2 token endpoint (`https://oauth2.googleapis.com/token`): the JWT-bearer grant
//! that service-account keys use and the refresh-token grant of `authorized_user` files.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::faults::{self, Outcome};
use crate::keys::{Jwt, sign_jwt};
use crate::respond;
use crate::state::{
    CLOUD_PLATFORM, Endpoint, GCLOUD_CLIENT_ID, GCLOUD_CLIENT_SECRET, Shared, SignerError,
    now_unix, numeric_id,
};

/// `grant_type` of the service-account flow (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How far `iat` may stray from the fake's clock, either way.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// The longest assertion Google accepts (`exp - iat`).
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 3600;

/// Google's message for a bad, unknown or revoked signing key.
pub const INVALID_SIGNATURE: &str = "Invalid JWT Signature.";
/// Google's message for an unknown `iss`.
pub const ACCOUNT_NOT_FOUND: &str = "Invalid grant: account not found";
/// Google's message for `iat`/`exp` out of bounds.
pub const BAD_TIMEFRAME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
/// Message for a malformed assertion.
pub const MALFORMED_JWT: &str =
    "Invalid JWT: the assertion is not three base64url parts with a JSON header and claims.";
/// Message for an assertion not signed with RS256.
pub const BAD_ALGORITHM: &str = "Invalid JWT: alg must be RS256.";
/// Message for an assertion missing the cloud-platform scope (Google answers `invalid_scope`).
pub const BAD_SCOPE: &str = "Invalid OAuth scope or ID token audience provided.";
/// Message for a `sub` claim other than `iss` (domain-wide delegation, which the fake does
/// not grant; Google answers `unauthorized_client`).
pub const UNAUTHORIZED_DELEGATION: &str = "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.";
/// Google's message for an unknown, revoked or foreign refresh token.
pub const EXPIRED_OR_REVOKED: &str = "Token has been expired or revoked.";
/// Google's message for an unknown OAuth client.
pub const CLIENT_NOT_FOUND: &str = "The OAuth client was not found.";
/// Google's message for a wrong client secret.
pub const CLIENT_UNAUTHORIZED: &str = "Unauthorized";

/// The message for an assertion whose `aud` is not `token_uri`.
pub fn wrong_audience_message(token_uri: &str) -> String {
    format!("Invalid JWT: Failed audience check. The right audience is {token_uri}")
}

/// The message for a grant type the endpoint does not support.
pub fn unsupported_grant_message(grant_type: &str) -> String {
    format!("Invalid grant_type: {grant_type}")
}

/// Decodes an `application/x-www-form-urlencoded` body (or query); the first of repeated
/// names wins.
pub(crate) fn parse_form(bytes: &[u8]) -> HashMap<String, String> {
    let mut form = HashMap::new();
    for (name, value) in form_urlencoded::parse(bytes) {
        form.entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    form
}

/// `POST /token`.
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.count(Endpoint::OauthToken);
    let expires_in = match faults::apply(&shared).await {
        Outcome::Respond(response) => return response,
        Outcome::Proceed { expires_in } => expires_in,
    };
    let form = parse_form(&body);
    let result = match form.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER) => jwt_bearer(&shared, &form, expires_in),
        Some("refresh_token") => refresh_token(&shared, &headers, &form, expires_in),
        Some(other) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            unsupported_grant_message(other),
        )),
        None => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            unsupported_grant_message(""),
        )),
    };
    match result {
        Ok(body) => respond::token(&body),
        Err(refusal) => {
            shared.count_rejected();
            respond::oauth_error(refusal.status, refusal.error, &refusal.description)
        }
    }
}

/// Why a grant was refused, as an RFC 6749 §5.2 error.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl Refusal {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Refusal {
        Refusal {
            status,
            error,
            description: description.into(),
        }
    }

    fn invalid_grant(description: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    fn invalid_request(description: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
}

/// The service-account grant: verify the assertion as Google does, then issue a token for
/// its `iss`.
fn jwt_bearer(
    shared: &Shared,
    form: &HashMap<String, String>,
    expires_in: Option<i64>,
) -> Result<Value, Refusal> {
    let assertion = form
        .get("assertion")
        .ok_or_else(|| Refusal::invalid_request("Missing required parameter: assertion"))?;
    let jwt = Jwt::parse(assertion).ok_or_else(|| Refusal::invalid_grant(MALFORMED_JWT))?;
    if jwt.header_str("alg") != Some("RS256") {
        return Err(Refusal::invalid_grant(BAD_ALGORITHM));
    }
    let email = jwt
        .claim_str("iss")
        .ok_or_else(|| Refusal::invalid_grant(ACCOUNT_NOT_FOUND))?;
    // An unknown or missing kid, a revoked key and a bad signature all look the same from
    // Google's side: the signature does not verify against any live key of the account.
    match shared.check_signer(email, jwt.header_str("kid").unwrap_or("")) {
        Err(SignerError::UnknownAccount) => return Err(Refusal::invalid_grant(ACCOUNT_NOT_FOUND)),
        Err(SignerError::BadKey) => return Err(Refusal::invalid_grant(INVALID_SIGNATURE)),
        Ok(()) => {}
    }
    if !jwt.verify_rs256(&shared.signer_public_key) {
        return Err(Refusal::invalid_grant(INVALID_SIGNATURE));
    }
    let token_uri = shared.token_uri();
    if jwt.claim_str("aud") != Some(token_uri.as_str()) {
        return Err(Refusal::invalid_grant(wrong_audience_message(&token_uri)));
    }
    let now = i64::try_from(now_unix()).unwrap_or(i64::MAX);
    let timeframe_ok = match (jwt.claim_secs("iat"), jwt.claim_secs("exp")) {
        // An assertion that has already expired is refused even when its `iat` is within
        // the skew: Google answers it with the same timeframe message.
        (Some(iat), Some(exp)) => {
            (iat - now).abs() <= MAX_CLOCK_SKEW_SECS
                && exp > iat
                && exp > now
                && exp - iat <= MAX_ASSERTION_LIFETIME_SECS
        }
        _ => false,
    };
    if !timeframe_ok {
        return Err(Refusal::invalid_grant(BAD_TIMEFRAME));
    }
    if let Some(sub) = jwt.claim_str("sub")
        && sub != email
    {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            UNAUTHORIZED_DELEGATION,
        ));
    }
    let scope = jwt.claim_str("scope").unwrap_or("");
    if !scope.split(' ').any(|s| s == CLOUD_PLATFORM) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            BAD_SCOPE,
        ));
    }
    let (access_token, expires_in) = shared.issue_token(
        email,
        "service_account",
        &numeric_id(email),
        scope,
        expires_in,
    );
    Ok(json!({
        "access_token": access_token,
        "expires_in": expires_in,
        "token_type": "Bearer",
    }))
}

/// The `authorized_user` grant. Client credentials may come in the body (what Google's
/// libraries send) or as HTTP Basic (RFC 6749 §2.3.1).
fn refresh_token(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    expires_in: Option<i64>,
) -> Result<Value, Refusal> {
    let (client_id, client_secret) = client_credentials(headers, form)
        .ok_or_else(|| Refusal::invalid_request("Could not determine client ID from request."))?;
    if client_id != GCLOUD_CLIENT_ID {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            CLIENT_NOT_FOUND,
        ));
    }
    if client_secret != GCLOUD_CLIENT_SECRET {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            CLIENT_UNAUTHORIZED,
        ));
    }
    let refresh_token = form
        .get("refresh_token")
        .ok_or_else(|| Refusal::invalid_request("Missing required parameter: refresh_token"))?;
    let user = shared
        .authorized_user(refresh_token)
        .filter(|user| !user.revoked && user.client_id == client_id)
        .ok_or_else(|| Refusal::invalid_grant(EXPIRED_OR_REVOKED))?;
    let (access_token, expires_in) = shared.issue_token(
        &user.email,
        "authorized_user",
        &user.client_id,
        &user.scope,
        expires_in,
    );
    let mut body = json!({
        "access_token": access_token,
        "expires_in": expires_in,
        "scope": user.scope,
        "token_type": "Bearer",
    });
    // Google only returns an id_token when the original consent included `openid`.
    if user.scope.split(' ').any(|s| s == "openid") {
        body["id_token"] = Value::String(id_token(shared, &user.email, &user.client_id));
    }
    Ok(body)
}

/// `(client_id, client_secret)` from the body, else from `Authorization: Basic`.
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<(String, String)> {
    if let Some(id) = form.get("client_id") {
        let secret = form.get("client_secret").cloned().unwrap_or_default();
        return Some((id.clone(), secret));
    }
    let basic = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(basic.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    // RFC 6749 §2.3.1: both halves are form-urlencoded before being joined.
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

/// An OpenID Connect id_token for `email`, signed with "Google's" key (the `other.pem`
/// fixture) so that it is a real RS256 JWT a consumer can decode.
fn id_token(shared: &Shared, email: &str, client_id: &str) -> String {
    let now = now_unix();
    let lifetime = shared.lifetime().as_secs();
    sign_jwt(
        &shared.id_token_key,
        &json!({ "alg": "RS256", "kid": ID_TOKEN_KEY_ID, "typ": "JWT" }),
        &json!({
            "iss": "https://accounts.google.com",
            "azp": client_id,
            "aud": client_id,
            "sub": numeric_id(email),
            "email": email,
            "email_verified": true,
            "iat": now,
            "exp": now.saturating_add(lifetime),
        }),
    )
}

/// `kid` of the id_tokens the fake signs.
pub const ID_TOKEN_KEY_ID: &str = "fake-google-id-token-key";
