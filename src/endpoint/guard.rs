//! Who may ask for a token: the checks that run before any credential work.
//!
//! - **Host** (DNS rebinding): a web page can make a browser resolve its own name to
//!   `127.0.0.1` and then read this endpoint as "same origin". The browser still sends the
//!   page's name in `Host`, so only loopback names and addresses and the names the operator
//!   allowed are answered.
//! - **Browsers**: no Kafka client sends `Origin` or `Sec-Fetch-*`; browsers do. Requests that
//!   carry one are refused, whatever their `Host`.
//! - **Client authentication** (optional): with a client id and secret configured, the
//!   request must carry them as HTTP Basic credentials (standard or URL-safe Base64, as
//!   kafka-clients 3.1–3.3.1 sent) or as `client_id`/`client_secret` form fields. Secrets are
//!   compared in constant time, over SHA-256 digests so that their length does not leak
//!   either.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::{HeaderMap, header};
use subtle::ConstantTimeEq as _;

use super::EndpointError;

/// Who the endpoint answers: the checks applied before any token is handed out.
///
/// The default answers loopback `Host`s only, refuses browsers and asks for no client
/// credentials: safe for a sidecar on `127.0.0.1`.
///
/// ```
/// use gcp_kafka_auth_handler::endpoint::{ClientCredentials, EndpointConfig};
/// let config = EndpointConfig::default()
///     .with_allowed_host("kafka-auth.internal")
///     .with_client_credentials(ClientCredentials::new("my-app", "s3cret"));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Default)]
pub struct EndpointConfig {
    allowed_hosts: Vec<String>,
    any_host: bool,
    client: Option<Arc<ClientCredentials>>,
    authenticate_operations: bool,
    /// How a [`ConfigRefusal`] reads in an answer: its `Display` (this config's method
    /// names) unless the program serving the endpoint names its own settings.
    wording: Option<fn(&ConfigRefusal) -> String>,
}

/// A refusal whose fix is a setting of the [`EndpointConfig`]. Its `Display` names the
/// `EndpointConfig` method; a program that sets the config from settings of its own (the
/// `gcp-kafka-auth-handler` binary from its flags) words it in those terms with
/// [`EndpointConfig::with_refusal_wording`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigRefusal {
    /// `Host` is neither a loopback name or address nor one of the allowed hosts.
    #[error(
        "Host `{host}` is not a loopback name or address; to answer it, add it with EndpointConfig::with_allowed_host"
    )]
    HostNotAllowed {
        /// The `Host` value as answered: its first 100 characters, escaped.
        host: String,
    },
    /// The client id or secret presented is not the one configured.
    #[error(
        "the client id or secret does not match the endpoint's EndpointConfig::with_client_credentials"
    )]
    ClientCredentialsMismatch,
}

impl EndpointConfig {
    /// Also answers requests whose `Host` is `host` (a name or IP address, with or without a
    /// port; compared without the port and case-insensitively). A value that is not a host
    /// (see [`host_without_port`]) is ignored.
    pub fn with_allowed_host(mut self, host: impl AsRef<str>) -> Self {
        if let Some(host) = host_without_port(host.as_ref().trim()) {
            self.allowed_hosts.push(host);
        }
        self
    }

    /// Answers any `Host`. Only for a router mounted behind something that checks `Host`
    /// itself: it turns the DNS-rebinding defence off.
    pub fn allow_any_host(mut self) -> Self {
        self.any_host = true;
        self
    }

    /// Requires these client credentials on every token request.
    pub fn with_client_credentials(mut self, credentials: ClientCredentials) -> Self {
        self.client = Some(Arc::new(credentials));
        self
    }

    /// Also requires the client credentials (HTTP Basic) on `/readyz` and `/metrics`, which
    /// disclose the principal, the token's expiry and upstream failure reasons. `/healthz`
    /// (which discloses nothing) stays open. Has no effect without
    /// [`with_client_credentials`](Self::with_client_credentials).
    pub fn with_authenticated_operations(mut self) -> Self {
        self.authenticate_operations = true;
        self
    }

    /// How refusals whose fix is a setting of this config read in answers (default: their
    /// `Display`, naming this config's methods): for a program whose users set the endpoint
    /// up through settings of its own, such as command-line flags.
    pub fn with_refusal_wording(mut self, wording: fn(&ConfigRefusal) -> String) -> Self {
        self.wording = Some(wording);
        self
    }

    /// `refusal` in this config's wording.
    pub(crate) fn word(&self, refusal: &ConfigRefusal) -> String {
        match self.wording {
            Some(wording) => wording(refusal),
            None => refusal.to_string(),
        }
    }

    /// Whether `/readyz` and `/metrics` require the client credentials.
    pub fn operations_require_client_credentials(&self) -> bool {
        self.authenticate_operations && self.client.is_some()
    }

    /// The extra names `Host` may carry (lowercase, without port).
    pub fn allowed_hosts(&self) -> &[String] {
        &self.allowed_hosts
    }

    /// Whether `host` (a `Host` header value) is answered.
    pub fn host_is_allowed(&self, host: &str) -> bool {
        if self.any_host {
            return true;
        }
        let Some(name) = host_without_port(host) else {
            return false;
        };
        is_loopback_name(&name) || self.allowed_hosts.contains(&name)
    }

    /// Whether token requests must carry client credentials.
    pub fn client_credentials_required(&self) -> bool {
        self.client.is_some()
    }

    pub(crate) fn client_credentials(&self) -> Option<&ClientCredentials> {
        self.client.as_deref()
    }
}

/// The client id and secret Kafka clients must present when client authentication is on.
#[derive(Clone)]
pub struct ClientCredentials {
    id: String,
    secret_digest: [u8; 32],
    id_digest: [u8; 32],
}

impl ClientCredentials {
    /// Credentials with this id and secret.
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        // Only digests are kept: the secret itself never stays in memory here.
        let id = id.into();
        let secret: String = secret.into();
        Self {
            id_digest: sha256(id.as_bytes()),
            secret_digest: sha256(secret.as_bytes()),
            id,
        }
    }

    /// The client id (not secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `id` and `secret` match, in time that depends on neither value.
    pub fn matches(&self, id: &[u8], secret: &[u8]) -> bool {
        let id_ok = self.id_digest.ct_eq(&sha256(id));
        let secret_ok = self.secret_digest.ct_eq(&sha256(secret));
        bool::from(id_ok & secret_ok)
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .field("secret", &"[censored]")
            .finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// Why a request must be refused before any handler runs (a foreign `Host`, a browser), if
/// it must.
pub(crate) fn refusal(
    config: &EndpointConfig,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Option<EndpointError> {
    for name in [header::ORIGIN.as_str(), "sec-fetch-site", "sec-fetch-mode"] {
        if headers.contains_key(name) {
            return Some(EndpointError::BrowserRequest {
                header: name.to_owned(),
            });
        }
    }
    // RFC 9112 §3.2: a request with no Host, more than one Host line or an invalid Host value
    // is answered 400. Only the first of two would otherwise be checked, and a proxy in front
    // might route by the other.
    let mut host_lines = headers.get_all(header::HOST).iter();
    let host = host_lines.next().map(|h| h.to_str().unwrap_or("\u{fffd}"));
    if host_lines.next().is_some() {
        return Some(EndpointError::InvalidRequest(
            "the request has more than one Host header; send exactly one (RFC 9112 §3.2)"
                .to_owned(),
        ));
    }
    // HTTP/1.1 puts the authority in Host; an absolute-form request line wins over it
    // (RFC 9112 §3.2.2), so check whichever hyper would route by, and both when both exist.
    let authority = uri.authority().map(|a| a.as_str());
    let candidates: Vec<&str> = host.into_iter().chain(authority).collect();
    if candidates.is_empty() {
        return Some(EndpointError::InvalidRequest(
            "the request has no Host header; send Host: localhost (RFC 9112 §3.2)".to_owned(),
        ));
    }
    if let Some(invalid) = candidates.iter().find(|h| host_without_port(h).is_none()) {
        return Some(EndpointError::InvalidRequest(format!(
            "Host `{}` is not a valid host; send a name or address with an optional port from 0 to 65535, e.g. Host: localhost:14293",
            invalid.chars().take(100).collect::<String>().escape_debug()
        )));
    }
    if let Some(h) = candidates.into_iter().find(|h| !config.host_is_allowed(h)) {
        let refusal = ConfigRefusal::HostNotAllowed {
            host: h
                .chars()
                .take(100)
                .collect::<String>()
                .escape_debug()
                .to_string(),
        };
        return Some(EndpointError::HostNotAllowed {
            description: config.word(&refusal),
        });
    }
    // RFC 6749 §2.3.1: client credentials must not travel in the request URI, which ends up in
    // access logs, proxies and shell history. Refused on every path and method.
    let query = uri.query().unwrap_or("");
    if form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "client_secret") {
        return Some(EndpointError::InvalidRequest(
            "client_secret must not be sent in the URL (RFC 6749 §2.3.1); send the client id and secret in an Authorization: Basic header, or as client_id and client_secret fields of a POST form body".to_owned(),
        ));
    }
    None
}

/// Checks client authentication for a token request whose form fields are `form` (the body
/// of a POST, the query of a GET).
pub(crate) fn authenticate(
    config: &EndpointConfig,
    headers: &HeaderMap,
    form: &[u8],
) -> Result<(), EndpointError> {
    let Some(expected) = config.client_credentials() else {
        return Ok(());
    };
    let presented = match headers.get(header::AUTHORIZATION) {
        Some(value) => Some(parse_basic(value.as_bytes()).ok_or(EndpointError::InvalidClient {
            reason: "the Authorization header is not HTTP Basic credentials (Basic base64(id:secret))".into(),
        })?),
        None => form_client_credentials(form),
    };
    let Some((id, secret)) = presented else {
        return Err(EndpointError::InvalidClient {
            reason: "client authentication is required: send the configured client id and secret (HTTP Basic, or client_id and client_secret form fields)".into(),
        });
    };
    if expected.matches(&id, &secret) || matches_form_decoded(expected, &id, &secret) {
        Ok(())
    } else {
        Err(EndpointError::InvalidClient {
            reason: config
                .word(&ConfigRefusal::ClientCredentialsMismatch)
                .into(),
        })
    }
}

/// RFC 6749 §2.3.1 form-encodes id and secret before Basic encoding; most clients do not.
/// Accept both.
fn matches_form_decoded(expected: &ClientCredentials, id: &[u8], secret: &[u8]) -> bool {
    let decode = |b: &[u8]| -> Vec<u8> {
        form_urlencoded::parse(&[b"x=", b].concat())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap_or_default()
    };
    let needs = |b: &[u8]| b.iter().any(|c| matches!(c, b'%' | b'+'));
    (needs(id) || needs(secret)) && expected.matches(&decode(id), &decode(secret))
}

const INDIFFERENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, INDIFFERENT);
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, INDIFFERENT);

/// `Basic <base64(id:secret)>` → (id, secret). The scheme is case-insensitive; the Base64 may
/// use either alphabet, padded or not.
pub fn parse_basic(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = encoded.trim();
    let decoded = STANDARD_ANY_PAD
        .decode(encoded)
        .or_else(|_| URL_SAFE_ANY_PAD.decode(encoded))
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// `client_id` and `client_secret` from a form body (librdkafka can send them there).
pub fn form_client_credentials(form: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut id = None;
    let mut secret = None;
    for (k, v) in form_urlencoded::parse(form) {
        match &*k {
            "client_id" if id.is_none() => id = Some(v.into_owned().into_bytes()),
            "client_secret" if secret.is_none() => secret = Some(v.into_owned().into_bytes()),
            _ => {}
        }
    }
    Some((id?, secret?))
}

/// `Host` value → lowercase name or address without port and brackets; `None` when it is not
/// a well-formed host.
pub fn host_without_port(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6] or [v6]:port
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        inside
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    valid.then(|| name.to_ascii_lowercase())
}

/// Decimal digits naming a TCP port, 0 to 65535 (`u16::from_str` alone would accept `+1`).
fn is_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

/// `localhost` or a loopback address (127.0.0.0/8, ::1, and 127/8 mapped into IPv6).
fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use proptest::prelude::*;

    #[test]
    fn loopback_hosts_with_and_without_port_are_allowed() {
        let config = EndpointConfig::default();
        for host in [
            "localhost",
            "LOCALHOST:14293",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:14293",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:14293",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(config.host_is_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:14293",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "[::2]:14293",
            "0.0.0.0",
            "::1",
            "localhost:port",
            "localhost:65536",
            "localhost:+80",
            "",
            "[::1",
            "a b",
        ] {
            assert!(!config.host_is_allowed(host), "{host}");
        }
    }

    #[test]
    fn operator_allowed_hosts_are_compared_without_port_and_case() {
        let config = EndpointConfig::default()
            .with_allowed_host("Kafka-Auth.internal:14293")
            .with_allowed_host("10.0.0.7");
        assert_eq!(config.allowed_hosts(), ["kafka-auth.internal", "10.0.0.7"]);
        assert!(config.host_is_allowed("kafka-auth.INTERNAL"));
        assert!(config.host_is_allowed("10.0.0.7:14293"));
        assert!(!config.host_is_allowed("kafka-auth.internal.evil"));
        assert!(
            EndpointConfig::default()
                .allow_any_host()
                .host_is_allowed("x")
        );
    }

    #[test]
    fn basic_credentials_in_both_alphabets_with_or_without_padding() {
        // "id:s>?~" has bytes that encode differently in the two alphabets.
        let raw = b"app:s>?~?>";
        for encoded in [STANDARD.encode(raw), URL_SAFE_NO_PAD.encode(raw)] {
            let header = format!("Basic {encoded}");
            assert_eq!(
                parse_basic(header.as_bytes()),
                Some((b"app".to_vec(), b"s>?~?>".to_vec())),
                "{header}"
            );
        }
        assert_eq!(
            parse_basic(b"basic YTpiOmM="),
            Some((b"a".to_vec(), b"b:c".to_vec()))
        );
        assert_eq!(parse_basic(b"Bearer YTpi"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
        assert_eq!(parse_basic(b"Basic YWJj"), None); // "abc": no colon
    }

    #[test]
    fn client_credentials_match_in_every_accepted_form() {
        let config = EndpointConfig::default()
            .with_client_credentials(ClientCredentials::new("my app", "p@ss+word"));
        let basic = |raw: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(raw)).parse().unwrap(),
            );
            h
        };
        let none = HeaderMap::new();
        assert!(authenticate(&config, &basic("my app:p@ss+word"), b"").is_ok());
        // RFC 6749 §2.3.1 form-encoding inside Basic.
        assert!(authenticate(&config, &basic("my+app:p%40ss%2Bword"), b"").is_ok());
        assert!(
            authenticate(
                &config,
                &none,
                b"client_id=my+app&client_secret=p%40ss%2Bword"
            )
            .is_ok()
        );
        for (headers, form) in [
            (basic("my app:wrong"), &b""[..]),
            (basic("other:p@ss+word"), b""),
            (none.clone(), b"client_id=my+app"),
            (none.clone(), b""),
            // A Basic header wins over form fields.
            (
                basic("x:y"),
                b"client_id=my+app&client_secret=p%40ss%2Bword",
            ),
        ] {
            let err = authenticate(&config, &headers, form).unwrap_err();
            assert!(
                matches!(err, EndpointError::InvalidClient { .. }),
                "{err:?}"
            );
        }
        assert!(authenticate(&EndpointConfig::default(), &none, b"").is_ok());
    }

    #[test]
    fn refusals_that_name_a_setting_take_the_configs_wording() {
        let description = |config: &EndpointConfig, host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, host.parse().unwrap());
            match refusal(config, &headers, &http::Uri::from_static("/")) {
                Some(EndpointError::HostNotAllowed { description }) => description,
                other => panic!("{other:?}"),
            }
        };
        let mismatch = |config: &EndpointConfig| {
            let mut headers = HeaderMap::new();
            let wrong = format!("Basic {}", STANDARD.encode("app:wrong"));
            headers.insert(header::AUTHORIZATION, wrong.parse().unwrap());
            match authenticate(config, &headers, b"") {
                Err(EndpointError::InvalidClient { reason }) => reason.into_owned(),
                other => panic!("{other:?}"),
            }
        };
        let library =
            EndpointConfig::default().with_client_credentials(ClientCredentials::new("app", "s"));
        assert_eq!(
            description(&library, "evil.example:80"),
            "Host `evil.example:80` is not a loopback name or address; to answer it, add it with EndpointConfig::with_allowed_host"
        );
        assert_eq!(
            mismatch(&library),
            "the client id or secret does not match the endpoint's EndpointConfig::with_client_credentials"
        );
        let program = library.with_refusal_wording(|refusal| match refusal {
            ConfigRefusal::HostNotAllowed { host } => format!("{host}: pass --allow"),
            other => format!("flags: {other}"),
        });
        // The Host reaches the wording cut to 100 characters.
        assert_eq!(
            description(&program, &"a".repeat(120)),
            format!("{}: pass --allow", "a".repeat(100))
        );
        assert_eq!(
            mismatch(&program),
            "flags: the client id or secret does not match the endpoint's EndpointConfig::with_client_credentials"
        );
    }

    #[test]
    fn client_credentials_debug_hides_the_secret() {
        let creds = ClientCredentials::new("app", "hunter2-secret");
        let debug = format!(
            "{:?}",
            EndpointConfig::default().with_client_credentials(creds)
        );
        assert!(
            debug.contains("[censored]") && debug.contains("app"),
            "{debug}"
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    proptest! {
        #[test]
        fn basic_round_trips_any_id_and_secret(
            id in "[^:]{0,40}",
            secret in ".{0,60}",
            url_safe in any::<bool>(),
            pad in any::<bool>(),
        ) {
            let raw = format!("{id}:{secret}");
            let mut encoded = if url_safe { URL_SAFE_NO_PAD.encode(&raw) } else { STANDARD.encode(&raw) };
            if !pad { encoded = encoded.trim_end_matches('=').to_owned(); }
            let parsed = parse_basic(format!("Basic {encoded}").as_bytes());
            prop_assert_eq!(parsed, Some((id.into_bytes(), secret.into_bytes())));
        }

        #[test]
        fn basic_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_basic(&bytes);
        }

        #[test]
        fn form_credentials_round_trip(id in ".{0,30}", secret in ".{0,30}", noise in "[a-z]{0,8}") {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair(&noise, "x")
                .append_pair("client_id", &id)
                .append_pair("client_secret", &secret)
                .finish();
            prop_assert_eq!(
                form_client_credentials(body.as_bytes()),
                Some((id.into_bytes(), secret.into_bytes()))
            );
        }

        #[test]
        fn host_check_never_panics_and_only_allows_loopback(host in ".{0,60}") {
            let config = EndpointConfig::default();
            if config.host_is_allowed(&host) {
                let name = host_without_port(&host).unwrap();
                prop_assert!(is_loopback_name(&name), "{} allowed", host);
            }
        }

        #[test]
        fn any_ipv4_outside_127_is_refused(a in 0u8..=255, b: u8, c: u8, d: u8, port in proptest::option::of(0u16..)) {
            let host = match port {
                Some(p) => format!("{a}.{b}.{c}.{d}:{p}"),
                None => format!("{a}.{b}.{c}.{d}"),
            };
            prop_assert_eq!(EndpointConfig::default().host_is_allowed(&host), a == 127);
        }
    }
}
