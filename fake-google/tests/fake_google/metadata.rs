//! The metadata server: header rules, token, email and the plain values.

use fake_google::metadata::{forwarded_body, missing_flavor_body};
use fake_google::{DEFAULT_METADATA_EMAIL, FakeGoogle, Stats};
use serde_json::json;

use crate::common::{client, header, keys, metadata_get, now, token_serial, unpack};

const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

#[tokio::test]
async fn token_without_metadata_flavor_is_403_with_googles_page() {
    let google = FakeGoogle::start().await;
    let response = client()
        .get(format!("{}{TOKEN_PATH}", google.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(header(response.headers(), "metadata-flavor"), "Google");
    assert_eq!(
        header(response.headers(), "content-type"),
        "text/html; charset=UTF-8"
    );
    assert_eq!(
        response.text().await.unwrap(),
        missing_flavor_body(TOKEN_PATH)
    );
    assert_eq!(
        google.stats(),
        Stats {
            metadata_token: 1,
            rejected: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn wrong_metadata_flavor_value_is_403() {
    let google = FakeGoogle::start().await;
    let response = client()
        .get(format!("{}{TOKEN_PATH}", google.base_url()))
        .header("Metadata-Flavor", "google")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(
        response.text().await.unwrap(),
        missing_flavor_body(TOKEN_PATH)
    );
}

#[tokio::test]
async fn x_forwarded_for_is_refused_even_with_the_header() {
    let google = FakeGoogle::start().await;
    let response = client()
        .get(format!("{}{TOKEN_PATH}", google.base_url()))
        .header("Metadata-Flavor", "Google")
        .header("X-Forwarded-For", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(header(response.headers(), "metadata-flavor"), "Google");
    assert_eq!(response.text().await.unwrap(), forwarded_body(TOKEN_PATH));
    assert_eq!(google.stats().rejected, 1);
    assert!(google.lookup("anything").is_none());
}

#[tokio::test]
async fn token_with_header_is_issued_and_remembered() {
    let google = FakeGoogle::start().await;
    let before = now() as u64;
    let (status, headers, body) =
        unpack(metadata_get(&google, "/instance/service-accounts/default/token").await).await;
    let after = now() as u64;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "metadata-flavor"), "Google");
    assert_eq!(
        header(&headers, "content-type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(keys(&body), ["access_token", "expires_in", "token_type"]);
    assert_eq!(body["expires_in"], json!(3600));
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token_serial(token), 1);
    let issued = google.lookup(token).expect("token remembered");
    assert_eq!(issued.principal, DEFAULT_METADATA_EMAIL);
    assert_eq!(issued.source, "metadata");
    assert!(
        (before + 3600..=after + 3600).contains(&issued.expires_at_unix),
        "{issued:?}"
    );
    assert_eq!(
        google.stats(),
        Stats {
            metadata_token: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn tokens_are_unique() {
    let google = FakeGoogle::start().await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (_, _, body) =
            unpack(metadata_get(&google, "/instance/service-accounts/default/token").await).await;
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let serials: Vec<u64> = tokens.iter().map(|t| token_serial(t)).collect();
    assert_eq!(serials, [1, 2, 3]);
    assert_ne!(tokens[0], tokens[1]);
    assert_ne!(tokens[1], tokens[2]);
    assert_eq!(google.stats().metadata_token, 3);
}

#[tokio::test]
async fn token_lifetime_and_email_are_configurable() {
    let google = FakeGoogle::start().await;
    google.set_token_lifetime(std::time::Duration::from_secs(300));
    google.set_metadata_email("test-project.svc.id.goog");
    let (status, _, body) =
        unpack(metadata_get(&google, "/instance/service-accounts/default/token").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], json!(300));
    let issued = google
        .lookup(body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(issued.principal, "test-project.svc.id.goog");

    let response = metadata_get(&google, "/instance/service-accounts/default/email").await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "test-project.svc.id.goog");
}

#[tokio::test]
async fn email_is_served_as_text() {
    let google = FakeGoogle::start().await;
    let response = metadata_get(&google, "/instance/service-accounts/default/email").await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(header(response.headers(), "metadata-flavor"), "Google");
    assert_eq!(
        header(response.headers(), "content-type"),
        "application/text"
    );
    assert_eq!(response.text().await.unwrap(), DEFAULT_METADATA_EMAIL);
    assert_eq!(
        google.stats(),
        Stats {
            metadata_email: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn the_account_may_be_named_by_email_but_no_other_name() {
    let google = FakeGoogle::start().await;
    let by_email = metadata_get(
        &google,
        &format!("/instance/service-accounts/{DEFAULT_METADATA_EMAIL}/email"),
    )
    .await;
    assert_eq!(by_email.status().as_u16(), 200);
    assert_eq!(by_email.text().await.unwrap(), DEFAULT_METADATA_EMAIL);

    let other = metadata_get(&google, "/instance/service-accounts/other@x.com/token").await;
    assert_eq!(other.status().as_u16(), 404);
    assert_eq!(header(other.headers(), "metadata-flavor"), "Google");
    assert_eq!(google.stats().metadata_token, 1);
}

#[tokio::test]
async fn recursive_account_info_names_email_and_scopes() {
    let google = FakeGoogle::start().await;
    let (status, _, body) = unpack(
        metadata_get(
            &google,
            "/instance/service-accounts/default/?recursive=true",
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "aliases": ["default"],
            "email": DEFAULT_METADATA_EMAIL,
            "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
        })
    );
}

#[tokio::test]
async fn requested_scopes_are_remembered_space_separated() {
    let google = FakeGoogle::start().await;
    let (_, _, body) = unpack(
        metadata_get(
            &google,
            "/instance/service-accounts/default/token?scopes=https://www.googleapis.com/auth/cloud-platform,openid",
        )
        .await,
    )
    .await;
    let token = body["access_token"].as_str().unwrap();
    let (status, _, info) = unpack(
        client()
            .get(google.tokeninfo_url())
            .query(&[("access_token", token)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        info["scope"],
        "https://www.googleapis.com/auth/cloud-platform openid"
    );
}

#[tokio::test]
async fn plain_values_and_root() {
    let google = FakeGoogle::start().await;
    for (path, expected) in [
        ("/project/project-id", "test-project"),
        ("/project/numeric-project-id", "123456789012"),
        ("/universe/universe-domain", "googleapis.com"),
    ] {
        let response = metadata_get(&google, path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(header(response.headers(), "metadata-flavor"), "Google");
        assert_eq!(response.text().await.unwrap(), expected, "{path}");
    }
    let root = client()
        .get(format!("{}/", google.base_url()))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(root.status().as_u16(), 200);
    assert_eq!(header(root.headers(), "metadata-flavor"), "Google");
    assert_eq!(root.text().await.unwrap(), "computeMetadata/\n");

    let unknown = metadata_get(&google, "/instance/zone-of-nothing").await;
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(header(unknown.headers(), "metadata-flavor"), "Google");
}

#[tokio::test]
async fn metadata_host_and_urls_agree() {
    let google = FakeGoogle::start().await;
    let base = google.base_url();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(format!("http://{}", google.metadata_host()), base);
    assert_eq!(google.token_uri(), format!("{base}/token"));
    assert_eq!(google.tokeninfo_url(), format!("{base}/tokeninfo"));
}

#[tokio::test]
async fn cached_mode_hands_out_the_same_token_while_more_than_half_its_life_is_left() {
    let google = FakeGoogle::start().await;
    google.set_metadata_cache(true);
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (_, _, body) =
            unpack(metadata_get(&google, "/instance/service-accounts/default/token").await).await;
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
        let expires_in = body["expires_in"].as_i64().unwrap();
        assert!((3599..=3600).contains(&expires_in), "{expires_in}");
    }
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(tokens[1], tokens[2]);
    assert_eq!(google.stats().metadata_token, 3);
    // A lifetime change resets nothing, but turning caching off mints new tokens again.
    google.set_metadata_cache(false);
    let (_, _, body) =
        unpack(metadata_get(&google, "/instance/service-accounts/default/token").await).await;
    assert_ne!(body["access_token"], tokens[0].as_str());
}

#[tokio::test]
async fn account_listing_names_default_and_the_email() {
    let google = FakeGoogle::start().await;
    let (status, headers, body) =
        unpack(metadata_get(&google, "/instance/service-accounts/?recursive=true").await).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "metadata-flavor"), "Google");
    let account = json!({
        "aliases": ["default"],
        "email": DEFAULT_METADATA_EMAIL,
        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
    });
    assert_eq!(
        body,
        json!({ "default": account, DEFAULT_METADATA_EMAIL: account })
    );
}
