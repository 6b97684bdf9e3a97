//! The real binary over real HTTP against the fake Google: credential sources, ADC order,
//! principal rules, the token format, the cache and every error path.

use std::time::Duration;

use crate::support::{Sidecar, SidecarEnv, assert_claims, decode_response, java_style_request};
use fake_google::{AuthorizedUserOptions, FakeGoogle, Fault};

const MDS_EMAIL: &str = "sidecar@test-project.iam.gserviceaccount.com";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn metadata_server_token_is_served_on_get_and_post_on_any_path() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let client = client();
    let first = decode_response(java_style_request(&client, &sidecar.url("/")).await).await;
    assert_claims(&first, &fake, MDS_EMAIL);
    assert!(
        (3590..=3600).contains(&first.expires_in),
        "{}",
        first.expires_in
    );
    for path in ["", "/oauth/token", "/any/path?x=1"] {
        let get = decode_response(client.get(sidecar.url(path)).send().await.unwrap()).await;
        assert_eq!(get.raw_token, first.raw_token, "GET {path}");
        let post = decode_response(
            client
                .post(sidecar.url(path))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(post.raw_token, first.raw_token, "POST {path}");
    }
    let stats = fake.stats();
    assert_eq!(stats.metadata_token, 1);
    assert_eq!(stats.metadata_email, 1);
    // Every metadata request carried the header and no forwarding header.
    for request in fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/computeMetadata"))
    {
        let flavor: Vec<&str> = request
            .headers
            .iter()
            .filter(|(k, _)| k == "metadata-flavor")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(flavor, ["Google"]);
        assert!(request.headers.iter().all(|(k, _)| k != "x-forwarded-for"));
    }
}

#[tokio::test]
async fn service_account_key_from_google_application_credentials() {
    let fake = FakeGoogle::start().await;
    let email = "kafka-writer@test-project.iam.gserviceaccount.com";
    let env = SidecarEnv::new(&fake);
    let key = env.write_file("key.json", &fake.service_account_key_json(email));
    let sidecar = Sidecar::start(
        env.set("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string()),
        &[],
    );
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, email);
    let stats = fake.stats();
    assert_eq!(
        (stats.oauth_token, stats.metadata_token, stats.rejected),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn user_credentials_from_the_gcloud_file_get_the_email_from_tokeninfo() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let options = AuthorizedUserOptions {
        include_token_uri: true,
        ..Default::default()
    };
    env.write_gcloud_adc(&fake.authorized_user_json_with("dev@example.com", options));
    let sidecar = Sidecar::start(env, &[]);
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, "dev@example.com");
    let stats = fake.stats();
    assert_eq!(
        (stats.oauth_token, stats.tokeninfo, stats.metadata_token),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn user_credentials_with_an_id_token_need_no_tokeninfo_call() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let options = AuthorizedUserOptions {
        include_token_uri: true,
        scopes: vec![
            "openid".into(),
            "https://www.googleapis.com/auth/userinfo.email".into(),
            "https://www.googleapis.com/auth/cloud-platform".into(),
        ],
    };
    env.write_gcloud_adc(&fake.authorized_user_json_with("dev@example.com", options));
    let sidecar = Sidecar::start(env, &[]);
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, "dev@example.com");
    assert_eq!(fake.stats().tokeninfo, 0);
}

#[tokio::test]
async fn adc_order_env_file_then_gcloud_file_then_metadata_server() {
    let fake = FakeGoogle::start().await;
    let options = AuthorizedUserOptions {
        include_token_uri: true,
        ..Default::default()
    };
    // Both files present: GOOGLE_APPLICATION_CREDENTIALS wins.
    let env = SidecarEnv::new(&fake);
    env.write_gcloud_adc(&fake.authorized_user_json_with("dev@example.com", options.clone()));
    let key = env.write_file(
        "key.json",
        &fake.service_account_key_json("sa@test-project.iam.gserviceaccount.com"),
    );
    let sidecar = Sidecar::start(
        env.set("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string()),
        &[],
    );
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_eq!(
        decoded.claims["sub"],
        "sa@test-project.iam.gserviceaccount.com"
    );
    drop(sidecar);
    // Only the gcloud file, found through CLOUDSDK_CONFIG: it wins over the metadata server.
    let env = SidecarEnv::new(&fake);
    let dir = env.home().join("gcloud-config");
    env.write_file(
        "gcloud-config/application_default_credentials.json",
        &fake.authorized_user_json_with("dev@example.com", options),
    );
    let sidecar = Sidecar::start(env.set("CLOUDSDK_CONFIG", dir.display().to_string()), &[]);
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_eq!(decoded.claims["sub"], "dev@example.com");
    assert_eq!(fake.stats().metadata_token, 0);
}

#[tokio::test]
async fn a_missing_google_application_credentials_file_is_an_error_not_a_fall_through() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake).set("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json");
    let sidecar = Sidecar::start(env, &[]);
    let response = client().post(sidecar.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "the sidecar's Google credentials do not work: GOOGLE_APPLICATION_CREDENTIALS names \
         /nonexistent/key.json, which does not exist; point it at a credentials JSON file or unset it"
    );
    assert_eq!(fake.stats().metadata_token, 0);
}

#[tokio::test]
async fn principal_override_wins_and_awkward_principals_survive_both_alphabets() {
    let fake = FakeGoogle::start().await;
    for principal in [
        "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/x>y",
        "principal://iam.googleapis.com/a?b~c",
        "ops~team@example.com",
    ] {
        let env = SidecarEnv::new(&fake).set("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", principal);
        let sidecar = Sidecar::start(env, &[]);
        let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
        assert_eq!(decoded.claims["sub"], principal);
        assert!(
            !decoded.claims_b64.contains(['-', '_']),
            "{principal}: {}",
            decoded.claims_b64
        );
    }
    // The override means the metadata server is never asked for its email.
    assert_eq!(fake.stats().metadata_email, 0);
}

#[tokio::test]
async fn gke_workload_identity_pool_is_refused_with_the_fix() {
    let fake = FakeGoogle::start().await;
    fake.set_metadata_email("test-project.svc.id.goog");
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let response = client().get(sidecar.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("iam.gke.io/return-principal-id-as-email"),
        "{description}"
    );
    assert!(
        description.contains("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL"),
        "{description}"
    );
}

#[tokio::test]
async fn an_unknown_credential_type_is_named() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let path = env.write_file(
        "creds.json",
        &serde_json::json!({"type": "gdch_service_account"}),
    );
    let sidecar = Sidecar::start(
        env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
        &[],
    );
    let response = client().get(sidecar.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("credential type `gdch_service_account` is not supported"),
        "{description}"
    );
    assert!(
        description.contains(&path.display().to_string()),
        "{description}"
    );
}

#[tokio::test]
async fn ten_thousand_warm_requests_cause_one_upstream_token_request() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    sidecar.wait_ready().await;
    let client = client();
    let url = sidecar.url("/");
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        handles.push(tokio::spawn(async move {
            let mut tokens = std::collections::HashSet::new();
            for _ in 0..1250 {
                let r = client
                    .post(&url)
                    .body("grant_type=client_credentials")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body: serde_json::Value = r.json().await.unwrap();
                tokens.insert(body["access_token"].as_str().unwrap().to_owned());
            }
            tokens
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for handle in handles {
        tokens.extend(handle.await.unwrap());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(fake.stats().metadata_token, 1);
}

#[tokio::test]
async fn hundred_concurrent_cold_requests_cause_one_upstream_call() {
    let fake = FakeGoogle::start().await;
    fake.fail_next(1, Fault::Slow(Duration::from_millis(700)));
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let client = client();
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (client, url) = (client.clone(), sidecar.url("/"));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.await.unwrap(), 200);
    }
    assert_eq!(fake.stats().metadata_token, 1);
}

#[tokio::test]
async fn cold_upstream_failure_is_503_with_retry_after_then_recovers() {
    let fake = FakeGoogle::start().await;
    fake.set_fault(Some(Fault::Status(503)));
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let client = client();
    let response = client.get(sidecar.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(
            "no Google access token is available: metadata server at http://127.0.0.1:"
        ),
        "{description}"
    );
    assert!(description.contains("answered HTTP 503"), "{description}");
    let readyz = client.get(sidecar.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    fake.set_fault(None);
    sidecar.wait_ready().await;
    let decoded = decode_response(client.get(sidecar.url("/")).send().await.unwrap()).await;
    assert_claims(&decoded, &fake, MDS_EMAIL);
}

#[tokio::test]
async fn garbage_and_resets_from_upstream_are_503_never_an_empty_200() {
    for fault in [
        Fault::Garbage,
        Fault::ResetMidBody,
        Fault::ExpiresIn(0),
        Fault::ExpiresIn(-100),
    ] {
        let fake = FakeGoogle::start().await;
        fake.set_fault(Some(fault.clone()));
        let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
        let response = client().get(sidecar.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 503, "{fault}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable", "{fault}");
    }
}

#[tokio::test]
async fn a_revoked_key_is_reported_as_rejected_with_the_fix() {
    let fake = FakeGoogle::start().await;
    let email = "revoked@test-project.iam.gserviceaccount.com";
    let env = SidecarEnv::new(&fake);
    let key = env.write_file("key.json", &fake.service_account_key_json(email));
    fake.revoke_service_account_key(email);
    let sidecar = Sidecar::start(
        env.set("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string()),
        &[],
    );
    let response = client().get(sidecar.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains("Google refused the key"),
        "{description}"
    );
    assert!(description.contains("create a new key"), "{description}");
}

#[tokio::test]
async fn request_errors_are_oauth2_json() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let client = client();
    let cases = [
        (client.put(sidecar.url("/")), 405, "invalid_request"),
        (client.delete(sidecar.url("/token")), 405, "invalid_request"),
        (
            client
                .post(sidecar.url("/"))
                .body("grant_type=password&username=a"),
            400,
            "unsupported_grant_type",
        ),
        (
            client.get(sidecar.url("/?grant_type=refresh_token")),
            400,
            "unsupported_grant_type",
        ),
        (
            client.post(sidecar.url("/")).body(vec![b'a'; 9000]),
            413,
            "invalid_request",
        ),
    ];
    for (request, status, error) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["content-type"], "application/json");
        if status == 405 {
            assert_eq!(response.headers()["allow"], "GET, POST");
        }
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], error);
        assert!(!body["error_description"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn healthz_and_readyz() {
    let fake = FakeGoogle::start().await;
    fake.set_fault(Some(Fault::Status(500)));
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let client = client();
    let health = client.get(sidecar.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), r#"{"status":"ok"}"#);
    let ready = client.get(sidecar.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    fake.set_fault(None);
    sidecar.wait_ready().await;
    let ready: serde_json::Value = client
        .get(sidecar.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["principal"], MDS_EMAIL);
}

#[tokio::test]
async fn no_secret_reaches_the_logs_at_trace_level() {
    let fake = FakeGoogle::start().await;
    let key_json = fake.service_account_key_json("sa@test-project.iam.gserviceaccount.com");
    let options = AuthorizedUserOptions {
        include_token_uri: true,
        ..Default::default()
    };
    let user_json = fake.authorized_user_json_with("dev@example.com", options);
    for creds in [key_json.clone(), user_json.clone()] {
        let env = SidecarEnv::new(&fake).set("RUST_LOG", "trace");
        let path = env.write_file("creds.json", &creds);
        let sidecar = Sidecar::start(
            env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
            &[],
        );
        let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let logs = sidecar.logs();
        assert!(logs.contains("fetched a Google access token"), "{logs}");
        let mut secrets = vec![decoded.raw_token.clone()];
        for field in ["private_key", "client_secret", "refresh_token"] {
            if let Some(value) = creds[field].as_str() {
                // Any 40-character run of a PEM body counts as a leak.
                let value = value
                    .replace("-----BEGIN PRIVATE KEY-----", "")
                    .replace('\n', "");
                secrets.push(value[..40.min(value.len())].to_owned());
            }
        }
        for secret in secrets {
            assert!(!logs.contains(&secret), "secret {secret:.12}... in logs");
        }
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_within_the_drain_time() {
    let fake = FakeGoogle::start().await;
    let mut sidecar = Sidecar::start(SidecarEnv::new(&fake), &["--shutdown-timeout", "2s"]);
    sidecar.wait_ready().await;
    let status = sidecar
        .terminate(Duration::from_secs(5))
        .expect("exited within 5 s");
    assert!(status.success(), "{status:?}");
    let logs = sidecar.logs();
    assert!(logs.contains("received SIGTERM"), "{logs}");
    assert!(logs.contains("\"stopped\""), "{logs}");
}

#[test]
fn version_prints_json() {
    let output = std::process::Command::new(crate::support::BIN)
        .arg("version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["name"], "gcp-kafka-auth-handler");
    assert!(v["target"].as_str().unwrap().contains("linux"));
    assert!(!v["git_commit"].as_str().unwrap().is_empty());
}
