//! The `/_fake/` control plane that out-of-process users drive.

use fake_google::{FakeGoogle, Stats};
use serde_json::{Value, json};

use crate::common::{
    JWT_BEARER, SA_EMAIL, USER_EMAIL, assertion_for, client, exchange, metadata_get, post_token,
    unpack,
};

async fn control_post(google: &FakeGoogle, path: &str, body: Value) -> (u16, Value) {
    // Sent without Content-Type on purpose: `curl -d` users should not have to set it.
    let response = client()
        .post(format!("{}/_fake/{path}", google.base_url()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    (status, body)
}

async fn control_get(google: &FakeGoogle, path: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{}/_fake/{path}", google.base_url()))
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    (status, body)
}

#[tokio::test]
async fn stats_as_json() {
    let google = FakeGoogle::start().await;
    metadata_get(&google, "/instance/service-accounts/default/token").await;
    metadata_get(&google, "/instance/service-accounts/default/email").await;
    let (status, body) = control_get(&google, "stats").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "metadata_token": 1,
            "metadata_email": 1,
            "oauth_token": 0,
            "tokeninfo": 0,
            "iam_generate_access_token": 0,
            "sts_token": 0,
            "sts_oauthtoken": 0,
            "rejected": 0,
        })
    );
    let parsed: Stats = serde_json::from_value(body).unwrap();
    assert_eq!(parsed, google.stats());
}

#[tokio::test]
async fn fault_with_count_then_none() {
    let google = FakeGoogle::start().await;
    let (status, body) = control_post(
        &google,
        "fault",
        json!({ "fault": "status:503", "count": 1 }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "fault": "status:503", "count": 1 }));
    let path = "/instance/service-accounts/default/token";
    assert_eq!(metadata_get(&google, path).await.status().as_u16(), 503);
    assert_eq!(metadata_get(&google, path).await.status().as_u16(), 200);

    let (status, body) = control_post(&google, "fault", json!({ "fault": "invalid_grant" })).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "fault": "invalid_grant", "count": null }));
    assert_eq!(metadata_get(&google, path).await.status().as_u16(), 400);
    assert_eq!(metadata_get(&google, path).await.status().as_u16(), 400);

    let (status, body) = control_post(&google, "fault", json!({ "fault": "none" })).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "fault": "none" }));
    assert_eq!(metadata_get(&google, path).await.status().as_u16(), 200);
}

#[tokio::test]
async fn expires_in_and_slow_faults_by_name() {
    let google = FakeGoogle::start().await;
    control_post(
        &google,
        "fault",
        json!({ "fault": "expires_in:-7", "count": 1 }),
    )
    .await;
    let (_, _, body) =
        unpack(metadata_get(&google, "/instance/service-accounts/default/token").await).await;
    assert_eq!(body["expires_in"], json!(-7));
    let (status, body) = control_post(&google, "fault", json!({ "fault": "slow:20" })).await;
    assert_eq!(
        (status, body),
        (200, json!({ "fault": "slow:20", "count": null }))
    );
}

#[tokio::test]
async fn bad_fault_is_400() {
    let google = FakeGoogle::start().await;
    let (status, body) = control_post(&google, "fault", json!({ "fault": "explode" })).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({ "error": "unknown fault \"explode\": expected status:N, hang, garbage, reset, invalid_grant, expires_in:N or slow:MS" })
    );
    let (status, body) = control_post(&google, "fault", json!({ "count": 1 })).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({ "error": "bad JSON body: missing field `fault` at line 1 column 11" })
    );
}

#[tokio::test]
async fn config_sets_lifetime_and_metadata_email() {
    let google = FakeGoogle::start().await;
    let (status, body) = control_post(
        &google,
        "config",
        json!({ "token_lifetime_secs": 120, "metadata_email": "other@test-project.iam.gserviceaccount.com" }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "token_lifetime_secs": 120,
            "metadata_email": "other@test-project.iam.gserviceaccount.com",
            "metadata_cache": false,
        })
    );
    let (_, _, token) =
        unpack(metadata_get(&google, "/instance/service-accounts/default/token").await).await;
    assert_eq!(token["expires_in"], json!(120));
    let issued = google
        .lookup(token["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        issued.principal,
        "other@test-project.iam.gserviceaccount.com"
    );
    // Partial update leaves the rest alone.
    let (_, body) = control_post(&google, "config", json!({ "token_lifetime_secs": 60 })).await;
    assert_eq!(
        body,
        json!({
            "token_lifetime_secs": 60,
            "metadata_email": "other@test-project.iam.gserviceaccount.com",
            "metadata_cache": false,
        })
    );
}

#[tokio::test]
async fn lookup_finds_issued_tokens_only() {
    let google = FakeGoogle::start().await;
    let (_, _, token) =
        unpack(metadata_get(&google, "/instance/service-accounts/default/token").await).await;
    let access_token = token["access_token"].as_str().unwrap();
    let issued = google.lookup(access_token).unwrap();
    let response = client()
        .get(format!("{}/_fake/lookup", google.base_url()))
        .query(&[("access_token", access_token)])
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "principal": "sidecar@test-project.iam.gserviceaccount.com",
            "expires_at_unix": issued.expires_at_unix,
            "source": "metadata",
            "scope": "https://www.googleapis.com/auth/cloud-platform",
        })
    );
    let (status, body) = control_get(&google, "lookup?access_token=ya29.nope").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({ "error": "no such token issued by this fake" })
    );
}

#[tokio::test]
async fn credential_files_from_the_control_plane_work() {
    let google = FakeGoogle::start().await;
    let (status, key) =
        control_post(&google, "service-account-key", json!({ "email": SA_EMAIL })).await;
    assert_eq!(status, 200);
    assert_eq!(key["client_email"], SA_EMAIL);
    let (status, _, body) = exchange(&google, &assertion_for(&key)).await;
    assert_eq!(status, 200, "{body}");

    let (status, user) =
        control_post(&google, "authorized-user", json!({ "email": USER_EMAIL })).await;
    assert_eq!(status, 200);
    assert_eq!(user["type"], "authorized_user");
    assert!(user.get("token_uri").is_none());
    let (status, _, body) = post_token(
        &google,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", user["client_id"].as_str().unwrap()),
            ("client_secret", user["client_secret"].as_str().unwrap()),
            ("refresh_token", user["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        google
            .lookup(body["access_token"].as_str().unwrap())
            .unwrap()
            .principal,
        USER_EMAIL
    );

    let (status, body) = control_post(
        &google,
        "revoke",
        json!({ "refresh_token": user["refresh_token"], "service_account_email": SA_EMAIL }),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    let (status, _, body) = exchange(&google, &assertion_for(&key)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error_description"], "Invalid JWT Signature.");
}

#[tokio::test]
async fn requests_are_recorded_without_the_control_plane() {
    let google = FakeGoogle::start().await;
    control_get(&google, "stats").await;
    post_token(
        &google,
        &[("grant_type", JWT_BEARER), ("assertion", "x.y.z")],
    )
    .await;
    let (status, body) = control_get(&google, "requests").await;
    assert_eq!(status, 200);
    let requests = body.as_array().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["method"], "POST");
    assert_eq!(requests[0]["path"], "/token");
    assert_eq!(requests[0]["query"], "");
    assert_eq!(
        requests[0]["body"],
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=x.y.z"
    );
    let recorded = &google.requests()[0];
    assert_eq!(
        recorded.form(),
        [
            ("grant_type".to_owned(), JWT_BEARER.to_owned()),
            ("assertion".to_owned(), "x.y.z".to_owned()),
        ]
    );
    assert!(
        recorded
            .headers
            .iter()
            .all(|(name, _)| *name == name.to_ascii_lowercase())
    );
}
