//! The refresh-token grant of `authorized_user` credentials.

use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use fake_google::oauth::{
    CLIENT_NOT_FOUND, CLIENT_UNAUTHORIZED, EXPIRED_OR_REVOKED, ID_TOKEN_KEY_ID,
};
use fake_google::{
    AUTHORIZED_USER_CLIENT_ID, AUTHORIZED_USER_CLIENT_SECRET, AuthorizedUserOptions, FakeGoogle,
    Stats, numeric_id, other_private_key_pem,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};

use crate::common::{USER_EMAIL, client, keys, now, post_token, token_serial, unpack};

fn refused(error: &str, description: &str) -> Value {
    json!({ "error": error, "error_description": description })
}

/// Refreshes with the fields of an `authorized_user` file, the way Google's libraries do.
async fn refresh(google: &FakeGoogle, file: &Value) -> (u16, Value) {
    let (status, _, body) = post_token(
        google,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", file["client_id"].as_str().unwrap()),
            ("client_secret", file["client_secret"].as_str().unwrap()),
            ("refresh_token", file["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn authorized_user_file_looks_like_gclouds() {
    let google = FakeGoogle::start().await;
    let file = google.authorized_user_json(USER_EMAIL);
    assert_eq!(
        keys(&file),
        [
            "client_id",
            "client_secret",
            "quota_project_id",
            "refresh_token",
            "type"
        ]
    );
    assert_eq!(file["type"], "authorized_user");
    assert_eq!(
        file["client_id"],
        "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com"
    );
    assert_eq!(file["client_secret"], AUTHORIZED_USER_CLIENT_SECRET);
    assert_eq!(file["quota_project_id"], "test-project");
    assert!(
        file["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("1//fake-1-")
    );

    let with_uri = google.authorized_user_json_with(
        USER_EMAIL,
        AuthorizedUserOptions {
            include_token_uri: true,
            ..AuthorizedUserOptions::default()
        },
    );
    assert_eq!(with_uri["token_uri"], google.token_uri());
    assert_ne!(with_uri["refresh_token"], file["refresh_token"]);
}

#[tokio::test]
async fn refresh_grant_issues_a_token_for_the_user() {
    let google = FakeGoogle::start().await;
    let file = google.authorized_user_json(USER_EMAIL);
    let (status, body) = refresh(&google, &file).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys(&body),
        ["access_token", "expires_in", "scope", "token_type"]
    );
    assert_eq!(body["expires_in"], json!(3600));
    assert_eq!(
        body["scope"],
        "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email"
    );
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap();
    // Serial 1 went to the refresh token.
    assert_eq!(token_serial(token), 2);
    let issued = google.lookup(token).unwrap();
    assert_eq!(issued.principal, USER_EMAIL);
    assert_eq!(issued.source, "authorized_user");
    assert_eq!(
        google.stats(),
        Stats {
            oauth_token: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn revoked_refresh_token_is_refused() {
    let google = FakeGoogle::start().await;
    let file = google.authorized_user_json(USER_EMAIL);
    assert_eq!(refresh(&google, &file).await.0, 200);
    google.revoke_refresh_token(file["refresh_token"].as_str().unwrap());
    let (status, body) = refresh(&google, &file).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        refused("invalid_grant", "Token has been expired or revoked.")
    );
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
async fn unknown_refresh_token_is_refused() {
    let google = FakeGoogle::start().await;
    let mut file = google.authorized_user_json(USER_EMAIL);
    file["refresh_token"] = json!("1//not-issued-here");
    let (status, body) = refresh(&google, &file).await;
    assert_eq!(status, 400);
    assert_eq!(body, refused("invalid_grant", EXPIRED_OR_REVOKED));
}

#[tokio::test]
async fn bad_client_is_401_invalid_client() {
    let google = FakeGoogle::start().await;
    let file = google.authorized_user_json(USER_EMAIL);

    let mut unknown_client = file.clone();
    unknown_client["client_id"] = json!("1234-nobody.apps.googleusercontent.com");
    let (status, body) = refresh(&google, &unknown_client).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        refused("invalid_client", "The OAuth client was not found.")
    );
    assert_eq!(body["error_description"], CLIENT_NOT_FOUND);

    let mut wrong_secret = file.clone();
    wrong_secret["client_secret"] = json!("not-the-secret");
    let (status, body) = refresh(&google, &wrong_secret).await;
    assert_eq!(status, 401);
    assert_eq!(body, refused("invalid_client", CLIENT_UNAUTHORIZED));

    let (status, _, body) = post_token(
        &google,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", file["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        refused(
            "invalid_request",
            "Could not determine client ID from request."
        )
    );
    assert_eq!(google.stats().rejected, 3);
}

#[tokio::test]
async fn client_credentials_may_come_as_http_basic() {
    let google = FakeGoogle::start().await;
    let file = google.authorized_user_json(USER_EMAIL);
    let basic = STANDARD.encode(format!(
        "{AUTHORIZED_USER_CLIENT_ID}:{AUTHORIZED_USER_CLIENT_SECRET}"
    ));
    let response = client()
        .post(google.token_uri())
        .header("Authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", file["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    assert_eq!(status, 200, "{body}");
    let issued = google
        .lookup(body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(issued.principal, USER_EMAIL);
}

#[tokio::test]
async fn openid_scope_brings_a_signed_id_token() {
    let google = FakeGoogle::start().await;
    let file = google.authorized_user_json_with(
        USER_EMAIL,
        AuthorizedUserOptions {
            scopes: vec![
                "openid".to_owned(),
                "https://www.googleapis.com/auth/userinfo.email".to_owned(),
                "https://www.googleapis.com/auth/cloud-platform".to_owned(),
            ],
            include_token_uri: false,
        },
    );
    let before = now();
    let (status, body) = refresh(&google, &file).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys(&body),
        [
            "access_token",
            "expires_in",
            "id_token",
            "scope",
            "token_type"
        ]
    );
    assert_eq!(
        body["scope"],
        "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/cloud-platform"
    );

    let id_token = body["id_token"].as_str().unwrap();
    let parts: Vec<&str> = id_token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!(
        decode(parts[0]),
        json!({ "alg": "RS256", "kid": ID_TOKEN_KEY_ID, "typ": "JWT" })
    );
    let claims = decode(parts[1]);
    let iat = claims["iat"].as_i64().unwrap();
    assert!(iat >= before && iat <= now());
    assert_eq!(
        claims,
        json!({
            "iss": "https://accounts.google.com",
            "azp": AUTHORIZED_USER_CLIENT_ID,
            "aud": AUTHORIZED_USER_CLIENT_ID,
            "sub": numeric_id(USER_EMAIL),
            "email": USER_EMAIL,
            "email_verified": true,
            "iat": iat,
            "exp": iat + 3600,
        })
    );
    // Signed by "Google" (the other.pem fixture).
    let der = PrivatePkcs8KeyDer::from_pem_slice(other_private_key_pem().as_bytes()).unwrap();
    let google_key = aws_lc_rs::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    UnparsedPublicKey::new(
        &RSA_PKCS1_2048_8192_SHA256,
        google_key.public_key().as_ref(),
    )
    .verify(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    )
    .expect("id_token signature verifies");
}
