//! Credential files (the JSON a user would point `GOOGLE_APPLICATION_CREDENTIALS` at), each
//! registered with the fake so that the tokens it yields are honoured.

use serde_json::{Value, json};

use crate::state::{
    CLOUD_PLATFORM, PROJECT_ID, PROJECT_NUMBER, Shared, UNIVERSE_DOMAIN, numeric_id,
};

/// Options for [`crate::FakeGoogle::authorized_user_json_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedUserOptions {
    /// Scopes the user consented to. An `id_token` comes back from refresh grants only when
    /// they include `openid`; tokeninfo reports the user's email only when they include
    /// `email` or `userinfo.email`. Default: cloud-platform and userinfo.email (tokeninfo
    /// names the user, no `id_token`); [`GCLOUD_ADC_SCOPES`] is exactly what gcloud asks for.
    pub scopes: Vec<String>,
    /// Write `"token_uri": <the fake's /token>` into the file. gcloud does not write one (so a
    /// consumer falls back to `https://oauth2.googleapis.com/token`), hence off by default.
    pub include_token_uri: bool,
}

impl Default for AuthorizedUserOptions {
    fn default() -> Self {
        AuthorizedUserOptions {
            scopes: vec![CLOUD_PLATFORM.to_owned(), USERINFO_EMAIL.to_owned()],
            include_token_uri: false,
        }
    }
}

/// The scope that lets tokeninfo name a user.
pub const USERINFO_EMAIL: &str = "https://www.googleapis.com/auth/userinfo.email";

/// The scopes `gcloud auth application-default login` asks for when given no `--scopes`.
pub const GCLOUD_ADC_SCOPES: [&str; 4] = [
    "openid",
    USERINFO_EMAIL,
    CLOUD_PLATFORM,
    "https://www.googleapis.com/auth/sqlservice.login",
];

/// The workload identity pool provider the fake STS plays.
pub const WORKLOAD_POOL_AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/fake-pool/providers/fake-provider";
/// `subject_token_type` of the subject tokens the fake hands out.
pub const SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The federated principal STS issues tokens for, given the external subject.
pub fn federated_principal(subject: &str) -> String {
    format!(
        "principal://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/fake-pool/subject/{subject}"
    )
}

/// Registers a subject token for the external identity `subject` and returns it.
pub(crate) fn subject_token(shared: &Shared, subject: &str) -> String {
    shared.register_subject_token(&federated_principal(subject), WORKLOAD_POOL_AUDIENCE)
}

pub(crate) fn service_account_key(shared: &Shared, email: &str) -> Value {
    let private_key_id = shared.register_service_account(email);
    let encoded_email: String = form_urlencoded::byte_serialize(email.as_bytes()).collect();
    json!({
        "type": "service_account",
        "project_id": PROJECT_ID,
        "private_key_id": private_key_id,
        "private_key": crate::fixture_private_key_pem(),
        "client_email": email,
        "client_id": numeric_id(email),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": shared.token_uri(),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{encoded_email}"),
        "universe_domain": UNIVERSE_DOMAIN,
    })
}

pub(crate) fn authorized_user(
    shared: &Shared,
    email: &str,
    options: &AuthorizedUserOptions,
) -> Value {
    let refresh_token = shared.register_authorized_user(email, &options.scopes.join(" "));
    let mut file = json!({
        "type": "authorized_user",
        "client_id": crate::state::GCLOUD_CLIENT_ID,
        "client_secret": crate::state::GCLOUD_CLIENT_SECRET,
        "refresh_token": refresh_token,
        "quota_project_id": PROJECT_ID,
    });
    if options.include_token_uri {
        file["token_uri"] = Value::String(shared.token_uri());
    }
    file
}

pub(crate) fn impersonation_url(shared: &Shared, target_email: &str) -> String {
    format!(
        "{}/v1/projects/-/serviceAccounts/{target_email}:generateAccessToken",
        shared.base_url
    )
}

pub(crate) fn impersonated_service_account(
    shared: &Shared,
    target_email: &str,
    source_credentials: Value,
) -> Value {
    json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": impersonation_url(shared, target_email),
        "source_credentials": source_credentials,
        "delegates": [],
    })
}

pub(crate) fn external_account(
    shared: &Shared,
    subject_token_file: &str,
    impersonate: Option<&str>,
) -> Value {
    let mut file = json!({
        "type": "external_account",
        "audience": WORKLOAD_POOL_AUDIENCE,
        "subject_token_type": SUBJECT_TOKEN_TYPE,
        "token_url": format!("{}/v1/token", shared.base_url),
        "credential_source": { "file": subject_token_file },
        "universe_domain": UNIVERSE_DOMAIN,
    });
    if let Some(target) = impersonate {
        file["service_account_impersonation_url"] =
            Value::String(impersonation_url(shared, target));
    }
    file
}
