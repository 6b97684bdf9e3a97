//! A loopback fake of the Google endpoints behind Application Default Credentials, for tests,
//! the demo and the interop suite.
//!
//! One listener serves them all:
//!
//! | path | plays |
//! |------|-------|
//! | `/computeMetadata/v1/...`, `/` | the GCE metadata server (`GCE_METADATA_HOST`) |
//! | `POST /token` | `oauth2.googleapis.com/token`: JWT-bearer and refresh-token grants |
//! | `GET\|POST /tokeninfo` | `oauth2.googleapis.com/tokeninfo` (a user's `email` only with the `email`/`userinfo.email` scope) |
//! | `POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken` | IAM Credentials |
//! | `POST /v1/token` | STS token exchange (workload identity federation), incl. AWS `aws4_request` subject tokens re-signed and checked |
//! | `POST /v1/oauthtoken` | STS refresh for workforce pool users (Basic client auth) |
//! | `GET /subject-token-service/{text\|json}?subject=S` | a local subject token service for `credential_source.url` (demands `Metadata: True`) |
//! | `PUT /latest/api/token`, `GET /latest/meta-data/...` | the AWS EC2 instance metadata service (IMDSv2) |
//! | `GET /v1/projects/{p}/locations/{l}/clusters/{c}` | the Managed Kafka API's `clusters.get` ([`managed_kafka`]) |
//! | `/v1/projects/{p}/locations/{l}/schemaRegistries/{r}[/...]` | Managed Kafka's schema registry: the registry resource and the Confluent REST API under it, Google-shaped errors ([`FakeGoogle::add_schema_registry`]) |
//! | `/_fake/...` | the control plane for out-of-process users (below) |
//!
//! It behaves like Google where it matters to a client: assertions are verified (RS256,
//! `kid`, `iss`, `aud`, `iat`/`exp`, expiry, scope), the metadata server insists on
//! `Metadata-Flavor: Google`, IAM insists on the `projects/-` wildcard, STS on a documented
//! `subject_token_type`, every issued token is remembered with its principal, expiry and
//! scopes, and any token-issuing endpoint, and tokeninfo apart, can be made to fail on command
//! ([`Fault`], [`FaultTarget`]).
//!
//! ```no_run
//! # async fn demo() {
//! let google = fake_google::FakeGoogle::start().await;
//! let key = google.service_account_key_json("robot@test-project.iam.gserviceaccount.com");
//! // write `key` to a file, point GOOGLE_APPLICATION_CREDENTIALS at it, run the client ...
//! assert_eq!(google.stats().oauth_token, 0);
//! # }
//! ```
//!
//! Control plane (`/_fake/`): `GET stats`, `GET requests`, `POST fault`
//! `{"fault":"none"|"status:503"|"hang"|"garbage"|"reset"|"invalid_grant"|"expires_in:N"|"slow:MS","count":N?,"endpoint":"token"|"tokeninfo"?}`,
//! `GET|POST config` `{"token_lifetime_secs":N?,"metadata_email":"..."?}`,
//! `GET lookup?access_token=...`, `POST service-account-key` `{"email"}`,
//! `POST authorized-user` `{"email","scopes"?,"include_token_uri"?}`,
//! `POST subject-token` `{"subject"}`, `POST external-account`
//! `{"subject_token_file","impersonate"?}`, `POST revoke`
//! `{"refresh_token"?,"service_account_email"?}`.

pub mod aws;
mod control;
mod credentials;
mod faults;
pub mod federation;
mod iam;
mod keys;
pub mod managed_kafka;
pub mod metadata;
pub mod oauth;
mod record;
mod respond;
mod schema_registry;
mod state;
pub mod sts;
mod tokeninfo;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use credentials::{
    AuthorizedUserOptions, GCLOUD_ADC_SCOPES, SUBJECT_TOKEN_TYPE, USERINFO_EMAIL,
    WORKLOAD_POOL_AUDIENCE, federated_principal,
};
pub use faults::{Fault, FaultTarget, ParseFaultError, RESET_ANNOUNCED_LENGTH, RESET_PARTIAL_BODY};
pub use iam::{UNAUTHENTICATED as IAM_UNAUTHENTICATED, rfc3339};
pub use managed_kafka::ManagedKafkaFault;
pub use state::{IssuedToken, RecordedRequest, Stats};
pub use tokeninfo::EMAIL_SCOPES;

use state::Shared;

/// Project id of every fake credential and of the metadata server.
pub const PROJECT_ID: &str = state::PROJECT_ID;
/// The metadata server's identity until [`FakeGoogle::set_metadata_email`] changes it.
pub const DEFAULT_METADATA_EMAIL: &str = state::DEFAULT_METADATA_EMAIL;
/// The scope every token request must include.
pub const CLOUD_PLATFORM_SCOPE: &str = state::CLOUD_PLATFORM;
/// `client_id` written into `authorized_user` files (gcloud's public client).
pub const AUTHORIZED_USER_CLIENT_ID: &str = state::GCLOUD_CLIENT_ID;
/// `client_secret` written into `authorized_user` files (gcloud's public client).
pub const AUTHORIZED_USER_CLIENT_SECRET: &str = state::GCLOUD_CLIENT_SECRET;

/// The RSA key every service-account key file carries (PKCS#8 PEM).
pub fn fixture_private_key_pem() -> &'static str {
    include_str!("../keys/service-account.pem")
}

/// A second RSA key that no service account is registered with: assertions signed with it
/// must be refused. The fake also signs its `id_token`s with it.
pub fn other_private_key_pem() -> &'static str {
    include_str!("../keys/other.pem")
}

/// The principal of a workforce pool user `subject`.
pub fn workforce_principal(subject: &str) -> String {
    format!(
        "principal://iam.googleapis.com/locations/global/workforcePools/fake-workforce/subject/{subject}"
    )
}

/// The numeric `client_id` / unique id the fake gives the account `email` (stable).
pub fn numeric_id(email: &str) -> String {
    state::numeric_id(email)
}

/// A running fake. Cheap to clone; the server stops on [`FakeGoogle::shutdown`] or when the
/// last clone is dropped.
#[derive(Clone)]
pub struct FakeGoogle {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    clusters: Arc<managed_kafka::Clusters>,
    registries: Arc<schema_registry::Registries>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Graceful: idle connections close, hung and slow requests are released with a 503.
        let _ = self.shutdown.send(true);
    }
}

impl FakeGoogle {
    /// Starts a fake on `127.0.0.1` with a free port.
    ///
    /// # Panics
    /// If no loopback port can be bound, which no test can recover from.
    pub async fn start() -> FakeGoogle {
        FakeGoogle::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind 127.0.0.1:0 for fake-google")
    }

    /// Starts a fake listening on `addr` (port 0 picks a free one). URLs always name a
    /// loopback address, also when `addr` is unspecified (`0.0.0.0`, `::`).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeGoogle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut local = listener.local_addr()?;
        if local.ip().is_unspecified() {
            local.set_ip(match local.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(format!("http://{local}"), shutdown_rx.clone()));
        let clusters = Arc::new(managed_kafka::Clusters::default());
        let registries = Arc::new(schema_registry::Registries::default());
        let app = router(shared.clone(), clusters.clone(), registries.clone());
        let mut signal = shutdown_rx;
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            // Err means every handle is gone: shut down as well.
            let _ = signal.wait_for(|down| *down).await;
        });
        let task = tokio::spawn(async move {
            // The only error is from accept; there is no one left to report it to.
            let _ = server.await;
        });
        Ok(FakeGoogle {
            handle: Arc::new(Handle {
                shared,
                clusters,
                registries,
                shutdown,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Stops accepting, releases hung requests (503) and waits (at most 5 s) for open
    /// connections to finish. Later calls return at once.
    pub async fn shutdown(&self) {
        let _ = self.handle.shutdown.send(true);
        let task = self
            .handle
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.shared().base_url.clone()
    }

    /// `127.0.0.1:PORT`: the value for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.base_url().trim_start_matches("http://").to_owned()
    }

    /// The OAuth2 token endpoint, `base_url + "/token"`; also the `aud` assertions must name.
    pub fn token_uri(&self) -> String {
        self.shared().token_uri()
    }

    /// `base_url + "/tokeninfo"`.
    pub fn tokeninfo_url(&self) -> String {
        format!("{}/tokeninfo", self.base_url())
    }

    /// `base_url + "/v1/token"`: the STS endpoint `external_account` files name.
    pub fn sts_url(&self) -> String {
        format!("{}/v1/token", self.base_url())
    }

    /// The IAM Credentials `generateAccessToken` URL for `target_email`.
    pub fn impersonation_url(&self, target_email: &str) -> String {
        credentials::impersonation_url(self.shared(), target_email)
    }

    /// A complete service-account key file for `email`, signed by the fixture key, and
    /// registers `email` with a fresh `private_key_id` as a valid signer. Calling it again for
    /// the same email adds another valid key id.
    pub fn service_account_key_json(&self, email: &str) -> Value {
        credentials::service_account_key(self.shared(), email)
    }

    /// An `authorized_user` file as `gcloud auth application-default login` writes it (no
    /// `token_uri`), registering its refresh token for `email` with the consent of
    /// [`AuthorizedUserOptions::default`] (no `id_token` on refresh, tokeninfo names the user).
    pub fn authorized_user_json(&self, email: &str) -> Value {
        self.authorized_user_json_with(email, AuthorizedUserOptions::default())
    }

    /// [`FakeGoogle::authorized_user_json`] with other scopes (`openid` brings an
    /// `id_token`) or with a `token_uri` pointing at the fake.
    pub fn authorized_user_json_with(&self, email: &str, options: AuthorizedUserOptions) -> Value {
        credentials::authorized_user(self.shared(), email, &options)
    }

    /// An `impersonated_service_account` file whose `service_account_impersonation_url`
    /// points at the fake's IAM Credentials endpoint for `target_email`.
    pub fn impersonated_service_account_json(
        &self,
        target_email: &str,
        source_credentials: Value,
    ) -> Value {
        credentials::impersonated_service_account(self.shared(), target_email, source_credentials)
    }

    /// Registers a subject token for the external identity `subject` (what a workload would
    /// read from its `credential_source` file) and returns it. STS exchanges it for a token
    /// whose principal is [`federated_principal`]`(subject)`.
    pub fn register_subject_token(&self, subject: &str) -> String {
        credentials::subject_token(self.shared(), subject)
    }

    /// An `external_account` file reading its subject token from `subject_token_file`,
    /// exchanging it at the fake STS and, with `impersonate`, impersonating that account.
    pub fn external_account_json(
        &self,
        subject_token_file: &str,
        impersonate: Option<&str>,
    ) -> Value {
        credentials::external_account(self.shared(), subject_token_file, impersonate)
    }

    /// The URL of a local subject token service (`credential_source.url`) that hands out a
    /// fresh subject token for `subject` as `text` or `json` (`{"access_token":...}`), only
    /// to requests with the header [`federation::SUBJECT_SERVICE_HEADER`].
    pub fn subject_service_url(&self, format: &str, subject: &str) -> String {
        let subject: String = form_urlencoded::byte_serialize(subject.as_bytes()).collect();
        format!(
            "{}/subject-token-service/{format}?subject={subject}",
            self.base_url()
        )
    }

    /// An `external_account` file with an AWS `credential_source` whose metadata URLs point
    /// at the fake IMDS (with an IMDSv2 session token URL when `imdsv2`).
    pub fn aws_external_account_json(&self, imdsv2: bool) -> Value {
        let base = self.base_url();
        let mut file = serde_json::json!({
            "type": "external_account",
            "audience": WORKLOAD_POOL_AUDIENCE,
            "subject_token_type": aws::AWS_SUBJECT_TOKEN_TYPE,
            "token_url": self.sts_url(),
            "credential_source": {
                "environment_id": "aws1",
                "region_url": format!("{base}/latest/meta-data/placement/availability-zone"),
                "url": format!("{base}/latest/meta-data/iam/security-credentials"),
                "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            },
        });
        if imdsv2 {
            file["credential_source"]["imdsv2_session_token_url"] =
                Value::String(format!("{base}/latest/api/token"));
        }
        file
    }

    /// An `external_account_authorized_user` file (a workforce pool user's login), whose
    /// refresh token yields tokens for [`workforce_principal`]`(subject)`.
    pub fn workforce_user_json(&self, subject: &str) -> Value {
        let principal = workforce_principal(subject);
        let refresh_token = self
            .shared()
            .register_authorized_user(&principal, CLOUD_PLATFORM_SCOPE);
        serde_json::json!({
            "type": "external_account_authorized_user",
            "audience": "//iam.googleapis.com/locations/global/workforcePools/fake-workforce/providers/fake-idp",
            "refresh_token": refresh_token,
            "token_url": format!("{}{}", self.base_url(), federation::OAUTHTOKEN_PATH),
            "token_info_url": format!("{}/v1/introspect", self.base_url()),
            "client_id": AUTHORIZED_USER_CLIENT_ID,
            "client_secret": AUTHORIZED_USER_CLIENT_SECRET,
            "universe_domain": "googleapis.com",
        })
    }

    /// Later refresh grants with `refresh_token` get 400 `invalid_grant`
    /// "Token has been expired or revoked.".
    pub fn revoke_refresh_token(&self, refresh_token: &str) {
        self.shared().revoke_refresh_token(refresh_token);
    }

    /// Later assertions signed for `email` (any key id) get 400 `invalid_grant`
    /// "Invalid JWT Signature.".
    pub fn revoke_service_account_key(&self, email: &str) {
        self.shared().revoke_service_account(email);
    }

    /// The metadata server's identity (default [`DEFAULT_METADATA_EMAIL`]). Any string is
    /// served, e.g. `test-project.svc.id.goog` or a `principal://` subject to play GKE.
    pub fn set_metadata_email(&self, email: &str) {
        self.shared().set_metadata_email(email);
    }

    /// Makes the metadata server hand out its cached token (with the seconds it has left)
    /// while more than half its life is left, as the real one does; off by default, when
    /// every request mints a new token.
    pub fn set_metadata_cache(&self, on: bool) {
        self.shared().set_metadata_cache(on);
    }

    /// Lifetime of every token issued from now on (default 3600 s).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared().set_lifetime(lifetime);
    }

    /// A fault every token-issuing request suffers until cleared with `None`.
    /// [`FakeGoogle::fail_next`] takes precedence while it lasts.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared().set_fault(FaultTarget::TokenIssuing, fault);
    }

    /// The next `n` token-issuing requests (metadata token, `/token`, IAM, STS) suffer `fault`,
    /// then service returns to normal (or to the standing [`FakeGoogle::set_fault`]).
    pub fn fail_next(&self, n: u32, fault: Fault) {
        self.shared().fail_next(FaultTarget::TokenIssuing, n, fault);
    }

    /// A fault every `/tokeninfo` request suffers until cleared with `None` (token-issuing
    /// endpoints are not affected). [`FakeGoogle::fail_next_tokeninfo`] takes precedence.
    pub fn set_tokeninfo_fault(&self, fault: Option<Fault>) {
        self.shared().set_fault(FaultTarget::Tokeninfo, fault);
    }

    /// The next `n` `/tokeninfo` requests suffer `fault` ([`Fault::ExpiresIn`] is ignored
    /// there), then tokeninfo answers normally again.
    pub fn fail_next_tokeninfo(&self, n: u32, fault: Fault) {
        self.shared().fail_next(FaultTarget::Tokeninfo, n, fault);
    }

    /// Request counts per endpoint.
    pub fn stats(&self) -> Stats {
        self.shared().stats()
    }

    /// Principal, expiry and source of an access token this fake issued (expired or not).
    pub fn lookup(&self, access_token: &str) -> Option<IssuedToken> {
        self.shared()
            .token(access_token)
            .map(|record| record.issued)
    }

    /// Every request received so far, in order (control-plane requests excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared().requests()
    }

    /// Makes the Managed Kafka API know cluster `name` (`projects/P/locations/L/clusters/C`)
    /// with this `bootstrapAddress` (`HOST:PORT`).
    pub fn add_managed_kafka_cluster(&self, name: &str, bootstrap_address: &str) {
        self.handle.clusters.add(name, bootstrap_address);
    }

    /// Makes every Managed Kafka API call fail this way until set to `None`.
    pub fn set_managed_kafka_fault(&self, fault: Option<ManagedKafkaFault>) {
        self.handle.clusters.set_fault(fault);
    }

    /// How many `clusters.get` calls arrived (answered or refused).
    pub fn managed_kafka_gets(&self) -> u64 {
        self.handle.clusters.gets()
    }

    /// Makes the schema registry `name` (`projects/P/locations/L/schemaRegistries/R`) exist,
    /// empty (compatibility `BACKWARD`, mode `READWRITE`). Adding it again keeps its contents.
    pub fn add_schema_registry(&self, name: &str) {
        self.handle.registries.add(name);
    }

    /// Makes every schema registry call fail this way until set to `None`.
    pub fn set_schema_registry_fault(&self, fault: Option<ManagedKafkaFault>) {
        self.handle.registries.set_fault(fault);
    }

    /// How many schema registry calls arrived (answered or refused), the registry resource's
    /// `GET` included.
    pub fn schema_registry_calls(&self) -> u64 {
        self.handle.registries.calls()
    }
}

/// All endpoints on one router.
fn router(
    shared: Arc<Shared>,
    clusters: Arc<managed_kafka::Clusters>,
    registries: Arc<schema_registry::Registries>,
) -> Router {
    Router::new()
        .route("/", get(metadata::root))
        .nest(metadata::PREFIX, metadata::router(shared.clone()))
        .route("/token", post(oauth::token))
        .route(
            "/tokeninfo",
            get(tokeninfo::tokeninfo).post(tokeninfo::tokeninfo),
        )
        .route(
            "/v1/projects/{project}/serviceAccounts/{name}",
            post(iam::generate_access_token),
        )
        .route("/v1/token", post(sts::token))
        .merge(aws::router())
        .merge(federation::router())
        .merge(control::router())
        .merge(managed_kafka::router(shared.clone(), clusters))
        .merge(schema_registry::router(shared.clone(), registries))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            record::record,
        ))
        .with_state(shared)
}
