//! Where the fake refuses or withholds as Google does: tokeninfo names a user only with the
//! email scope, tokens remember their scopes, expired assertions, IAM project ids other than
//! `-` and undocumented STS subject token types are refused, and tokeninfo and the workforce
//! refresh endpoint fail on command.

use fake_google::oauth::BAD_TIMEFRAME;
use fake_google::sts::{INVALID_SUBJECT_TOKEN_TYPE, SUBJECT_TOKEN_TYPES};
use fake_google::{
    AUTHORIZED_USER_CLIENT_ID, AUTHORIZED_USER_CLIENT_SECRET, AuthorizedUserOptions,
    CLOUD_PLATFORM_SCOPE, DEFAULT_METADATA_EMAIL, FakeGoogle, Fault, GCLOUD_ADC_SCOPES, Stats,
    USERINFO_EMAIL, WORKLOAD_POOL_AUDIENCE, fixture_private_key_pem, numeric_id,
    workforce_principal,
};
use serde_json::{Value, json};

use crate::common::{
    USER_EMAIL, claims_for, client, exchange, header_for, keys, metadata_get, now, post_token,
    sign, unpack,
};

const SA_EMAIL: &str = "robot@test-project.iam.gserviceaccount.com";
const TARGET: &str = "target@test-project.iam.gserviceaccount.com";

/// A user token for a consent of `scopes`, and the refresh grant's body.
async fn user_token(google: &FakeGoogle, scopes: &[&str]) -> (String, Value) {
    let file = google.authorized_user_json_with(
        USER_EMAIL,
        AuthorizedUserOptions {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            include_token_uri: true,
        },
    );
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
    assert_eq!(status, 200, "{body}");
    (body["access_token"].as_str().unwrap().to_owned(), body)
}

async fn tokeninfo(google: &FakeGoogle, token: &str) -> (u16, Value) {
    let response = client()
        .post(google.tokeninfo_url())
        .form(&[("access_token", token)])
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    (status, body)
}

/// The tokeninfo body Google gives for a user token with `scope`, without the user's email.
fn user_info_without_email(info: &Value, scope: &str) -> Value {
    json!({
        "azp": AUTHORIZED_USER_CLIENT_ID,
        "aud": AUTHORIZED_USER_CLIENT_ID,
        "scope": scope,
        "exp": info["exp"],
        "expires_in": info["expires_in"],
        "access_type": "online",
    })
}

#[tokio::test]
async fn tokeninfo_names_a_user_only_with_the_email_scope() {
    let google = FakeGoogle::start().await;

    let (token, _) = user_token(&google, &[CLOUD_PLATFORM_SCOPE]).await;
    let (status, info) = tokeninfo(&google, &token).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info, user_info_without_email(&info, CLOUD_PLATFORM_SCOPE));

    for email_scope in ["email", USERINFO_EMAIL] {
        let (token, _) = user_token(&google, &[CLOUD_PLATFORM_SCOPE, email_scope]).await;
        let (status, info) = tokeninfo(&google, &token).await;
        assert_eq!(status, 200, "{info}");
        let mut want =
            user_info_without_email(&info, &format!("{CLOUD_PLATFORM_SCOPE} {email_scope}"));
        want["email"] = json!(USER_EMAIL);
        want["email_verified"] = json!("true");
        assert_eq!(info, want, "{email_scope}");
    }

    // What `gcloud auth application-default login` consents to: the email, and an id_token.
    let (token, body) = user_token(&google, &GCLOUD_ADC_SCOPES).await;
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
        "openid https://www.googleapis.com/auth/userinfo.email \
         https://www.googleapis.com/auth/cloud-platform \
         https://www.googleapis.com/auth/sqlservice.login"
    );
    let (_, info) = tokeninfo(&google, &token).await;
    assert_eq!(info["email"], USER_EMAIL);

    // The default consent of the fake's user files includes the email scope.
    let (token, _) = user_token(&google, &[]).await;
    let (_, info) = tokeninfo(&google, &token).await;
    assert_eq!(info["email"], Value::Null, "an empty consent names nobody");
    let file = google.authorized_user_json(USER_EMAIL);
    let (_, _, body) = post_token(
        &google,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", AUTHORIZED_USER_CLIENT_ID),
            ("client_secret", AUTHORIZED_USER_CLIENT_SECRET),
            ("refresh_token", file["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    let (_, info) = tokeninfo(&google, body["access_token"].as_str().unwrap()).await;
    assert_eq!(info["email"], USER_EMAIL);
    assert_eq!(
        info["scope"],
        format!("{CLOUD_PLATFORM_SCOPE} {USERINFO_EMAIL}")
    );
}

#[tokio::test]
async fn tokeninfo_fails_on_command_without_touching_token_grants() {
    let google = FakeGoogle::start().await;
    google.fail_next_tokeninfo(2, Fault::Status(503));
    // The grant is not a tokeninfo request: it is served.
    let (token, _) = user_token(&google, &[CLOUD_PLATFORM_SCOPE, USERINFO_EMAIL]).await;
    for _ in 0..2 {
        let (status, body) = tokeninfo(&google, &token).await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            json!({"error": {
                "code": 503,
                "message": "Service Unavailable (injected by fake-google)",
                "status": "UNAVAILABLE",
            }})
        );
    }
    let (status, info) = tokeninfo(&google, &token).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["email"], USER_EMAIL);

    // A standing fault, set through the control plane as the interop suite does.
    let response = client()
        .post(format!("{}/_fake/fault", google.base_url()))
        .body(r#"{"fault":"invalid_grant","endpoint":"tokeninfo"}"#)
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    assert_eq!(
        (status, body),
        (200, json!({"fault": "invalid_grant", "count": null}))
    );
    let (status, body) = tokeninfo(&google, &token).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
        )
    );
    // Token grants are not tokeninfo requests: this one is served (`user_token` checks 200).
    user_token(&google, &[CLOUD_PLATFORM_SCOPE]).await;
    google.set_tokeninfo_fault(None);
    assert_eq!(tokeninfo(&google, &token).await.0, 200);

    let response = client()
        .post(format!("{}/_fake/fault", google.base_url()))
        .body(r#"{"fault":"hang","endpoint":"userinfo"}"#)
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "unknown fault endpoint \"userinfo\": expected \"token\" or \"tokeninfo\""})
        )
    );
    assert_eq!(
        google.stats(),
        Stats {
            oauth_token: 2,
            tokeninfo: 5,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn metadata_tokens_carry_the_scopes_asked_for_else_the_instances() {
    let google = FakeGoogle::start().await;
    let token_at = |path: &'static str| {
        let google = google.clone();
        async move {
            let (status, _, body) = unpack(metadata_get(&google, path).await).await;
            assert_eq!(status, 200, "{body}");
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let default = token_at("/instance/service-accounts/default/token").await;
    assert_eq!(google.lookup(&default).unwrap().scope, CLOUD_PLATFORM_SCOPE);
    let asked = token_at(
        "/instance/service-accounts/default/token?scopes=https://www.googleapis.com/auth/cloud-platform",
    )
    .await;
    assert_eq!(google.lookup(&asked).unwrap().scope, CLOUD_PLATFORM_SCOPE);
    let two = token_at(
        "/instance/service-accounts/default/token?scopes=https://www.googleapis.com/auth/userinfo.email,https://www.googleapis.com/auth/devstorage.read_only",
    )
    .await;
    let issued = google.lookup(&two).unwrap();
    assert_eq!(
        issued.scope,
        "https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/devstorage.read_only"
    );
    assert_eq!(issued.principal, DEFAULT_METADATA_EMAIL);
    let (_, info) = tokeninfo(&google, &two).await;
    assert_eq!(info["scope"], issued.scope);
    assert_eq!(info["azp"], numeric_id(DEFAULT_METADATA_EMAIL));

    // The caching server keeps one token per set of scopes.
    google.set_metadata_cache(true);
    let cached = token_at("/instance/service-accounts/default/token").await;
    assert_eq!(
        token_at("/instance/service-accounts/default/token").await,
        cached
    );
    let other = token_at(
        "/instance/service-accounts/default/token?scopes=https://www.googleapis.com/auth/userinfo.email",
    )
    .await;
    assert_ne!(other, cached);
    assert_eq!(google.lookup(&other).unwrap().scope, USERINFO_EMAIL);

    // The lookup of the control plane reports the scope too.
    let response = client()
        .get(format!("{}/_fake/lookup", google.base_url()))
        .query(&[("access_token", default.as_str())])
        .send()
        .await
        .unwrap();
    let (status, _, body) = unpack(response).await;
    assert_eq!(status, 200);
    assert_eq!(body["scope"], CLOUD_PLATFORM_SCOPE);
    assert_eq!(body["source"], "metadata");
}

#[tokio::test]
async fn an_expired_assertion_is_refused_even_with_a_current_iat() {
    let google = FakeGoogle::start().await;
    let key = google.service_account_key_json(SA_EMAIL);
    let now = now();
    for (case, iat, exp) in [
        ("expired a moment ago", now - 250, now - 1),
        ("expires this second", now - 250, now),
    ] {
        let mut claims = claims_for(&key);
        claims["iat"] = json!(iat);
        claims["exp"] = json!(exp);
        let assertion = sign(fixture_private_key_pem(), &header_for(&key), &claims);
        let (status, _, body) = exchange(&google, &assertion).await;
        assert_eq!(status, 400, "{case}");
        assert_eq!(
            body,
            json!({"error": "invalid_grant", "error_description": BAD_TIMEFRAME}),
            "{case}"
        );
    }
    assert_eq!(
        google.stats(),
        Stats {
            oauth_token: 2,
            rejected: 2,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn iam_requires_the_project_wildcard() {
    let google = FakeGoogle::start().await;
    let (_, _, body) =
        unpack(metadata_get(&google, "/instance/service-accounts/default/token").await).await;
    let bearer = body["access_token"].as_str().unwrap().to_owned();
    let call = |project: &'static str| {
        let google = google.clone();
        let bearer = bearer.clone();
        async move {
            let url = format!(
                "{}/v1/projects/{project}/serviceAccounts/{TARGET}:generateAccessToken",
                google.base_url()
            );
            let response = client()
                .post(url)
                .bearer_auth(bearer)
                .json(
                    &json!({"scope": [CLOUD_PLATFORM_SCOPE], "delegates": [], "lifetime": "3600s"}),
                )
                .send()
                .await
                .unwrap();
            let (status, _, body) = unpack(response).await;
            (status, body)
        }
    };
    for project in ["test-project", "123456789012"] {
        assert_eq!(
            call(project).await,
            (
                400,
                json!({"error": {
                    "code": 400,
                    "message": "Request contains an invalid argument.",
                    "status": "INVALID_ARGUMENT",
                }})
            ),
            "{project}"
        );
    }
    let (status, body) = call("-").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        google
            .lookup(body["accessToken"].as_str().unwrap())
            .unwrap()
            .principal,
        TARGET
    );
    assert_eq!(
        google.stats(),
        Stats {
            metadata_token: 1,
            iam_generate_access_token: 3,
            rejected: 2,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn sts_takes_only_the_documented_subject_token_types() {
    let google = FakeGoogle::start().await;
    let exchange_as = |subject_token_type: &'static str| {
        let google = google.clone();
        async move {
            let subject_token = google.register_subject_token("workload-9");
            let response = client()
                .post(google.sts_url())
                .form(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("audience", WORKLOAD_POOL_AUDIENCE),
                    ("scope", CLOUD_PLATFORM_SCOPE),
                    (
                        "requested_token_type",
                        "urn:ietf:params:oauth:token-type:access_token",
                    ),
                    ("subject_token", subject_token.as_str()),
                    ("subject_token_type", subject_token_type),
                ])
                .send()
                .await
                .unwrap();
            let (status, _, body) = unpack(response).await;
            (status, body)
        }
    };
    for refused in [
        "urn:ietf:params:oauth:token-type:access_token",
        "urn:ietf:params:oauth:token-type:refresh_token",
        "urn:ietf:params:oauth:token-type:saml1",
        "jwt",
        "",
    ] {
        assert_eq!(
            exchange_as(refused).await,
            (
                400,
                json!({"error": "invalid_request", "error_description": INVALID_SUBJECT_TOKEN_TYPE})
            ),
            "{refused:?}"
        );
    }
    assert_eq!(
        SUBJECT_TOKEN_TYPES,
        [
            "urn:ietf:params:oauth:token-type:jwt",
            "urn:ietf:params:oauth:token-type:id_token",
            "urn:ietf:params:oauth:token-type:saml2",
        ]
    );
    for accepted in SUBJECT_TOKEN_TYPES {
        let (status, body) = exchange_as(accepted).await;
        assert_eq!(status, 200, "{accepted}: {body}");
    }
    assert_eq!(
        google.stats(),
        Stats {
            sts_token: 8,
            rejected: 5,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn workforce_refresh_fails_on_command() {
    let google = FakeGoogle::start().await;
    let file = google.workforce_user_json("alice");
    let refresh = || {
        let google = google.clone();
        let refresh_token = file["refresh_token"].as_str().unwrap().to_owned();
        async move {
            let response = client()
                .post(file_token_url(&google))
                .basic_auth(
                    AUTHORIZED_USER_CLIENT_ID,
                    Some(AUTHORIZED_USER_CLIENT_SECRET),
                )
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.as_str()),
                ])
                .send()
                .await
                .unwrap();
            let (status, _, body) = unpack(response).await;
            (status, body)
        }
    };
    google.fail_next(1, Fault::Status(503));
    assert_eq!(
        refresh().await,
        (
            503,
            json!({"error": {
                "code": 503,
                "message": "Service Unavailable (injected by fake-google)",
                "status": "UNAVAILABLE",
            }})
        )
    );
    google.fail_next(1, Fault::InvalidGrant);
    assert_eq!(
        refresh().await,
        (
            400,
            json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
        )
    );
    google.fail_next(1, Fault::ExpiresIn(120));
    let (status, body) = refresh().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 120);
    let issued = google
        .lookup(body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(issued.principal, workforce_principal("alice"));
    assert_eq!(
        google.stats(),
        Stats {
            sts_oauthtoken: 3,
            ..Stats::default()
        }
    );
}

fn file_token_url(google: &FakeGoogle) -> String {
    format!(
        "{}{}",
        google.base_url(),
        fake_google::federation::OAUTHTOKEN_PATH
    )
}
