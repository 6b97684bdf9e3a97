//! Every fault, on the endpoints that issue tokens, and only there.

use std::time::{Duration, Instant};

use fake_google::{FakeGoogle, Fault, RESET_ANNOUNCED_LENGTH, RESET_PARTIAL_BODY, Stats};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{
    SA_EMAIL, assertion_for, client, client_with_timeout, exchange, header, metadata_get, now,
    unpack,
};

const METADATA_TOKEN: &str = "/instance/service-accounts/default/token";

#[tokio::test]
async fn status_fault_sends_a_google_api_error() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    google.set_fault(Some(Fault::Status(503)));
    let (status, headers, body) = exchange(&google, &assertion_for(&key)).await;
    assert_eq!(status, 503);
    assert_eq!(
        header(&headers, "content-type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(
        body,
        json!({
            "error": {
                "code": 503,
                "message": "Service Unavailable (injected by fake-google)",
                "status": "UNAVAILABLE",
            }
        })
    );
    // Standing: the metadata server fails too, and keeps its header.
    let (status, headers, body) = unpack(metadata_get(&google, METADATA_TOKEN).await).await;
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "metadata-flavor"), "Google");
    assert_eq!(body["error"]["code"], json!(503));
    // Injected failures are not "rejected" input.
    assert_eq!(
        google.stats(),
        Stats {
            metadata_token: 1,
            oauth_token: 1,
            ..Stats::default()
        }
    );
    google.set_fault(None);
    let (status, _, _) = exchange(&google, &assertion_for(&key)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn other_statuses_map_to_their_canonical_codes() {
    let google = FakeGoogle::start().await;
    for (code, reason, canonical) in [
        (500, "Internal Server Error", "INTERNAL"),
        (429, "Too Many Requests", "RESOURCE_EXHAUSTED"),
        (403, "Forbidden", "PERMISSION_DENIED"),
        (502, "Bad Gateway", "UNKNOWN"),
    ] {
        google.fail_next(1, Fault::Status(code));
        let (status, _, body) = unpack(metadata_get(&google, METADATA_TOKEN).await).await;
        assert_eq!(status, code);
        assert_eq!(
            body,
            json!({
                "error": {
                    "code": code,
                    "message": format!("{reason} (injected by fake-google)"),
                    "status": canonical,
                }
            })
        );
    }
}

#[tokio::test]
async fn fail_next_fails_n_requests_then_recovers() {
    let google = FakeGoogle::start().await;
    google.fail_next(2, Fault::Status(500));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            metadata_get(&google, METADATA_TOKEN)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [500, 500, 200, 200]);
}

#[tokio::test]
async fn fail_next_takes_precedence_over_a_standing_fault() {
    let google = FakeGoogle::start().await;
    google.set_fault(Some(Fault::Status(503)));
    google.fail_next(1, Fault::InvalidGrant);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            metadata_get(&google, METADATA_TOKEN)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [400, 503, 503]);
}

#[tokio::test]
async fn faults_spare_non_issuing_endpoints() {
    let google = FakeGoogle::start().await;
    let (_, _, body) = unpack(metadata_get(&google, METADATA_TOKEN).await).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    google.set_fault(Some(Fault::Status(503)));
    let email = metadata_get(&google, "/instance/service-accounts/default/email").await;
    assert_eq!(email.status().as_u16(), 200);
    let info = client()
        .get(google.tokeninfo_url())
        .query(&[("access_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(info.status().as_u16(), 200);
    // The metadata header check still comes first.
    let bare = client()
        .get(format!(
            "{}/computeMetadata/v1{METADATA_TOKEN}",
            google.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 403);
}

#[tokio::test]
async fn hang_never_answers_until_the_client_gives_up() {
    let google = FakeGoogle::start().await;
    google.fail_next(1, Fault::Hang);
    let started = Instant::now();
    let error = client_with_timeout(Duration::from_millis(300))
        .get(format!(
            "{}/computeMetadata/v1{METADATA_TOKEN}",
            google.base_url()
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .expect_err("a hung request times out");
    assert!(error.is_timeout(), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Used up: the next one is served.
    assert_eq!(
        metadata_get(&google, METADATA_TOKEN)
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(google.stats().metadata_token, 2);
}

#[tokio::test]
async fn shutdown_releases_hung_requests_with_503() {
    let google = FakeGoogle::start().await;
    google.set_fault(Some(Fault::Hang));
    let url = format!("{}/computeMetadata/v1{METADATA_TOKEN}", google.base_url());
    let hung = tokio::spawn(async move {
        client()
            .get(url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!hung.is_finished());
    let started = Instant::now();
    google.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(hung.await.unwrap().unwrap(), 503);
}

#[tokio::test]
async fn garbage_is_a_200_json_response_that_is_not_json() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    google.fail_next(1, Fault::Garbage);
    let response = client()
        .post(google.token_uri())
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion_for(&key).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        header(response.headers(), "content-type"),
        "application/json; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert_eq!(text, "<html>oops");
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
}

#[tokio::test]
async fn reset_mid_body_promises_more_than_it_sends() {
    let google = FakeGoogle::start().await;
    google.fail_next(1, Fault::ResetMidBody);
    let response = metadata_get(&google, METADATA_TOKEN).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        header(response.headers(), "content-length"),
        RESET_ANNOUNCED_LENGTH.to_string()
    );
    let error = response.bytes().await.expect_err("the body is cut short");
    assert!(error.is_body() || error.is_decode(), "{error:?}");
}

#[tokio::test]
async fn reset_mid_body_on_the_wire() {
    let google = FakeGoogle::start().await;
    google.fail_next(1, Fault::ResetMidBody);
    let mut stream = tokio::net::TcpStream::connect(google.metadata_host())
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "GET /computeMetadata/v1{METADATA_TOKEN} HTTP/1.1\r\nHost: {}\r\nMetadata-Flavor: Google\r\n\r\n",
                google.metadata_host()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut received = Vec::new();
    // Read until the server closes; a reset surfaces as an error after the partial data.
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection");
    let text = String::from_utf8(received).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full header");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ncontent-length: 1024"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nmetadata-flavor: google"),
        "{head}"
    );
    assert_eq!(body, RESET_PARTIAL_BODY);
}

#[tokio::test]
async fn invalid_grant_fault() {
    let google = FakeGoogle::start().await;
    google.fail_next(1, Fault::InvalidGrant);
    let (status, _, body) = unpack(metadata_get(&google, METADATA_TOKEN).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({
            "error": "invalid_grant",
            "error_description": "Token has been expired or revoked.",
        })
    );
}

#[tokio::test]
async fn expires_in_fault_issues_a_token_with_that_lifetime() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    for n in [0_i64, -30, 45, i64::MAX] {
        google.fail_next(1, Fault::ExpiresIn(n));
        let before = now() as u64;
        let (status, _, body) = exchange(&google, &assertion_for(&key)).await;
        let after = now() as u64;
        assert_eq!(status, 200, "{n}: {body}");
        assert_eq!(body["expires_in"], json!(n));
        let issued = google
            .lookup(body["access_token"].as_str().unwrap())
            .unwrap();
        assert_eq!(issued.principal, SA_EMAIL);
        let lowest = before.saturating_add_signed(n);
        let highest = after.saturating_add_signed(n);
        assert!(
            (lowest..=highest).contains(&issued.expires_at_unix),
            "{n}: {issued:?}"
        );
    }
    // Back to the configured lifetime.
    let (_, _, body) = exchange(&google, &assertion_for(&key)).await;
    assert_eq!(body["expires_in"], json!(3600));
}

#[tokio::test]
async fn slow_answers_correctly_after_the_delay() {
    let google = FakeGoogle::start().await;
    google.fail_next(1, Fault::Slow(Duration::from_millis(400)));
    let started = Instant::now();
    let (status, _, body) = unpack(metadata_get(&google, METADATA_TOKEN).await).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], json!(3600));
    assert_eq!(
        google
            .lookup(body["access_token"].as_str().unwrap())
            .unwrap()
            .source,
        "metadata"
    );
}

#[test]
fn faults_parse_and_print_in_control_plane_syntax() {
    let cases = [
        ("status:503", Fault::Status(503)),
        ("hang", Fault::Hang),
        ("garbage", Fault::Garbage),
        ("reset", Fault::ResetMidBody),
        ("invalid_grant", Fault::InvalidGrant),
        ("expires_in:-5", Fault::ExpiresIn(-5)),
        ("slow:250", Fault::Slow(Duration::from_millis(250))),
    ];
    for (text, fault) in cases {
        assert_eq!(text.parse::<Fault>().unwrap(), fault);
        assert_eq!(fault.to_string(), text);
    }
    for bad in [
        "", "none", "status", "status:x", "slow:-1", "hang:1", "boom",
    ] {
        assert!(bad.parse::<Fault>().is_err(), "{bad:?}");
    }
}
