//! tokeninfo: Google's shape, numbers as strings.

use std::time::Duration;

use fake_google::{FakeGoogle, Fault, Stats, numeric_id};
use serde_json::{Value, json};

use crate::common::{USER_EMAIL, client, metadata_get, now, post_token, unpack};

fn invalid_token() -> Value {
    json!({ "error": "invalid_token", "error_description": "Invalid Value" })
}

async fn metadata_token(google: &FakeGoogle) -> String {
    let (_, _, body) =
        unpack(metadata_get(google, "/instance/service-accounts/default/token").await).await;
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get_info(google: &FakeGoogle, token: &str) -> (u16, Value) {
    let response = client()
        .get(google.tokeninfo_url())
        .query(&[("access_token", token)])
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    (status, body)
}

#[tokio::test]
async fn issued_token_reports_principal_and_string_numbers() {
    let google = FakeGoogle::start().await;
    let token = metadata_token(&google).await;
    let issued = google.lookup(&token).unwrap();
    let before = now() as u64;
    let (status, body) = get_info(&google, &token).await;
    let after = now() as u64;
    assert_eq!(status, 200);
    let expires_in: u64 = body["expires_in"].as_str().unwrap().parse().unwrap();
    // The fake read its clock somewhere between `before` and `after`.
    assert!(
        (issued.expires_at_unix - after..=issued.expires_at_unix - before).contains(&expires_in),
        "{body}"
    );
    let client_id = numeric_id(&issued.principal);
    assert_eq!(
        body,
        json!({
            "azp": client_id,
            "aud": client_id,
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "exp": issued.expires_at_unix.to_string(),
            "expires_in": expires_in.to_string(),
            "email": "sidecar@test-project.iam.gserviceaccount.com",
            "email_verified": "true",
            "access_type": "online",
        })
    );
    assert_eq!(
        google.stats(),
        Stats {
            metadata_token: 1,
            tokeninfo: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn post_form_works_and_user_tokens_name_the_user() {
    let google = FakeGoogle::start().await;
    let file = google.authorized_user_json(USER_EMAIL);
    let (_, _, body) = post_token(
        &google,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", file["client_id"].as_str().unwrap()),
            ("client_secret", file["client_secret"].as_str().unwrap()),
            ("refresh_token", file["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    let token = body["access_token"].as_str().unwrap();
    let response = client()
        .post(google.tokeninfo_url())
        .form(&[("access_token", token)])
        .send()
        .await
        .unwrap();
    let (status, _, info) = unpack(response).await;
    assert_eq!(status, 200);
    assert_eq!(info["email"], USER_EMAIL);
    assert_eq!(info["azp"], file["client_id"]);
    assert_eq!(info["aud"], file["client_id"]);
}

#[tokio::test]
async fn unknown_token_is_400_invalid_token() {
    let google = FakeGoogle::start().await;
    let (status, body) = get_info(&google, "ya29.c.fake-999.nope").await;
    assert_eq!(status, 400);
    assert_eq!(body, invalid_token());

    let response = client().get(google.tokeninfo_url()).send().await.unwrap();
    let (status, _, body) = unpack(response).await;
    assert_eq!(status, 400);
    assert_eq!(body, invalid_token());
    assert_eq!(
        google.stats(),
        Stats {
            tokeninfo: 2,
            rejected: 2,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn expired_token_is_400_invalid_token() {
    let google = FakeGoogle::start().await;
    google.fail_next(1, Fault::ExpiresIn(0));
    let token = metadata_token(&google).await;
    let (status, body) = get_info(&google, &token).await;
    assert_eq!(status, 400);
    assert_eq!(body, invalid_token());

    google.set_token_lifetime(Duration::from_secs(1));
    let token = metadata_token(&google).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = get_info(&google, &token).await;
    assert_eq!(status, 400);
    assert_eq!(body, invalid_token());
    // Still known to lookup, which does not care about expiry.
    assert_eq!(google.lookup(&token).unwrap().source, "metadata");
}
