//! Every ADC credential type Google documents (but `gdch_service_account`), end to end against
//! the fake Google, checking the `sub`, the `exp` and exactly the upstream calls made. They run
//! the library's endpoint in this process ([`InProcess`]); the binary is spawned only where the
//! process is under test: its flags and variables, its logs, and executables that inherit its
//! environment.

use std::time::Duration;

use crate::support::{
    InProcess, Sidecar, SidecarEnv, assert_claims, decode_response, java_style_request,
    upstream_calls,
};
use fake_google::{
    AuthorizedUserOptions, FakeGoogle, SUBJECT_TOKEN_TYPE, aws, federated_principal,
    workforce_principal,
};
use serde_json::json;

const TARGET: &str = "kafka-client@test-project.iam.gserviceaccount.com";
const DELEGATE: &str = "hop@test-project.iam.gserviceaccount.com";
const MDS_EMAIL: &str = "sidecar@test-project.iam.gserviceaccount.com";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn iam_call(target: &str) -> String {
    format!("POST /v1/projects/-/serviceAccounts/{target}:generateAccessToken")
}

fn iam_request_body(fake: &FakeGoogle) -> serde_json::Value {
    let request = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(":generateAccessToken"))
        .expect("an IAM call");
    serde_json::from_str(&request.body).unwrap()
}

fn sts_form(fake: &FakeGoogle) -> std::collections::BTreeMap<String, String> {
    let request = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/token")
        .expect("an STS call");
    request.form().into_iter().collect()
}

async fn token_error(url: String) -> (u16, serde_json::Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

// ---- impersonated_service_account -------------------------------------------------------

#[tokio::test]
async fn impersonated_file_with_user_source_serves_the_target() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let user = fake.authorized_user_json_with(
        "dev@example.com",
        AuthorizedUserOptions {
            include_token_uri: true,
            ..Default::default()
        },
    );
    env.write_gcloud_adc(&fake.impersonated_service_account_json(TARGET, user));
    let sidecar = InProcess::start(env).await;
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, TARGET);
    assert_eq!(upstream_calls(&fake), ["POST /token", &iam_call(TARGET)]);
    assert_eq!(
        iam_request_body(&fake),
        json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "delegates": [], "lifetime": "3600s"})
    );
    // The user's token was the bearer, and no tokeninfo call was needed for the principal.
    let iam = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(":generateAccessToken"))
        .unwrap();
    let bearer = iam
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    assert_eq!(fake.lookup(&bearer).unwrap().principal, "dev@example.com");
}

#[tokio::test]
async fn impersonated_file_with_key_source_and_delegates() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let key = fake.service_account_key_json("builder@test-project.iam.gserviceaccount.com");
    let mut file = fake.impersonated_service_account_json(TARGET, key);
    file["delegates"] = json!([DELEGATE]);
    let path = env.write_file("impersonated.json", &file);
    let sidecar =
        InProcess::start(env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()))
            .await;
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, TARGET);
    assert_eq!(upstream_calls(&fake), ["POST /token", &iam_call(TARGET)]);
    assert_eq!(
        iam_request_body(&fake)["delegates"],
        json!([format!("projects/-/serviceAccounts/{DELEGATE}")])
    );
}

#[tokio::test]
async fn impersonated_file_with_workforce_user_source() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let file = fake.impersonated_service_account_json(TARGET, fake.workforce_user_json("alice"));
    env.write_gcloud_adc(&file);
    let sidecar = InProcess::start(env).await;
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, TARGET);
    assert_eq!(
        upstream_calls(&fake),
        ["POST /v1/oauthtoken", &iam_call(TARGET)]
    );
}

#[tokio::test]
async fn impersonate_flag_wraps_the_metadata_server_with_a_delegate_chain() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake).set("GCP_KAFKA_AUTH_IAM_CREDENTIALS_URL", fake.base_url());
    let chain = format!("{DELEGATE},{TARGET}");
    let sidecar = Sidecar::start(env, &["--impersonate-service-account", &chain]);
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, TARGET);
    assert_eq!(
        upstream_calls(&fake),
        [
            "GET /computeMetadata/v1/instance/service-accounts/default/token",
            &iam_call(TARGET)
        ]
    );
    assert_eq!(
        iam_request_body(&fake)["delegates"],
        json!([format!("projects/-/serviceAccounts/{DELEGATE}")])
    );
}

#[tokio::test]
async fn impersonate_variable_wraps_a_key_file() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let key = env.write_file("key.json", &fake.service_account_key_json(MDS_EMAIL));
    let env = env
        .set("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string())
        .set("GCP_KAFKA_AUTH_IAM_CREDENTIALS_URL", fake.base_url())
        .set("GCP_KAFKA_AUTH_IMPERSONATE_SERVICE_ACCOUNT", TARGET);
    let sidecar = Sidecar::start(env, &[]);
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, TARGET);
    assert_eq!(upstream_calls(&fake), ["POST /token", &iam_call(TARGET)]);
}

// ---- external_account ------------------------------------------------------------------

#[tokio::test]
async fn external_account_file_source_with_impersonation_and_lifetime() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let subject_file = env.home().join("oidc-token");
    std::fs::write(&subject_file, fake.register_subject_token("ci-job-7")).unwrap();
    let mut file = fake.external_account_json(&subject_file.display().to_string(), Some(TARGET));
    file["service_account_impersonation"] = json!({"token_lifetime_seconds": 1800});
    env.write_gcloud_adc(&file);
    let sidecar = InProcess::start(env).await;
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, TARGET);
    assert!(
        (1790..=1800).contains(&decoded.expires_in),
        "{}",
        decoded.expires_in
    );
    assert_eq!(upstream_calls(&fake), ["POST /v1/token", &iam_call(TARGET)]);
    assert_eq!(iam_request_body(&fake)["lifetime"], "1800s");
    let form = sts_form(&fake);
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(
        form["requested_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(form["subject_token_type"], SUBJECT_TOKEN_TYPE);
    assert_eq!(
        form["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert!(!form.contains_key("options"));
}

#[tokio::test]
async fn external_account_json_file_without_impersonation_needs_the_override() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let subject_file = env.home().join("token.json");
    let token = fake.register_subject_token("repo:org/app:ref:refs/heads/main");
    std::fs::write(&subject_file, json!({"id_token": token}).to_string()).unwrap();
    let mut file = fake.external_account_json(&subject_file.display().to_string(), None);
    file["credential_source"]["format"] =
        json!({"type": "json", "subject_token_field_name": "id_token"});
    env.write_gcloud_adc(&file);

    // Without the override: a 400 that asks for it.
    let sidecar = InProcess::start(SidecarEnv {
        vars: env.vars.clone(),
        home: tempfile::tempdir().unwrap(),
    })
    .await;
    let (status, body) = token_error(sidecar.url("/")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("set GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL"),
        "{body}"
    );
    drop(sidecar);

    let principal = federated_principal("repo:org/app:ref:refs/heads/main");
    let before = fake.requests().len();
    let sidecar =
        InProcess::start(env.set("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", principal.clone())).await;
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, &principal);
    assert_eq!(upstream_calls(&fake)[before..], ["POST /v1/token"]);
}

#[tokio::test]
async fn external_account_url_source_sends_its_headers_and_reads_json() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let mut file = fake.external_account_json("unused", Some(TARGET));
    let (name, value) = fake_google::federation::SUBJECT_SERVICE_HEADER;
    file["credential_source"] = json!({
        "url": fake.subject_service_url("json", "azure-vm-1"),
        "headers": {name: value},
        "format": {"type": "json", "subject_token_field_name": "access_token"},
    });
    env.write_gcloud_adc(&file);
    let sidecar = InProcess::start(env).await;
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, TARGET);
    assert_eq!(
        upstream_calls(&fake),
        [
            "GET /subject-token-service/json",
            "POST /v1/token",
            &iam_call(TARGET)
        ]
    );
    assert_eq!(fake.stats().rejected, 0);
}

#[tokio::test]
async fn external_account_url_source_without_its_header_is_refused_by_the_service() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let mut file = fake.external_account_json("unused", Some(TARGET));
    file["credential_source"] = json!({"url": fake.subject_service_url("text", "vm")});
    env.write_gcloud_adc(&file);
    let sidecar = InProcess::start(env).await;
    let (status, body) = token_error(sidecar.url("/")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("subject token URL at http://127.0.0.1:"),
        "{body}"
    );
    assert!(
        upstream_calls(&fake)
            .iter()
            .all(|c| c == "GET /subject-token-service/text")
    );
}

fn executable_script(dir: &std::path::Path, token: &str, expiration: u64) -> std::path::PathBuf {
    let script = dir.join("token-helper.sh");
    let response = json!({
        "version": 1,
        "success": true,
        "token_type": SUBJECT_TOKEN_TYPE,
        "id_token": token,
        "expiration_time": expiration,
    });
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nenv | grep ^GOOGLE_EXTERNAL_ACCOUNT_ | sort > {dir}/seen-env\necho run >> {dir}/runs\necho '{response}'\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn external_account_executable_source_runs_the_program_with_googles_variables() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake).set("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");
    let dir = env.home().to_owned();
    let script = executable_script(
        &dir,
        &fake.register_subject_token("exec"),
        unix_now() + 3600,
    );
    let mut file = fake.external_account_json("unused", Some(TARGET));
    file["credential_source"] = json!({"executable": {"command": format!("{} --flag", script.display()), "timeout_millis": 5000}});
    env.write_gcloud_adc(&file);
    let sidecar = Sidecar::start(env, &[]);
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, TARGET);
    assert_eq!(upstream_calls(&fake), ["POST /v1/token", &iam_call(TARGET)]);
    assert_eq!(
        std::fs::read_to_string(dir.join("seen-env")).unwrap(),
        format!(
            "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1\nGOOGLE_EXTERNAL_ACCOUNT_AUDIENCE={}\nGOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL={TARGET}\nGOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE=0\nGOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE={SUBJECT_TOKEN_TYPE}\n",
            fake_google::WORKLOAD_POOL_AUDIENCE
        )
    );
}

#[tokio::test]
async fn external_account_executable_output_file_is_used_while_valid() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake).set("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1");
    let dir = env.home().to_owned();
    let script = executable_script(
        &dir,
        "not-registered-so-sts-would-refuse",
        unix_now() + 3600,
    );
    let output_file = dir.join("cached-token.json");
    std::fs::write(
        &output_file,
        json!({"version": 1, "success": true, "token_type": SUBJECT_TOKEN_TYPE,
               "id_token": fake.register_subject_token("cached"), "expiration_time": unix_now() + 600})
        .to_string(),
    )
    .unwrap();
    let mut file = fake.external_account_json("unused", Some(TARGET));
    file["credential_source"] = json!({"executable": {"command": script.display().to_string(), "output_file": output_file.display().to_string()}});
    env.write_gcloud_adc(&file);
    let sidecar = Sidecar::start(env, &[]);
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, TARGET);
    assert!(
        !dir.join("runs").exists(),
        "the executable ran although its output file was valid"
    );
    assert_eq!(fake.stats().rejected, 0);
}

#[tokio::test]
async fn external_account_executable_is_refused_unless_allowed_and_names_the_variable() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let script = executable_script(env.home(), "x", unix_now() + 3600);
    let mut file = fake.external_account_json("unused", Some(TARGET));
    file["credential_source"] = json!({"executable": {"command": script.display().to_string()}});
    env.write_gcloud_adc(&file);
    let dir = env.home().to_owned();
    let sidecar = Sidecar::start(env, &[]);
    let (status, body) = token_error(sidecar.url("/")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"),
        "{body}"
    );
    assert!(!dir.join("runs").exists());
    assert!(upstream_calls(&fake).is_empty());
}

#[tokio::test]
async fn external_account_aws_with_imdsv2_signs_get_caller_identity() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let mut file = fake.aws_external_account_json(true);
    file["service_account_impersonation_url"] = json!(fake.impersonation_url(TARGET));
    env.write_gcloud_adc(&file);
    let sidecar = InProcess::start(env).await;
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, TARGET);
    assert_eq!(
        upstream_calls(&fake),
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/placement/availability-zone",
            "GET /latest/meta-data/iam/security-credentials",
            &format!(
                "GET /latest/meta-data/iam/security-credentials/{}",
                aws::ROLE_NAME
            ),
            "POST /v1/token",
            &iam_call(TARGET),
        ]
    );
    assert_eq!(
        sts_form(&fake)["subject_token_type"],
        aws::AWS_SUBJECT_TOKEN_TYPE
    );
    assert_eq!(fake.stats().rejected, 0);
    // The federated token STS issued stands for the AWS role.
    let iam = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(":generateAccessToken"))
        .unwrap();
    let bearer = iam
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    assert_eq!(
        fake.lookup(&bearer).unwrap().principal,
        federated_principal(&aws::aws_subject())
    );
}

#[tokio::test]
async fn external_account_aws_with_environment_credentials_asks_no_metadata() {
    let fake = FakeGoogle::start().await;
    let principal = federated_principal(&aws::aws_subject());
    let env = SidecarEnv::new(&fake)
        .set("AWS_REGION", aws::REGION)
        .set("AWS_ACCESS_KEY_ID", aws::ACCESS_KEY_ID)
        .set("AWS_SECRET_ACCESS_KEY", aws::SECRET_ACCESS_KEY)
        .set("AWS_SESSION_TOKEN", aws::SESSION_TOKEN)
        .set("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", principal.clone());
    env.write_gcloud_adc(&fake.aws_external_account_json(true));
    let sidecar = InProcess::start(env).await;
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, &principal);
    assert_eq!(upstream_calls(&fake), ["POST /v1/token"]);
}

#[tokio::test]
async fn external_account_aws_with_a_wrong_secret_is_refused_by_sts() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake)
        .set("AWS_REGION", aws::REGION)
        .set("AWS_ACCESS_KEY_ID", aws::ACCESS_KEY_ID)
        .set("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .set("AWS_SESSION_TOKEN", aws::SESSION_TOKEN)
        .set("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", "a@b.c");
    env.write_gcloud_adc(&fake.aws_external_account_json(false));
    let sidecar = Sidecar::start(env, &[]);
    let (status, body) = token_error(sidecar.url("/")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("the SigV4 signature does not match"),
        "{body}"
    );
    assert!(!sidecar.logs().contains("not-the-secret"));
}

#[tokio::test]
async fn external_account_workforce_options_and_client_auth() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake).set(
        "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL",
        federated_principal("w"),
    );
    let subject_file = env.home().join("t");
    std::fs::write(&subject_file, fake.register_subject_token("w")).unwrap();
    let mut file = fake.external_account_json(&subject_file.display().to_string(), None);
    file["workforce_pool_user_project"] = json!("billing-project");
    env.write_gcloud_adc(&file);
    let sidecar = InProcess::start(env).await;
    decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_eq!(
        sts_form(&fake)["options"],
        r#"{"userProject":"billing-project"}"#
    );
    let sts = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/token")
        .unwrap();
    assert_eq!(sts.header("authorization"), None);
}

// ---- external_account_authorized_user ---------------------------------------------------

#[tokio::test]
async fn workforce_user_refreshes_with_basic_auth_and_uses_the_override() {
    let fake = FakeGoogle::start().await;
    let principal = workforce_principal("alice@corp.example");
    let env = SidecarEnv::new(&fake);
    env.write_gcloud_adc(&fake.workforce_user_json("alice@corp.example"));
    let sidecar = InProcess::start(SidecarEnv {
        vars: env.vars.clone(),
        home: tempfile::tempdir().unwrap(),
    })
    .await;
    let (status, body) = token_error(sidecar.url("/")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL")
    );
    drop(sidecar);
    let sidecar =
        InProcess::start(env.set("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", principal.clone())).await;
    let decoded = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&decoded, &fake, &principal);
    assert!(
        upstream_calls(&fake)
            .iter()
            .all(|c| c == "POST /v1/oauthtoken")
    );
    assert_eq!(fake.stats().rejected, 0);
}

// ---- files that change on disk ----------------------------------------------------------

#[tokio::test]
async fn a_rewritten_credentials_file_is_used_from_the_next_refresh() {
    let fake = FakeGoogle::start().await;
    fake.set_token_lifetime(Duration::from_secs(24));
    let env = SidecarEnv::new(&fake);
    let first = "first@test-project.iam.gserviceaccount.com";
    let second = "second@test-project.iam.gserviceaccount.com";
    let path = env.write_file("secret/key.json", &fake.service_account_key_json(first));
    let sidecar = Sidecar::start(
        env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
        &["--refresh-margin", "20s"],
    );
    let before = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
    assert_claims(&before, &fake, first);
    // A rotated Kubernetes secret: the file is replaced atomically with another account's key.
    let staged = path.with_extension("new");
    std::fs::write(
        &staged,
        serde_json::to_vec(&fake.service_account_key_json(second)).unwrap(),
    )
    .unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let started = std::time::Instant::now();
    loop {
        let now = decode_response(java_style_request(&client(), &sidecar.url("/")).await).await;
        if now.claims["sub"] == second {
            assert_claims(&now, &fake, second);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still {}",
            now.claims["sub"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fake.stats().oauth_token, 2);
    // The log line was written before the token was served; its reader thread may lag.
    let started = std::time::Instant::now();
    while !sidecar
        .logs()
        .contains("credentials changed; using the new ones")
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            sidecar.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
