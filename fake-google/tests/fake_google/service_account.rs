//! The JWT-bearer grant: what Google checks in a service-account assertion.

use fake_google::oauth::{
    ACCOUNT_NOT_FOUND, BAD_ALGORITHM, BAD_SCOPE, BAD_TIMEFRAME, INVALID_SIGNATURE, MALFORMED_JWT,
    UNAUTHORIZED_DELEGATION, wrong_audience_message,
};
use fake_google::{FakeGoogle, Stats, fixture_private_key_pem, numeric_id, other_private_key_pem};
use serde_json::{Value, json};

use crate::common::{
    JWT_BEARER, SA_EMAIL, assertion_for, claims_for, exchange, header, header_for, keys, now,
    post_token, sign, token_serial,
};

fn refused(error: &str, description: &str) -> Value {
    json!({ "error": error, "error_description": description })
}

/// Signs `claims` for `key` with its own private key and exchanges them.
async fn exchange_claims(google: &FakeGoogle, key: &Value, claims: &Value) -> (u16, Value) {
    let assertion = sign(fixture_private_key_pem(), &header_for(key), claims);
    let (status, _, body) = exchange(google, &assertion).await;
    (status, body)
}

#[tokio::test]
async fn key_file_is_complete() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    assert_eq!(
        keys(&key),
        [
            "auth_provider_x509_cert_url",
            "auth_uri",
            "client_email",
            "client_id",
            "client_x509_cert_url",
            "private_key",
            "private_key_id",
            "project_id",
            "token_uri",
            "type",
            "universe_domain",
        ]
    );
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["project_id"], "test-project");
    assert_eq!(key["client_email"], SA_EMAIL);
    assert_eq!(key["client_id"], numeric_id(SA_EMAIL));
    assert_eq!(key["client_id"].as_str().unwrap().len(), 21);
    assert_eq!(key["private_key"], fixture_private_key_pem());
    assert_eq!(key["token_uri"], google.token_uri());
    assert_eq!(key["auth_uri"], "https://accounts.google.com/o/oauth2/auth");
    assert_eq!(key["universe_domain"], "googleapis.com");
    assert_eq!(
        key["client_x509_cert_url"],
        "https://www.googleapis.com/robot/v1/metadata/x509/robot%40test-project.iam.gserviceaccount.com"
    );
    let kid = key["private_key_id"].as_str().unwrap();
    assert_eq!(kid.len(), 40);
    assert!(kid.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[tokio::test]
async fn assertion_signed_with_the_fixture_key_is_accepted() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let assertion = assertion_for(&key);
    let before = now() as u64;
    let (status, headers, body) = exchange(&google, &assertion).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["access_token", "expires_in", "token_type"]);
    assert_eq!(body["expires_in"], json!(3600));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        header(&headers, "content-type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(
        header(&headers, "cache-control"),
        "no-cache, no-store, max-age=0, must-revalidate"
    );
    assert_eq!(header(&headers, "pragma"), "no-cache");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token_serial(token), 1);
    let issued = google.lookup(token).unwrap();
    assert_eq!(issued.principal, SA_EMAIL);
    assert_eq!(issued.source, "service_account");
    assert!(
        issued.expires_at_unix >= before + 3600 && issued.expires_at_unix <= now() as u64 + 3600
    );
    assert_eq!(
        google.stats(),
        Stats {
            oauth_token: 1,
            ..Stats::default()
        }
    );

    let requests = google.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/token");
    assert_eq!(
        requests[0].header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        requests[0].form(),
        [
            ("grant_type".to_owned(), JWT_BEARER.to_owned()),
            ("assertion".to_owned(), assertion),
        ]
    );
}

#[tokio::test]
async fn assertion_signed_with_another_key_is_refused() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let assertion = sign(
        other_private_key_pem(),
        &header_for(&key),
        &claims_for(&key),
    );
    let (status, headers, body) = exchange(&google, &assertion).await;
    assert_eq!(status, 400);
    assert_eq!(body, refused("invalid_grant", INVALID_SIGNATURE));
    assert_eq!(body["error_description"], "Invalid JWT Signature.");
    assert_eq!(
        header(&headers, "cache-control"),
        "no-cache, no-store, max-age=0, must-revalidate"
    );
    assert_eq!(
        google.stats(),
        Stats {
            oauth_token: 1,
            rejected: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn tampered_claims_break_the_signature() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let assertion = assertion_for(&key);
    let mut parts: Vec<&str> = assertion.split('.').collect();
    let other_claims = sign(
        fixture_private_key_pem(),
        &header_for(&key),
        &json!({"iss": SA_EMAIL}),
    );
    parts[1] = other_claims.split('.').nth(1).unwrap();
    let (status, _, body) = exchange(&google, &parts.join(".")).await;
    assert_eq!(status, 400);
    assert_eq!(body, refused("invalid_grant", INVALID_SIGNATURE));
}

#[tokio::test]
async fn wrong_audience_is_refused_naming_the_right_one() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let mut claims = claims_for(&key);
    claims["aud"] = json!("https://oauth2.googleapis.com/token");
    let (status, body) = exchange_claims(&google, &key, &claims).await;
    assert_eq!(status, 400);
    let expected = format!(
        "Invalid JWT: Failed audience check. The right audience is {}",
        google.token_uri()
    );
    assert_eq!(expected, wrong_audience_message(&google.token_uri()));
    assert_eq!(body, refused("invalid_grant", &expected));
    assert_eq!(google.stats().rejected, 1);
}

#[tokio::test]
async fn unknown_issuer_is_refused() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let mut claims = claims_for(&key);
    claims["iss"] = json!("stranger@test-project.iam.gserviceaccount.com");
    let (status, body) = exchange_claims(&google, &key, &claims).await;
    assert_eq!(status, 400);
    assert_eq!(body, refused("invalid_grant", ACCOUNT_NOT_FOUND));
    assert_eq!(
        body["error_description"],
        "Invalid grant: account not found"
    );
}

#[tokio::test]
async fn unknown_or_missing_key_id_is_refused() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    for header in [
        json!({ "alg": "RS256", "typ": "JWT", "kid": "0123456789abcdef0123456789abcdef01234567" }),
        json!({ "alg": "RS256", "typ": "JWT" }),
    ] {
        let assertion = sign(fixture_private_key_pem(), &header, &claims_for(&key));
        let (status, _, body) = exchange(&google, &assertion).await;
        assert_eq!(status, 400, "{header}");
        assert_eq!(body, refused("invalid_grant", INVALID_SIGNATURE));
    }
    assert_eq!(google.stats().rejected, 2);
}

#[tokio::test]
async fn every_key_id_issued_for_an_account_is_valid() {
    let google = FakeGoogle::start().await;
    let first = google.service_account_key_json(SA_EMAIL);
    let second = google.service_account_key_json(SA_EMAIL);
    assert_ne!(first["private_key_id"], second["private_key_id"]);
    for key in [&first, &second] {
        let (status, _, body) = exchange(&google, &assertion_for(key)).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn revoked_key_is_refused() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let (status, _, _) = exchange(&google, &assertion_for(&key)).await;
    assert_eq!(status, 200);
    google.revoke_service_account_key(SA_EMAIL);
    let (status, _, body) = exchange(&google, &assertion_for(&key)).await;
    assert_eq!(status, 400);
    assert_eq!(body, refused("invalid_grant", "Invalid JWT Signature."));
    assert_eq!(
        google.stats(),
        Stats {
            oauth_token: 2,
            rejected: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn iat_and_exp_must_be_short_lived_and_current() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let now = now();
    let cases = [
        ("iat too old", now - 400, now - 400 + 3600),
        ("iat in the future", now + 400, now + 400 + 3600),
        ("longer than an hour", now, now + 3601),
        ("exp equal to iat", now, now),
        ("exp before iat", now, now - 10),
    ];
    for (case, iat, exp) in cases {
        let mut claims = claims_for(&key);
        claims["iat"] = json!(iat);
        claims["exp"] = json!(exp);
        let (status, body) = exchange_claims(&google, &key, &claims).await;
        assert_eq!(status, 400, "{case}");
        assert_eq!(body, refused("invalid_grant", BAD_TIMEFRAME), "{case}");
    }
    for (case, missing) in [("no iat", "iat"), ("no exp", "exp")] {
        let mut claims = claims_for(&key);
        claims.as_object_mut().unwrap().remove(missing);
        let (status, body) = exchange_claims(&google, &key, &claims).await;
        assert_eq!(status, 400, "{case}");
        assert_eq!(body, refused("invalid_grant", BAD_TIMEFRAME), "{case}");
    }
    // Within the tolerated skew, and floats (as Python writes them) are fine.
    let mut claims = claims_for(&key);
    claims["iat"] = json!(now - 250);
    claims["exp"] = json!(now - 250 + 3600);
    let (status, body) = exchange_claims(&google, &key, &claims).await;
    assert_eq!(status, 200, "{body}");
    let mut claims = claims_for(&key);
    claims["iat"] = json!(now as f64 + 0.25);
    claims["exp"] = json!(now as f64 + 3600.25);
    let (status, body) = exchange_claims(&google, &key, &claims).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(google.stats().rejected, 7);
}

#[tokio::test]
async fn cloud_platform_scope_is_required() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let mut claims = claims_for(&key);
    claims["scope"] = json!("https://www.googleapis.com/auth/pubsub");
    let (status, body) = exchange_claims(&google, &key, &claims).await;
    assert_eq!(status, 400);
    assert_eq!(body, refused("invalid_scope", BAD_SCOPE));

    claims["scope"] = json!("openid https://www.googleapis.com/auth/cloud-platform");
    let (status, body) = exchange_claims(&google, &key, &claims).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn only_rs256_is_accepted() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let header = json!({ "alg": "HS256", "typ": "JWT", "kid": key["private_key_id"] });
    let assertion = sign(fixture_private_key_pem(), &header, &claims_for(&key));
    let (status, _, body) = exchange(&google, &assertion).await;
    assert_eq!(status, 400);
    assert_eq!(body, refused("invalid_grant", BAD_ALGORITHM));
}

#[tokio::test]
async fn malformed_assertions_are_refused() {
    let google = FakeGoogle::start().await;
    google.service_account_key_json(SA_EMAIL);
    for assertion in [
        "",
        "a.b",
        "not.a.jwt",
        "e30.e30.!!!",
        "e30.e30.e30.e30",
        "W10.e30.e30",
    ] {
        let (status, _, body) = exchange(&google, assertion).await;
        assert_eq!(status, 400, "{assertion:?}");
        assert_eq!(
            body,
            refused("invalid_grant", MALFORMED_JWT),
            "{assertion:?}"
        );
    }
    assert_eq!(google.stats().rejected, 6);
}

#[tokio::test]
async fn delegation_to_another_subject_is_unauthorized() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let mut claims = claims_for(&key);
    claims["sub"] = json!("someone@example.com");
    let (status, body) = exchange_claims(&google, &key, &claims).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        refused("unauthorized_client", UNAUTHORIZED_DELEGATION)
    );
    // `sub` equal to `iss` is no delegation.
    claims["sub"] = json!(SA_EMAIL);
    let (status, _) = exchange_claims(&google, &key, &claims).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn missing_assertion_and_unknown_grant_types_are_refused() {
    let google = FakeGoogle::start().await;
    let (status, _, body) = post_token(&google, &[("grant_type", JWT_BEARER)]).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        refused("invalid_request", "Missing required parameter: assertion")
    );
    let (status, _, body) = post_token(&google, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        refused(
            "unsupported_grant_type",
            "Invalid grant_type: client_credentials"
        )
    );
    let (status, _, body) = post_token(&google, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        refused("unsupported_grant_type", "Invalid grant_type: ")
    );
    assert_eq!(
        google.stats(),
        Stats {
            oauth_token: 3,
            rejected: 3,
            ..Stats::default()
        }
    );
}
