//! Everything the fake remembers: registered credentials, issued tokens, faults, counters and
//! the request log. One mutex guards it all: the fake serves a handful of requests per test,
//! so simplicity beats concurrency here, and no lock is ever held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use tokio::sync::watch;

use crate::faults::{Fault, FaultTarget};

/// Project every fake credential belongs to.
pub(crate) const PROJECT_ID: &str = "test-project";
/// Numeric id of [`PROJECT_ID`], as the metadata server reports it.
pub(crate) const PROJECT_NUMBER: &str = "123456789012";
/// The only universe the fake knows.
pub(crate) const UNIVERSE_DOMAIN: &str = "googleapis.com";
/// The scope every token request must ask for.
pub(crate) const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Default identity of the metadata server.
pub(crate) const DEFAULT_METADATA_EMAIL: &str = "sidecar@test-project.iam.gserviceaccount.com";
/// gcloud's public OAuth client, the one `gcloud auth application-default login` writes into
/// `application_default_credentials.json`. Using the real public values keeps the fixtures
/// indistinguishable from a developer's file.
pub(crate) const GCLOUD_CLIENT_ID: &str =
    "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com";
pub(crate) const GCLOUD_CLIENT_SECRET: &str = "d-FL95Q19q7MQmFpd7hHD0Ty";
/// Token lifetime when nobody configured one; Google's default for every grant.
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Request bodies larger than this are not recorded in full (and refused by the recorder).
pub(crate) const MAX_BODY: usize = 1 << 20;

/// How many requests each endpoint has received, whatever their outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stats {
    /// `GET /computeMetadata/v1/instance/service-accounts/*/token`.
    pub metadata_token: u64,
    /// `.../service-accounts/*/email` and `.../service-accounts/*/?recursive=true`.
    pub metadata_email: u64,
    /// `POST /token`, every grant type.
    pub oauth_token: u64,
    /// `GET|POST /tokeninfo`.
    pub tokeninfo: u64,
    /// `POST /v1/projects/-/serviceAccounts/*:generateAccessToken` (IAM Credentials).
    pub iam_generate_access_token: u64,
    /// `POST /v1/token` (Security Token Service).
    pub sts_token: u64,
    /// `POST /v1/oauthtoken` (STS refresh for workforce pool users).
    #[serde(default)]
    pub sts_oauthtoken: u64,
    /// Requests refused for bad input: missing `Metadata-Flavor`, bad signature, unknown
    /// refresh token, unknown access token at tokeninfo, ... Injected faults are not counted.
    pub rejected: u64,
}

/// What the fake knows about an access token it issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedToken {
    /// The identity the token stands for: a service-account or user email, or a
    /// `principal://` subject for federated tokens.
    pub principal: String,
    /// Seconds since the epoch at which the token stops being valid.
    pub expires_at_unix: u64,
    /// Which endpoint issued it: `"metadata"`, `"service_account"`, `"authorized_user"`,
    /// `"impersonated"` or `"external_account"`.
    pub source: &'static str,
    /// The OAuth scopes the token was issued with, space-separated as tokeninfo reports them
    /// (for the metadata server: its `?scopes=`, else the instance's scopes).
    pub scope: String,
}

/// One HTTP request as the fake received it (control-plane requests under `/_fake/` excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query string, e.g. `/token`.
    pub path: String,
    /// The raw query string without `?`, empty when there was none.
    pub query: String,
    /// Header names lower-cased, in arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The body, decoded as UTF-8 (lossily; every Google endpoint takes text).
    pub body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The decoded `application/x-www-form-urlencoded` body as (name, value) pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

/// An issued token plus what tokeninfo reports about it.
#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub issued: IssuedToken,
    /// OAuth client the token was issued to (`azp`/`aud` in tokeninfo).
    pub client_id: String,
}

/// A service account that signs JWT assertions with the fixture key.
#[derive(Debug, Default)]
struct ServiceAccount {
    key_ids: HashSet<String>,
    revoked: bool,
}

/// A refresh token handed out in an `authorized_user` file.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizedUser {
    pub email: String,
    pub client_id: String,
    pub scope: String,
    pub revoked: bool,
}

/// A subject token the fake STS accepts, and who it stands for.
#[derive(Debug, Clone)]
pub(crate) struct SubjectToken {
    pub principal: String,
    pub audience: String,
}

/// Which counter of [`Stats`] a request bumps.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
    MetadataToken,
    MetadataEmail,
    OauthToken,
    Tokeninfo,
    IamGenerateAccessToken,
    StsToken,
    StsOauthtoken,
}

/// The faults planned for one group of endpoints: a standing one and a countdown that wins
/// while it lasts.
#[derive(Debug, Default)]
struct FaultPlan {
    standing: Option<Fault>,
    next: Option<(u32, Fault)>,
}

impl FaultPlan {
    /// The fault the current request must suffer, if any; the countdown is used up one
    /// request at a time.
    fn take(&mut self) -> Option<Fault> {
        if let Some((n, fault)) = self.next.take() {
            if n > 1 {
                self.next = Some((n - 1, fault.clone()));
            }
            return Some(fault);
        }
        self.standing.clone()
    }
}

#[derive(Debug)]
struct Inner {
    service_accounts: HashMap<String, ServiceAccount>,
    authorized_users: HashMap<String, AuthorizedUser>,
    subject_tokens: HashMap<String, SubjectToken>,
    metadata_email: String,
    /// Whether the metadata server hands out its cached token, as the real one does.
    metadata_cache: bool,
    /// The metadata server's current token and its expiry, when caching.
    metadata_cached: Option<(String, u64)>,
    lifetime: Duration,
    /// Faults of the token-issuing endpoints (metadata token, `/token`, IAM, STS).
    token_faults: FaultPlan,
    /// Faults of `/tokeninfo`, planned apart so that a test can fail the lookup after a
    /// successful token grant.
    tokeninfo_faults: FaultPlan,
    tokens: HashMap<String, TokenRecord>,
    stats: Stats,
    requests: Vec<RecordedRequest>,
    /// Makes every issued secret unique and readable in logs (`fake-1`, `fake-2`, ...).
    counter: u64,
}

/// State shared by every request handler and the [`crate::FakeGoogle`] handles.
pub(crate) struct Shared {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// DER `RSAPublicKey` of the fixture key, what assertions are verified against.
    pub signer_public_key: Vec<u8>,
    /// Google's own signing key for `id_token`s (the `other.pem` fixture).
    pub id_token_key: aws_lc_rs::rsa::KeyPair,
    /// Turns `true` (or closes) when the server shuts down; hung and slow requests watch it
    /// so that a graceful shutdown never waits for them.
    pub shutdown: watch::Receiver<bool>,
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn new(base_url: String, shutdown: watch::Receiver<bool>) -> Shared {
        let signer = crate::keys::load(crate::fixture_private_key_pem());
        let id_token_key = crate::keys::load(crate::other_private_key_pem());
        use aws_lc_rs::signature::KeyPair as _;
        Shared {
            base_url,
            signer_public_key: signer.public_key().as_ref().to_vec(),
            id_token_key,
            shutdown,
            inner: Mutex::new(Inner {
                service_accounts: HashMap::new(),
                authorized_users: HashMap::new(),
                subject_tokens: HashMap::new(),
                metadata_email: DEFAULT_METADATA_EMAIL.to_owned(),
                metadata_cache: false,
                metadata_cached: None,
                lifetime: DEFAULT_LIFETIME,
                token_faults: FaultPlan::default(),
                tokeninfo_faults: FaultPlan::default(),
                tokens: HashMap::new(),
                stats: Stats::default(),
                requests: Vec::new(),
                counter: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not poison the fake for the rest of the test.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn token_uri(&self) -> String {
        format!("{}/token", self.base_url)
    }

    fn next_counter(&self) -> u64 {
        let mut inner = self.lock();
        inner.counter += 1;
        inner.counter
    }

    // ---- registration -------------------------------------------------------------------

    /// Registers a new key id for `email` and returns it (40 hex digits, like Google's).
    pub(crate) fn register_service_account(&self, email: &str) -> String {
        let key_id = random_hex(20);
        let mut inner = self.lock();
        let sa = inner.service_accounts.entry(email.to_owned()).or_default();
        sa.key_ids.insert(key_id.clone());
        key_id
    }

    pub(crate) fn revoke_service_account(&self, email: &str) {
        let mut inner = self.lock();
        inner
            .service_accounts
            .entry(email.to_owned())
            .or_default()
            .revoked = true;
    }

    /// `Ok(())` when `email` is registered and `key_id` is one of its (unrevoked) keys.
    pub(crate) fn check_signer(&self, email: &str, key_id: &str) -> Result<(), SignerError> {
        let inner = self.lock();
        match inner.service_accounts.get(email) {
            None => Err(SignerError::UnknownAccount),
            Some(sa) if sa.revoked || !sa.key_ids.contains(key_id) => Err(SignerError::BadKey),
            Some(_) => Ok(()),
        }
    }

    /// Registers a refresh token for `email` and returns it.
    pub(crate) fn register_authorized_user(&self, email: &str, scope: &str) -> String {
        let n = self.next_counter();
        let refresh_token = format!("1//fake-{n}-{}", random_b64(24));
        self.lock().authorized_users.insert(
            refresh_token.clone(),
            AuthorizedUser {
                email: email.to_owned(),
                client_id: GCLOUD_CLIENT_ID.to_owned(),
                scope: scope.to_owned(),
                revoked: false,
            },
        );
        refresh_token
    }

    pub(crate) fn revoke_refresh_token(&self, refresh_token: &str) {
        if let Some(user) = self.lock().authorized_users.get_mut(refresh_token) {
            user.revoked = true;
        }
    }

    pub(crate) fn authorized_user(&self, refresh_token: &str) -> Option<AuthorizedUser> {
        self.lock().authorized_users.get(refresh_token).cloned()
    }

    /// Registers a subject token (what a workload would read from its `credential_source`)
    /// and returns it.
    pub(crate) fn register_subject_token(&self, principal: &str, audience: &str) -> String {
        let n = self.next_counter();
        let token = format!("fake-subject-{n}.{}", random_b64(24));
        self.lock().subject_tokens.insert(
            token.clone(),
            SubjectToken {
                principal: principal.to_owned(),
                audience: audience.to_owned(),
            },
        );
        token
    }

    pub(crate) fn subject_token(&self, token: &str) -> Option<SubjectToken> {
        self.lock().subject_tokens.get(token).cloned()
    }

    // ---- configuration ------------------------------------------------------------------

    pub(crate) fn metadata_email(&self) -> String {
        self.lock().metadata_email.clone()
    }

    pub(crate) fn metadata_cache(&self) -> bool {
        self.lock().metadata_cache
    }

    pub(crate) fn set_metadata_cache(&self, on: bool) {
        let mut inner = self.lock();
        inner.metadata_cache = on;
        inner.metadata_cached = None;
    }

    /// The metadata server's cached token with its seconds left, while more than half the
    /// configured lifetime is left (the real server refreshes its token well before expiry).
    pub(crate) fn cached_metadata_token(&self) -> Option<(String, i64)> {
        let inner = self.lock();
        let (token, expires_at) = inner.metadata_cached.clone()?;
        let left = expires_at as i64 - now_unix() as i64;
        (inner.metadata_cache && left > (inner.lifetime.as_secs() / 2) as i64)
            .then_some((token, left))
    }

    pub(crate) fn remember_metadata_token(&self, token: &str, expires_in: i64) {
        let mut inner = self.lock();
        if inner.metadata_cache {
            inner.metadata_cached = Some((
                token.to_owned(),
                now_unix().saturating_add_signed(expires_in),
            ));
        }
    }

    pub(crate) fn set_metadata_email(&self, email: &str) {
        self.lock().metadata_email = email.to_owned();
    }

    pub(crate) fn lifetime(&self) -> Duration {
        self.lock().lifetime
    }

    pub(crate) fn set_lifetime(&self, lifetime: Duration) {
        self.lock().lifetime = lifetime;
    }

    fn faults(inner: &mut Inner, target: FaultTarget) -> &mut FaultPlan {
        match target {
            FaultTarget::TokenIssuing => &mut inner.token_faults,
            FaultTarget::Tokeninfo => &mut inner.tokeninfo_faults,
        }
    }

    pub(crate) fn set_fault(&self, target: FaultTarget, fault: Option<Fault>) {
        Shared::faults(&mut self.lock(), target).standing = fault;
    }

    pub(crate) fn fail_next(&self, target: FaultTarget, n: u32, fault: Fault) {
        Shared::faults(&mut self.lock(), target).next = (n > 0).then_some((n, fault));
    }

    /// The fault the current request to `target` must suffer, if any. `fail_next` wins over
    /// a standing fault and is used up one request at a time.
    pub(crate) fn take_fault(&self, target: FaultTarget) -> Option<Fault> {
        Shared::faults(&mut self.lock(), target).take()
    }

    // ---- tokens -------------------------------------------------------------------------

    /// Mints an access token for `principal`, remembers it and returns it with its
    /// `expires_in`. `expires_in` overrides the configured lifetime (the `ExpiresIn` fault, a
    /// shorter requested lifetime); it may be zero or negative, which yields a token that is
    /// already expired.
    pub(crate) fn issue_token(
        &self,
        principal: &str,
        source: &'static str,
        client_id: &str,
        scope: &str,
        expires_in: Option<i64>,
    ) -> (String, i64) {
        let n = self.next_counter();
        // `ya29.` and further dots like Google's, so that consumers that split on dots or
        // forget to base64url-encode the token are caught.
        let token = format!("ya29.c.fake-{n}.{}", random_b64(32));
        let expires_in = expires_in
            .unwrap_or_else(|| i64::try_from(self.lifetime().as_secs()).unwrap_or(i64::MAX));
        let expires_at_unix = now_unix().saturating_add_signed(expires_in);
        self.lock().tokens.insert(
            token.clone(),
            TokenRecord {
                issued: IssuedToken {
                    principal: principal.to_owned(),
                    expires_at_unix,
                    source,
                    scope: scope.to_owned(),
                },
                client_id: client_id.to_owned(),
            },
        );
        (token, expires_in)
    }

    /// The record of a token this fake issued, expired or not.
    pub(crate) fn token(&self, access_token: &str) -> Option<TokenRecord> {
        self.lock().tokens.get(access_token).cloned()
    }

    // ---- observation --------------------------------------------------------------------

    pub(crate) fn count(&self, endpoint: Endpoint) {
        let mut inner = self.lock();
        let stats = &mut inner.stats;
        match endpoint {
            Endpoint::MetadataToken => stats.metadata_token += 1,
            Endpoint::MetadataEmail => stats.metadata_email += 1,
            Endpoint::OauthToken => stats.oauth_token += 1,
            Endpoint::Tokeninfo => stats.tokeninfo += 1,
            Endpoint::IamGenerateAccessToken => stats.iam_generate_access_token += 1,
            Endpoint::StsToken => stats.sts_token += 1,
            Endpoint::StsOauthtoken => stats.sts_oauthtoken += 1,
        }
    }

    pub(crate) fn count_rejected(&self) {
        self.lock().stats.rejected += 1;
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        self.lock().requests.push(request);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }
}

/// Why a JWT assertion's signer is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignerError {
    /// `iss` names no registered service account.
    UnknownAccount,
    /// Unknown `kid`, or the account's keys were revoked.
    BadKey,
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `n` random bytes, base64url without padding.
pub(crate) fn random_b64(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// `n` random bytes as lower-case hex (2n digits).
pub(crate) fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random source");
    bytes
}

/// A stable 21-digit numeric id for an email, like the `client_id` / unique id Google gives
/// every service account. Stable so that the key file and tokeninfo agree.
pub(crate) fn numeric_id(email: &str) -> String {
    // FNV-1a: deterministic across runs and platforms, unlike `DefaultHasher`.
    let hash = email.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("1{hash:020}")
}
