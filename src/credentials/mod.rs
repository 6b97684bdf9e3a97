//! Google credentials: where an access token comes from and whose it is.
//!
//! Layout: one module per credential type ([`metadata_server`], [`service_account`],
//! [`authorized_user`], [`impersonated`], [`external_account`],
//! [`external_account_authorized_user`]), [`adc`] to choose one the way Application Default
//! Credentials do,
//! `upstream` (private) for the HTTP calls and response parsing they share, and [`tokeninfo`] to learn
//! a user's email. Every upstream URL can be overridden, so tests need no DNS.

pub mod adc;
pub mod authorized_user;
mod error;
pub mod external_account;
pub mod external_account_authorized_user;
pub mod impersonated;
pub mod metadata_server;
pub mod service_account;
pub mod tokeninfo;
pub(crate) mod upstream;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

pub use error::{CredentialError, ErrorKind};
pub use upstream::{HttpClientError, HttpClients};

use crate::principal::Principal;

/// The OAuth scope Managed Kafka needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A boxed future, so [`CredentialSource`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A Google access token fresh from upstream.
#[derive(Clone)]
pub struct GoogleToken {
    /// The raw `ya29...` token.
    pub access_token: SecretString,
    /// When it expires. Sources compute it from the time *before* the request was sent, so it
    /// is never later than Google's own expiry.
    pub expires_at: SystemTime,
    /// The principal, when the response itself names it (an `id_token`).
    pub principal_hint: Option<String>,
}

impl GoogleToken {
    /// Seconds left until `expires_at`, measured now (negative when already expired).
    pub fn seconds_left(&self) -> i64 {
        match self.expires_at.duration_since(SystemTime::now()) {
            Ok(left) => left.as_secs() as i64,
            Err(past) => -(past.duration().as_secs() as i64),
        }
    }
}

impl fmt::Debug for GoogleToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleToken")
            .field("access_token", &"[censored]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A source of Google access tokens: one credential type, configured.
///
/// Implement it to inject credentials of your own into a
/// [`KafkaTokenProvider`](crate::KafkaTokenProvider). Implementations make one attempt per call;
/// retries, backoff and caching belong to the provider.
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// Fetches a new access token (one upstream round trip, no retries).
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>>;

    /// The principal the token belongs to. Called after [`fetch_token`](Self::fetch_token)
    /// succeeded, unless the principal is overridden.
    fn principal<'a>(
        &'a self,
        token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>>;

    /// A short description for logs and `doctor`: the type and where it came from.
    fn describe(&self) -> String;

    /// The universe these credentials belong to (`googleapis.com` unless the file or the
    /// metadata server says otherwise); it names the default STS and IAM Credentials hosts.
    fn universe_domain(&self) -> BoxFuture<'_, Result<String, CredentialError>> {
        Box::pin(async { Ok(DEFAULT_UNIVERSE_DOMAIN.to_owned()) })
    }
}

/// Google's public universe.
pub const DEFAULT_UNIVERSE_DOMAIN: &str = "googleapis.com";

/// How long to wait for a TCP connection to a Google endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one upstream request may take in total.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
