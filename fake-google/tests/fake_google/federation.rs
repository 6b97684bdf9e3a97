//! IAM Credentials impersonation and STS token exchange.

use std::time::Duration;

use fake_google::{
    FakeGoogle, IAM_UNAUTHENTICATED, SUBJECT_TOKEN_TYPE, Stats, WORKLOAD_POOL_AUDIENCE,
    federated_principal, rfc3339,
};
use serde_json::{Value, json};

use crate::common::{client, metadata_get, now, unpack};

const TARGET: &str = "kafka-client@test-project.iam.gserviceaccount.com";

async fn source_token(google: &FakeGoogle) -> String {
    let (_, _, body) =
        unpack(metadata_get(google, "/instance/service-accounts/default/token").await).await;
    body["access_token"].as_str().unwrap().to_owned()
}

async fn impersonate(google: &FakeGoogle, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = client().post(google.impersonation_url(TARGET)).json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let (status, _, body) = unpack(request.send().await.unwrap()).await;
    (status, body)
}

#[tokio::test]
async fn generate_access_token_impersonates_the_target() {
    let google = FakeGoogle::start().await;
    assert_eq!(
        google.impersonation_url(TARGET),
        format!(
            "{}/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken",
            google.base_url()
        )
    );
    let source = source_token(&google).await;
    let (status, body) = impersonate(
        &google,
        Some(&source),
        json!({
            "scope": ["https://www.googleapis.com/auth/cloud-platform"],
            "delegates": [],
            "lifetime": "600s",
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["accessToken"].as_str().unwrap();
    let issued = google.lookup(token).unwrap();
    assert_eq!(issued.principal, TARGET);
    assert_eq!(issued.source, "impersonated");
    assert_eq!(
        body,
        json!({ "accessToken": token, "expireTime": rfc3339(issued.expires_at_unix) })
    );
    assert_eq!(
        google.stats(),
        Stats {
            metadata_token: 1,
            iam_generate_access_token: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn lifetime_is_capped_by_the_configured_one_and_by_an_hour() {
    let google = FakeGoogle::start().await;
    let source = source_token(&google).await;
    google.set_token_lifetime(Duration::from_secs(300));
    let before = now() as u64;
    let (status, body) = impersonate(
        &google,
        Some(&source),
        json!({ "scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "600s" }),
    )
    .await;
    let after = now() as u64;
    assert_eq!(status, 200);
    let issued = google
        .lookup(body["accessToken"].as_str().unwrap())
        .unwrap();
    // 600 s asked for, 300 s configured: 300 s it is.
    assert!(
        (before + 300..=after + 300).contains(&issued.expires_at_unix),
        "{issued:?}"
    );
    // A shorter request wins over the configured lifetime.
    let before = now() as u64;
    let (_, body) = impersonate(
        &google,
        Some(&source),
        json!({ "scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "120s" }),
    )
    .await;
    let after = now() as u64;
    let issued = google
        .lookup(body["accessToken"].as_str().unwrap())
        .unwrap();
    assert!(
        (before + 120..=after + 120).contains(&issued.expires_at_unix),
        "{issued:?}"
    );

    let (status, body) = impersonate(
        &google,
        Some(&source),
        json!({ "scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "7200s" }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({ "error": {
            "code": 400,
            "message": "The lifetime \"7200s\" is out of range: it must be between 1s and 3600s.",
            "status": "INVALID_ARGUMENT",
        }})
    );
}

#[tokio::test]
async fn impersonation_needs_a_valid_bearer_and_the_scope() {
    let google = FakeGoogle::start().await;
    let body = json!({ "scope": ["https://www.googleapis.com/auth/cloud-platform"] });
    let unauthenticated = json!({ "error": {
        "code": 401,
        "message": IAM_UNAUTHENTICATED,
        "status": "UNAUTHENTICATED",
    }});
    assert_eq!(
        impersonate(&google, None, body.clone()).await,
        (401, unauthenticated.clone())
    );
    assert_eq!(
        impersonate(&google, Some("ya29.unknown"), body.clone()).await,
        (401, unauthenticated)
    );
    let source = source_token(&google).await;
    let (status, body) = impersonate(&google, Some(&source), json!({ "scope": [] })).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({ "error": { "code": 400, "message": "Scope required.", "status": "INVALID_ARGUMENT" }})
    );
    assert_eq!(google.stats().rejected, 3);
}

#[tokio::test]
async fn sts_exchanges_a_registered_subject_token() {
    let google = FakeGoogle::start().await;
    let subject_token = google.register_subject_token("workload-7");
    let file = google.external_account_json("/var/run/token", Some(TARGET));
    assert_eq!(
        file,
        json!({
            "type": "external_account",
            "audience": WORKLOAD_POOL_AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": google.sts_url(),
            "credential_source": { "file": "/var/run/token" },
            "universe_domain": "googleapis.com",
            "service_account_impersonation_url": google.impersonation_url(TARGET),
        })
    );
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", WORKLOAD_POOL_AUDIENCE),
        ("scope", "https://www.googleapis.com/auth/cloud-platform"),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token", subject_token.as_str()),
        ("subject_token_type", SUBJECT_TOKEN_TYPE),
    ];
    let response = client()
        .post(google.sts_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        body,
        json!({
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 3600,
        })
    );
    let issued = google.lookup(token).unwrap();
    assert_eq!(
        issued.principal,
        "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/fake-pool/subject/workload-7"
    );
    assert_eq!(issued.principal, federated_principal("workload-7"));
    assert_eq!(issued.source, "external_account");

    let mut bad = form;
    bad[4].1 = "forged";
    let response = client()
        .post(google.sts_url())
        .form(&bad)
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({ "error": "invalid_grant", "error_description": "The given subject token is invalid." })
    );
    assert_eq!(
        google.stats(),
        Stats {
            sts_token: 2,
            rejected: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn impersonated_service_account_file_wraps_its_source() {
    let google = FakeGoogle::start().await;
    let source = google.authorized_user_json("dev@example.com");
    let file = google.impersonated_service_account_json(TARGET, source.clone());
    assert_eq!(
        file,
        json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": google.impersonation_url(TARGET),
            "source_credentials": source,
            "delegates": [],
        })
    );
}

#[test]
fn rfc3339_formats_utc_seconds() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
}
