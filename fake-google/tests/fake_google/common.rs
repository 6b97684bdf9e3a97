//! Helpers shared by the tests: an HTTP client that never uses a proxy, RS256 signing done
//! independently of the fake (straight aws-lc-rs), and response unpacking.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fake_google::{CLOUD_PLATFORM_SCOPE, FakeGoogle};
use reqwest::header::HeaderMap;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const SA_EMAIL: &str = "robot@test-project.iam.gserviceaccount.com";
pub const USER_EMAIL: &str = "dev@example.com";

/// A client that ignores `HTTP_PROXY` and friends: the fake is on loopback.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("build reqwest client")
}

/// Like [`client`], giving up after `timeout`.
pub fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("build reqwest client")
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A compact RS256 JWT signed with the PKCS#8 PEM key `pem`.
pub fn sign(pem: &str, header: &Value, claims: &Value) -> String {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).expect("PEM key");
    let key = KeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("RSA key");
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The JWT header a Google client library writes for `key` (a service-account key file).
pub fn header_for(key: &Value) -> Value {
    json!({ "alg": "RS256", "typ": "JWT", "kid": key["private_key_id"] })
}

/// The claims a Google client library writes for `key`, issued now.
pub fn claims_for(key: &Value) -> Value {
    let iat = now();
    json!({
        "iss": key["client_email"],
        "scope": CLOUD_PLATFORM_SCOPE,
        "aud": key["token_uri"],
        "iat": iat,
        "exp": iat + 3600,
    })
}

/// A correct assertion for `key`, signed with the key it carries.
pub fn assertion_for(key: &Value) -> String {
    sign(
        key["private_key"].as_str().expect("private_key"),
        &header_for(key),
        &claims_for(key),
    )
}

/// Status, headers and JSON body of a response.
pub async fn unpack(response: reqwest::Response) -> (u16, HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("read body");
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"));
    (status, headers, body)
}

/// POSTs a form to the fake's token endpoint.
pub async fn post_token(google: &FakeGoogle, form: &[(&str, &str)]) -> (u16, HeaderMap, Value) {
    let response = client()
        .post(google.token_uri())
        .form(form)
        .send()
        .await
        .expect("POST /token");
    unpack(response).await
}

/// Exchanges `assertion` at the fake's token endpoint.
pub async fn exchange(google: &FakeGoogle, assertion: &str) -> (u16, HeaderMap, Value) {
    post_token(
        google,
        &[("grant_type", JWT_BEARER), ("assertion", assertion)],
    )
    .await
}

/// GETs a metadata path (below `/computeMetadata/v1`) with the flavor header.
pub async fn metadata_get(google: &FakeGoogle, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}/computeMetadata/v1{path}", google.base_url()))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .expect("GET metadata")
}

/// The header `name` as a string, or "" when absent.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header"))
        .unwrap_or("")
}

/// Sorted keys of a JSON object.
pub fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// The `n` in an access token of the form `ya29.c.fake-<n>.<random>`, checking the form.
pub fn token_serial(token: &str) -> u64 {
    let rest = token
        .strip_prefix("ya29.c.fake-")
        .unwrap_or_else(|| panic!("not a fake Google token: {token}"));
    let (n, random) = rest.split_once('.').expect("a dot after the serial");
    assert_eq!(random.len(), 43, "32 random bytes, base64url: {token}");
    assert!(
        random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "base64url: {token}"
    );
    n.parse().expect("numeric serial")
}
