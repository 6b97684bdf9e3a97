//! The GCE metadata server (`http://metadata.google.internal`, `GCE_METADATA_HOST`).
//!
//! Like the real one it insists on `Metadata-Flavor: Google` (the guard against SSRF through
//! a proxy or a browser), refuses anything carrying `X-Forwarded-For`, and stamps
//! `Metadata-Flavor: Google` on every answer, which is how client libraries tell a real
//! metadata server from a captive portal.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use crate::faults::{self, Outcome};
use crate::respond;
use crate::state::{
    CLOUD_PLATFORM, Endpoint, PROJECT_ID, PROJECT_NUMBER, Shared, UNIVERSE_DOMAIN, numeric_id,
};

/// Header name and the only value the metadata server accepts and sends.
pub const FLAVOR_HEADER: &str = "metadata-flavor";
/// See [`FLAVOR_HEADER`].
pub const FLAVOR_VALUE: &str = "Google";
/// Path prefix every metadata request lives under.
pub const PREFIX: &str = "/computeMetadata/v1";

/// The scopes the fake instance's service account was granted: what a token without
/// `?scopes=` carries, and what `.../service-accounts/default/?recursive=true` lists.
pub const INSTANCE_SCOPES: [&str; 1] = [CLOUD_PLATFORM];

/// Content type of the metadata server's plain values (email, project id, ...).
const TEXT: &str = "application/text";

/// Routes under [`PREFIX`], guarded by the flavor check.
pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/instance/service-accounts/{account}/token",
            get(service_account_token),
        )
        .route(
            "/instance/service-accounts/{account}/email",
            get(service_account_email),
        )
        .route(
            "/instance/service-accounts/{account}/",
            get(service_account_info),
        )
        .route("/instance/service-accounts/", get(service_accounts))
        .route("/project/project-id", get(|| plain(PROJECT_ID)))
        .route("/project/numeric-project-id", get(|| plain(PROJECT_NUMBER)))
        .route("/universe/universe-domain", get(|| plain(UNIVERSE_DOMAIN)))
        // A fallback inside the nested router so that unknown paths still get the flavor
        // check and the response header.
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared, guard))
}

/// `GET /`: what detection pings (google-auth's `is_on_gce`) see.
pub(crate) async fn root() -> Response {
    let mut response = respond::text(StatusCode::OK, TEXT, "computeMetadata/\n".to_owned());
    stamp(&mut response);
    response
}

/// The exact 403 body for a request to `path` without `Metadata-Flavor: Google`, in the
/// shape of Google's error pages.
pub fn missing_flavor_body(path: &str) -> String {
    forbidden_body(path, "Missing Metadata-Flavor:Google header.")
}

/// The exact 403 body for a request to `path` carrying `X-Forwarded-For`.
pub fn forwarded_body(path: &str) -> String {
    forbidden_body(
        path,
        "Request contains an X-Forwarded-For header, which the metadata server refuses.",
    )
}

fn forbidden_body(path: &str, reason: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 403 (Forbidden)!!1</title>\n  \
         <p><b>403.</b> <ins>That\u{2019}s an error.</ins>\n  <p>Your client does not have permission to get URL \
         <code>{path}</code> from this server. {reason} <ins>That\u{2019}s all we know.</ins>\n"
    )
}

/// Counts the request, enforces the header rules and stamps the response header.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    // Counted here rather than in the handlers so that refused requests count too.
    if path.contains("/service-accounts/") {
        if path.ends_with("/token") {
            shared.count(Endpoint::MetadataToken);
        } else if path.ends_with("/email") || path.ends_with('/') {
            shared.count(Endpoint::MetadataEmail);
        }
    }
    // Nesting strips the prefix; error pages name the full path like Google's do.
    let full_path = format!("{PREFIX}{path}");
    let headers = request.headers();
    let mut response = if headers.contains_key("x-forwarded-for") {
        shared.count_rejected();
        forbidden(forwarded_body(&full_path))
    } else if headers.get(FLAVOR_HEADER).map(HeaderValue::as_bytes) != Some(FLAVOR_VALUE.as_bytes())
    {
        shared.count_rejected();
        forbidden(missing_flavor_body(&full_path))
    } else {
        next.run(request).await
    };
    stamp(&mut response);
    response
}

fn forbidden(body: String) -> Response {
    respond::text(StatusCode::FORBIDDEN, "text/html; charset=UTF-8", body)
}

fn stamp(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(FLAVOR_HEADER, HeaderValue::from_static(FLAVOR_VALUE));
    headers.insert("server", HeaderValue::from_static("Metadata Server for VM"));
}

async fn plain(value: &'static str) -> Response {
    respond::text(StatusCode::OK, TEXT, value.to_owned())
}

async fn not_found() -> Response {
    respond::text(
        StatusCode::NOT_FOUND,
        "text/html; charset=UTF-8",
        "Not Found\n".to_owned(),
    )
}

/// The metadata server knows its one account as `default` and by its email.
fn resolve_account(shared: &Shared, account: &str) -> Option<String> {
    let email = shared.metadata_email();
    (account == "default" || account == email).then_some(email)
}

/// `GET .../service-accounts/{default|email}/token[?scopes=a,b]`.
async fn service_account_token(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(email) = resolve_account(&shared, &account) else {
        return not_found().await;
    };
    let expires_in = match faults::apply(&shared).await {
        Outcome::Respond(response) => return response,
        Outcome::Proceed { expires_in } => expires_in,
    };
    // `?scopes=a,b` asks for a token with those scopes; without it the token carries the
    // scopes the instance was created with (recorded, so tests can check what was asked).
    let scope = match query.get("scopes") {
        Some(scopes) if !scopes.is_empty() => scopes.split(',').collect::<Vec<_>>().join(" "),
        _ => INSTANCE_SCOPES.join(" "),
    };
    // The real server caches one token per set of scopes.
    let cached = shared
        .cached_metadata_token()
        .filter(|(token, _)| shared.token(token).is_some_and(|r| r.issued.scope == scope));
    let (access_token, expires_in) = match cached {
        Some(cached) if expires_in.is_none() => cached,
        _ => {
            let issued =
                shared.issue_token(&email, "metadata", &numeric_id(&email), &scope, expires_in);
            shared.remember_metadata_token(&issued.0, issued.1);
            issued
        }
    };
    respond::json(
        StatusCode::OK,
        &json!({
            "access_token": access_token,
            "expires_in": expires_in,
            "token_type": "Bearer",
        }),
    )
}

/// `GET .../service-accounts/{default|email}/email`.
async fn service_account_email(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
) -> Response {
    match resolve_account(&shared, &account) {
        Some(email) => respond::text(StatusCode::OK, TEXT, email),
        None => not_found().await,
    }
}

/// `GET .../service-accounts/?recursive=true`: every account, keyed by `default` and by
/// email, which google-auth-library-java reads to learn the email.
async fn service_accounts(State(shared): State<Arc<Shared>>) -> Response {
    let email = shared.metadata_email();
    let account = json!({ "aliases": ["default"], "email": email, "scopes": INSTANCE_SCOPES });
    respond::json(
        StatusCode::OK,
        &json!({ "default": account, email: account }),
    )
}

/// `GET .../service-accounts/{default|email}/?recursive=true`, which google-auth (Python)
/// uses to learn the email and scopes in one request.
async fn service_account_info(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
) -> Response {
    match resolve_account(&shared, &account) {
        Some(email) => respond::json(
            StatusCode::OK,
            &json!({ "aliases": ["default"], "email": email, "scopes": INSTANCE_SCOPES }),
        ),
        None => not_found().await,
    }
}
