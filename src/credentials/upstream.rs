//! HTTP calls to Google and the parsing of what comes back, shared by every credential type.
//!
//! There are no retries here: the token cache owns the one retry loop. Errors are classified
//! on the spot (transient or not), and their messages carry names, URLs without query strings,
//! statuses and Google's `error`/`error_description`, never a request body or a token.

use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde::Deserialize;

use super::{CONNECT_TIMEOUT, CredentialError, ErrorKind, GoogleToken, REQUEST_TIMEOUT};

/// Shortest token lifetime accepted from upstream; anything shorter cannot be served safely.
pub(crate) const MIN_LIFETIME: Duration = Duration::from_secs(20);
/// Longest token lifetime accepted from upstream (Google's maximum is 12 hours).
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Connect timeout for the metadata server: it is a link-local hop away, so a connect that
/// takes longer means there is none (not on Google Cloud), and ADC should say so quickly.
const METADATA_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Whole-request timeout for the metadata server, which answers in milliseconds when healthy.
const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP clients used to talk to Google: cheap to clone (connection pools are shared).
#[derive(Clone, Debug)]
pub struct HttpClients {
    pub(crate) google: reqwest::Client,
    pub(crate) metadata: reqwest::Client,
}

/// The HTTP clients could not be created: the TLS backend did not initialise (no usable root
/// certificates, for instance).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "cannot create the HTTPS client for Google: {reason}; check that the system's root \
     certificates are installed (Debian/Ubuntu: the ca-certificates package)"
)]
pub struct HttpClientError {
    reason: String,
}

impl From<HttpClientError> for CredentialError {
    fn from(err: HttpClientError) -> Self {
        CredentialError::invalid(err.to_string())
    }
}

impl HttpClients {
    /// New clients (own connection pools) with connect and total timeouts; the metadata client
    /// never uses a proxy. [`HttpClients::shared`] shares one set per process instead.
    pub fn try_new() -> Result<Self, HttpClientError> {
        let failed = |err: reqwest::Error| HttpClientError {
            reason: err.to_string(),
        };
        let google = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!(
                "gcp-kafka-auth-handler/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(failed)?;
        let metadata = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(METADATA_CONNECT_TIMEOUT)
            .timeout(METADATA_REQUEST_TIMEOUT)
            .user_agent(concat!(
                "gcp-kafka-auth-handler/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(failed)?;
        Ok(Self { google, metadata })
    }

    /// Like [`try_new`](Self::try_new), for tests and examples.
    ///
    /// # Panics
    ///
    /// When the clients cannot be created; the library itself never calls this.
    pub fn new() -> Self {
        Self::try_new().unwrap_or_else(|err| panic!("{err}"))
    }

    /// The process-wide shared clients (cheap to clone; created on first success).
    pub fn shared() -> Result<Self, HttpClientError> {
        if let Some(shared) = SHARED.get() {
            return Ok(shared.clone());
        }
        let created = Self::try_new()?;
        // Two first callers at once both create a set; one is kept, the other dropped.
        Ok(SHARED.get_or_init(|| created).clone())
    }
}

/// The clients every source uses unless it is given others. Building a client loads the
/// system's root certificates (tens of milliseconds), and the sources built from a credentials
/// file, the metadata server and the provider each asked for a default: sharing one set keeps
/// that cost to once per process and the connection pools in one place.
static SHARED: std::sync::OnceLock<HttpClients> = std::sync::OnceLock::new();

impl Default for HttpClients {
    /// The process-wide shared clients, as [`HttpClients::shared`].
    ///
    /// # Panics
    ///
    /// When the clients cannot be created; the library itself never calls this.
    fn default() -> Self {
        Self::shared().unwrap_or_else(|err| panic!("{err}"))
    }
}

/// A URL safe to show: scheme, host, port and path, never the query string.
pub(crate) fn display_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Maps a failed send (no response) to an error: always transient.
pub(crate) fn send_error(what: &str, url: &str, err: reqwest::Error) -> CredentialError {
    let reason = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let detail = std::error::Error::source(&err.without_url())
        .map(|s| format!(" ({})", root_cause(s)))
        .unwrap_or_default();
    CredentialError::transient(format!("{what} at {} {reason}{detail}", display_url(url)))
}

fn root_cause(mut err: &(dyn std::error::Error + 'static)) -> String {
    while let Some(next) = err.source() {
        err = next;
    }
    err.to_string()
}

/// Sends `request` to `url` and returns the body of a successful answer: the one round trip
/// every credential type makes. No response, a reset mid-body and a non-success status are
/// errors classified as in [`send_error`] and [`status_error`].
pub(crate) async fn exchange(
    what: &str,
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<bytes::Bytes, CredentialError> {
    let response = request.send().await.map_err(|e| send_error(what, url, e))?;
    let (status, body) = read_body(what, url, response).await?;
    if !status.is_success() {
        return Err(status_error(what, url, status, &body));
    }
    Ok(body)
}

/// Reads a whole response body; a connection reset mid-body is transient.
pub(crate) async fn read_body(
    what: &str,
    url: &str,
    response: reqwest::Response,
) -> Result<(reqwest::StatusCode, bytes::Bytes), CredentialError> {
    let status = response.status();
    let body = response.bytes().await.map_err(|e| {
        CredentialError::transient(format!(
            "{what} at {} closed the connection before sending the whole answer ({})",
            display_url(url),
            root_cause(&e.without_url())
        ))
    })?;
    Ok((status, body))
}

/// Where and how JSON failed to parse, without quoting the input (which may hold a secret).
pub(crate) fn describe_json_error(err: &serde_json::Error) -> String {
    let what = match err.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Eof => "truncated",
    };
    format!("{what} at line {} column {}", err.line(), err.column())
}

/// Google's OAuth2 error body.
#[derive(Deserialize)]
struct OAuthErrorBody {
    error: Option<serde_json::Value>,
    error_description: Option<String>,
}

/// Turns a non-success answer into an error that quotes Google's reason.
///
/// 408, 429 and 5xx are transient; anything else means Google refused the request.
pub(crate) fn status_error(
    what: &str,
    url: &str,
    status: reqwest::StatusCode,
    body: &[u8],
) -> CredentialError {
    let kind = if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        ErrorKind::Transient
    } else {
        ErrorKind::Rejected
    };
    let reason = serde_json::from_slice::<OAuthErrorBody>(body)
        .ok()
        .and_then(|b| {
            let code = match b.error? {
                serde_json::Value::String(s) => s,
                // Google APIs (IAM, STS) nest errors: {"error":{"code":..,"message":..,"status":..}}
                serde_json::Value::Object(o) => {
                    let status = o.get("status").and_then(|v| v.as_str()).unwrap_or("");
                    let message = o.get("message").and_then(|v| v.as_str()).unwrap_or("");
                    return Some(format!("{status}: {message}"));
                }
                other => other.to_string(),
            };
            Some(match b.error_description {
                Some(d) if !d.is_empty() => format!("{code}: {d}"),
                _ => code,
            })
        })
        .unwrap_or_else(|| "no OAuth2 error in the answer".to_owned());
    CredentialError::new(
        kind,
        format!(
            "{what} at {} answered HTTP {} ({reason})",
            display_url(url),
            status.as_u16()
        ),
    )
}

/// `expires_in` as Google sends it: a number, sometimes a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Seconds {
    fn as_i64(&self) -> Option<i64> {
        match self {
            Seconds::Int(i) => Some(*i),
            Seconds::Float(f) if f.is_finite() => Some(*f as i64),
            Seconds::Float(_) => None,
            Seconds::Text(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<SecretString>,
    expires_in: Option<Seconds>,
    id_token: Option<SecretString>,
}

/// Parses an OAuth2 token response (`access_token`, `expires_in`), as Google's token endpoint,
/// the metadata server and STS send it. `sent_at` is when the request left.
pub(crate) fn parse_token_response(
    what: &str,
    url: &str,
    body: &[u8],
    sent_at: SystemTime,
) -> Result<GoogleToken, CredentialError> {
    let garbage = |why: &str| {
        CredentialError::transient(format!(
            "{what} at {} answered with {why}",
            display_url(url)
        ))
    };
    let parsed: TokenResponse = serde_json::from_slice(body)
        .map_err(|_| garbage("something that is not a token response (not JSON)"))?;
    let access_token = parsed
        .access_token
        .filter(|t| !secrecy::ExposeSecret::expose_secret(t).trim().is_empty())
        .ok_or_else(|| garbage("no access_token"))?;
    let expires_in = parsed
        .expires_in
        .as_ref()
        .and_then(Seconds::as_i64)
        .ok_or_else(|| garbage("no expires_in"))?;
    let expires_at = checked_expiry(what, url, sent_at, expires_in)?;
    let principal_hint = parsed
        .id_token
        .as_ref()
        .and_then(|t| id_token_email(secrecy::ExposeSecret::expose_secret(t)));
    Ok(GoogleToken {
        access_token,
        expires_at,
        principal_hint,
    })
}

/// Refuses lifetimes that are past, too short to serve, or absurd.
pub(crate) fn checked_expiry(
    what: &str,
    url: &str,
    sent_at: SystemTime,
    expires_in: i64,
) -> Result<SystemTime, CredentialError> {
    if expires_in < MIN_LIFETIME.as_secs() as i64 || expires_in > MAX_LIFETIME.as_secs() as i64 {
        return Err(CredentialError::transient(format!(
            "{what} at {} returned a token that expires in {expires_in} s; \
             accepted lifetimes are {} s to {} s",
            display_url(url),
            MIN_LIFETIME.as_secs(),
            MAX_LIFETIME.as_secs()
        )));
    }
    Ok(sent_at + Duration::from_secs(expires_in as u64))
}

/// Parses an RFC 3339 timestamp (`2026-01-02T03:04:05Z`, with or without fractional
/// seconds, any offset), as IAM Credentials writes `expireTime` and executables write
/// `expiration_time` strings. The `time` crate does the calendar work.
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// `url` with the domain of a *default* Google host (`https://{service}.googleapis.com`)
/// replaced by `universe_domain`; any other URL (a private endpoint, a test server) is kept.
pub(crate) fn in_universe(url: &str, service: &str, universe_domain: &str) -> String {
    let default = format!("https://{service}.{}", super::DEFAULT_UNIVERSE_DOMAIN);
    match url.strip_prefix(&default) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            format!("https://{service}.{universe_domain}{rest}")
        }
        _ => url.to_owned(),
    }
}

/// The `email` claim of an OpenID Connect ID token. The signature is not checked: the token
/// came straight from Google over the connection we opened, and only the email is used.
fn id_token_email(id_token: &str) -> Option<String> {
    use base64::Engine as _;
    let claims = id_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("email")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const URL: &str = "http://127.0.0.1:1/token?access_token=secret";

    #[test]
    fn parses_numbers_and_strings_for_expires_in() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        for body in [
            br#"{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}"#.as_slice(),
            br#"{"access_token":"ya29.a","expires_in":"3599"}"#.as_slice(),
            br#"{"access_token":"ya29.a","expires_in":3599.7}"#.as_slice(),
        ] {
            let token = parse_token_response("x", URL, body, t0).unwrap();
            assert_eq!(token.access_token.expose_secret(), "ya29.a");
            assert_eq!(token.expires_at, t0 + Duration::from_secs(3599));
        }
    }

    #[test]
    fn refuses_garbage_empty_tokens_and_absurd_lifetimes_as_transient() {
        let t0 = SystemTime::now();
        for (body, expected) in [
            (
                &b"<html>oops"[..],
                "x at http://127.0.0.1:1/token answered with something that is not a token response (not JSON)",
            ),
            (
                br#"{"access_token":"","expires_in":3599}"#,
                "x at http://127.0.0.1:1/token answered with no access_token",
            ),
            (
                br#"{"access_token":"ya29.a"}"#,
                "x at http://127.0.0.1:1/token answered with no expires_in",
            ),
            (
                br#"{"access_token":"ya29.a","expires_in":-5}"#,
                "x at http://127.0.0.1:1/token returned a token that expires in -5 s; accepted lifetimes are 20 s to 86400 s",
            ),
            (
                br#"{"access_token":"ya29.a","expires_in":99999999}"#,
                "x at http://127.0.0.1:1/token returned a token that expires in 99999999 s; accepted lifetimes are 20 s to 86400 s",
            ),
        ] {
            let err = parse_token_response("x", URL, body, t0).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Transient);
            assert_eq!(err.message(), expected);
        }
    }

    #[test]
    fn status_errors_quote_google_and_classify() {
        let err = status_error(
            "OAuth2 token endpoint",
            URL,
            reqwest::StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        );
        assert_eq!(err.kind(), ErrorKind::Rejected);
        assert_eq!(
            err.message(),
            "OAuth2 token endpoint at http://127.0.0.1:1/token answered HTTP 400 (invalid_grant: Invalid JWT Signature.)"
        );
        let err = status_error("x", URL, reqwest::StatusCode::SERVICE_UNAVAILABLE, b"busy");
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert_eq!(
            err.message(),
            "x at http://127.0.0.1:1/token answered HTTP 503 (no OAuth2 error in the answer)"
        );
        let err = status_error("x", URL, reqwest::StatusCode::TOO_MANY_REQUESTS, b"");
        assert_eq!(err.kind(), ErrorKind::Transient);
        let err = status_error(
            "IAM",
            URL,
            reqwest::StatusCode::FORBIDDEN,
            br#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(
            err.message(),
            "IAM at http://127.0.0.1:1/token answered HTTP 403 (PERMISSION_DENIED: Permission denied)"
        );
    }

    #[test]
    fn rfc3339_with_and_without_fractional_seconds_and_offsets() {
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045);
        assert_eq!(parse_rfc3339("2026-01-02T03:04:05Z"), Some(whole));
        assert_eq!(
            parse_rfc3339("2026-01-02T03:04:05.250Z"),
            Some(whole + Duration::from_millis(250))
        );
        assert_eq!(
            parse_rfc3339("2026-01-02T03:04:05.123456789Z"),
            Some(whole + Duration::from_nanos(123_456_789))
        );
        assert_eq!(parse_rfc3339("2026-01-02T04:04:05+01:00"), Some(whole));
        assert_eq!(parse_rfc3339("2026-01-02 03:04:05"), None);
        assert_eq!(parse_rfc3339("1767323045"), None);
    }

    #[test]
    fn universe_domain_replaces_only_default_hosts() {
        assert_eq!(
            in_universe(
                "https://sts.googleapis.com/v1/token",
                "sts",
                "example-universe.test"
            ),
            "https://sts.example-universe.test/v1/token"
        );
        assert_eq!(
            in_universe("https://sts.googleapis.com", "sts", "u.test"),
            "https://sts.u.test"
        );
        assert_eq!(
            in_universe(
                "https://sts.googleapis.com.evil.test/v1/token",
                "sts",
                "u.test"
            ),
            "https://sts.googleapis.com.evil.test/v1/token"
        );
        assert_eq!(
            in_universe("http://127.0.0.1:9/v1/token", "sts", "u.test"),
            "http://127.0.0.1:9/v1/token"
        );
    }

    #[test]
    fn id_token_email_is_read_from_claims() {
        use base64::Engine as _;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"email":"user@example.com","sub":"1"}"#);
        let body = format!(
            r#"{{"access_token":"ya29.a","expires_in":3599,"id_token":"e30.{claims}.sig"}}"#
        );
        let token = parse_token_response("x", URL, body.as_bytes(), SystemTime::now()).unwrap();
        assert_eq!(token.principal_hint.as_deref(), Some("user@example.com"));
    }

    use proptest::prelude::*;

    proptest! {
        /// Any body: a token with a lifetime in the accepted range, or a transient error that
        /// never quotes the body (it may hold a token).
        #[test]
        fn any_token_response_body_is_a_valid_token_or_a_transient_error(
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                (".{0,40}", any::<i64>(), any::<bool>()).prop_map(
                    |(token, expires_in, as_string)| {
                        let expires_in = if as_string {
                            serde_json::json!(expires_in.to_string())
                        } else {
                            serde_json::json!(expires_in)
                        };
                        serde_json::to_vec(&serde_json::json!({"access_token": token, "expires_in": expires_in})).unwrap()
                    }
                ),
            ]
        ) {
            let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
            match parse_token_response("x", URL, &body, t0) {
                Ok(token) => {
                    prop_assert!(!token.access_token.expose_secret().trim().is_empty());
                    let life = token.expires_at.duration_since(t0).unwrap();
                    prop_assert!(life >= MIN_LIFETIME && life <= MAX_LIFETIME, "{:?}", life);
                }
                Err(err) => {
                    prop_assert!(err.is_transient());
                    let message = err.to_string();
                    prop_assert!(message.starts_with("x at http://127.0.0.1:1/token "), "{}", message);
                    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body)
                        && let Some(token) = value["access_token"].as_str().filter(|t| t.len() >= 4)
                    {
                        prop_assert!(!message.contains(token), "{}", message);
                    }
                }
            }
        }
    }
}
