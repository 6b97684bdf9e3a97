//! `gcp-kafka-auth-handler doctor` through the real binary: each source, and the failures
//! people hit, each with its fix. Secrets never appear in its output.

use crate::support::{SidecarEnv, run_doctor, upstream_calls};
use fake_google::{FakeGoogle, federated_principal};
use serde_json::json;

const MDS_EMAIL: &str = "sidecar@test-project.iam.gserviceaccount.com";
const TARGET: &str = "kafka-client@test-project.iam.gserviceaccount.com";

/// Every secret the fake put in a file or issued must be absent from what doctor printed.
fn assert_no_secrets(fake: &FakeGoogle, output: &str, file: Option<&serde_json::Value>) {
    for request in fake.requests() {
        if let Some(bearer) = request
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
        {
            assert!(!output.contains(bearer), "a token leaked: {output}");
        }
    }
    for token in output.split_whitespace() {
        assert!(!token.contains("ya29."), "a token leaked: {output}");
    }
    if let Some(file) = file {
        for field in ["private_key", "refresh_token", "client_secret"] {
            if let Some(secret) = file[field].as_str() {
                assert!(!output.contains(secret), "{field} leaked: {output}");
            }
        }
    }
}

#[tokio::test]
async fn metadata_server_text_report() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let run = run_doctor(&env, &[]).await;
    assert!(run.status.success(), "{}{}", run.stdout, run.stderr);
    let home = env.home().display();
    assert_eq!(
        run.stdout,
        format!(
            "Places checked, in order:\n  1. GOOGLE_APPLICATION_CREDENTIALS: not set\n  \
             2. gcloud credentials: {home}/.config/gcloud/application_default_credentials.json (not found)\n\
             Chosen:       the metadata server (no credentials file was found)\n\
             Type:         metadata_server\n\
             Source:       metadata server at {base}\n\
             Project:      test-project (from the metadata server)\n\
             Google token: fetched; valid for {left} s more\n\
             Principal:    {MDS_EMAIL} (named by the credentials: application default credentials: metadata server at {base})\n\
             Kafka token:  decodes as base64url (Kafka 4.2+): yes; as standard Base64 (kafka-clients < 4.2): yes\n\
             OK: the sidecar can serve Kafka tokens.\n",
            base = fake.base_url(),
            left = run
                .stdout
                .split("valid for ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap(),
        )
    );
    let left: i64 = run
        .stdout
        .split("valid for ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&left), "{left}");
    assert_no_secrets(&fake, &run.stdout, None);
}

#[tokio::test]
async fn service_account_key_json_report() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let key = fake.service_account_key_json("writer@test-project.iam.gserviceaccount.com");
    let path = env.write_file("key.json", &key);
    let env = env.set("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string());
    let run = run_doctor(&env, &["--json"]).await;
    assert!(run.status.success(), "{}{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["checked"],
        json!([format!(
            "GOOGLE_APPLICATION_CREDENTIALS: {}",
            path.display()
        )])
    );
    assert_eq!(
        report["chosen"],
        format!(
            "{} (because GOOGLE_APPLICATION_CREDENTIALS names it)",
            path.display()
        )
    );
    assert_eq!(report["credential_type"], "service_account");
    assert_eq!(report["project"], "test-project");
    assert_eq!(report["project_from"], "the file's project_id");
    assert_eq!(
        report["principal"],
        "writer@test-project.iam.gserviceaccount.com"
    );
    assert_eq!(report["kafka_token_decodes_standard"], true);
    assert_eq!(report["kafka_token_decodes_url_safe"], true);
    assert_eq!(report["problem"], serde_json::Value::Null);
    assert_eq!(upstream_calls(&fake), ["POST /token"]);
    assert_no_secrets(&fake, &run.stdout, Some(&key));
}

#[tokio::test]
async fn user_credentials_and_impersonation_flag_report() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake).set("GCP_KAFKA_AUTH_IAM_CREDENTIALS_URL", fake.base_url());
    let user = fake.authorized_user_json_with(
        "dev@example.com",
        fake_google::AuthorizedUserOptions {
            include_token_uri: true,
            ..Default::default()
        },
    );
    env.write_gcloud_adc(&user);
    let run = run_doctor(&env, &["--json", "--impersonate-service-account", TARGET]).await;
    assert!(run.status.success(), "{}{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["credential_type"], "authorized_user");
    assert_eq!(report["project"], "test-project");
    assert_eq!(report["project_from"], "the file's quota_project_id");
    assert_eq!(report["principal"], TARGET);
    assert_eq!(
        report["source"],
        format!(
            "{TARGET} impersonated by user credentials of OAuth client {}",
            fake_google::AUTHORIZED_USER_CLIENT_ID
        )
    );
    assert_no_secrets(&fake, &run.stdout, Some(&user));
}

#[tokio::test]
async fn external_account_report_uses_the_override_principal() {
    let fake = FakeGoogle::start().await;
    let principal = federated_principal("ci");
    let env = SidecarEnv::new(&fake).set("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", principal.clone());
    let subject = env.home().join("t");
    std::fs::write(&subject, fake.register_subject_token("ci")).unwrap();
    env.write_gcloud_adc(&fake.external_account_json(&subject.display().to_string(), None));
    let run = run_doctor(&env, &["--json"]).await;
    assert!(run.status.success(), "{}{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["credential_type"], "external_account");
    assert_eq!(report["project"], "123456789012");
    assert_eq!(report["principal"], principal);
    assert_eq!(
        report["principal_from"],
        "from GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL or --principal"
    );
    assert!(
        !run.stdout
            .contains(&std::fs::read_to_string(&subject).unwrap())
    );
}

// ---- failures, each with its fix ----------------------------------------------------------

async fn failing(env: &SidecarEnv) -> (serde_json::Value, String) {
    let json = run_doctor(env, &["--json"]).await;
    assert_eq!(json.status.code(), Some(1), "{}", json.stdout);
    let text = run_doctor(env, &[]).await;
    assert_eq!(text.status.code(), Some(1));
    (json.json(), text.stdout)
}

#[tokio::test]
async fn no_credentials_anywhere() {
    let fake = FakeGoogle::start().await;
    // A metadata host nobody listens on: not on Google Cloud.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = SidecarEnv::new(&fake).set("GCE_METADATA_HOST", closed.to_string());
    let (report, text) = failing(&env).await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["problem"]["step"], "token");
    assert_eq!(report["problem"]["kind"], "not_found");
    let message = report["problem"]["message"].as_str().unwrap();
    assert!(message.starts_with("no Google credentials found. Looked at, in order: GOOGLE_APPLICATION_CREDENTIALS: not set; gcloud credentials: "), "{message}");
    assert!(
        message.contains("Fix: run `gcloud auth application-default login`"),
        "{message}"
    );
    assert!(
        text.ends_with(&format!("PROBLEM (token): {message}\n")),
        "{text}"
    );
}

#[tokio::test]
async fn credentials_variable_naming_a_missing_file_or_a_directory() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let missing = env.home().join("nope.json");
    let dir = env.home().to_owned();
    let env = env.set(
        "GOOGLE_APPLICATION_CREDENTIALS",
        missing.display().to_string(),
    );
    let (report, _) = failing(&env).await;
    assert_eq!(report["problem"]["step"], "search");
    assert_eq!(
        report["problem"]["message"],
        format!(
            "GOOGLE_APPLICATION_CREDENTIALS names {}, which does not exist; point it at a credentials JSON file or unset it",
            missing.display()
        )
    );
    let env = env.set("GOOGLE_APPLICATION_CREDENTIALS", dir.display().to_string());
    let (report, _) = failing(&env).await;
    assert_eq!(
        report["problem"]["message"],
        format!(
            "GOOGLE_APPLICATION_CREDENTIALS names {}, which is a directory, not a file; point it at a credentials JSON file or unset it",
            dir.display()
        )
    );
    assert!(upstream_calls(&fake).is_empty());
}

#[tokio::test]
async fn unreadable_and_unknown_type_files() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let garbage = env.home().join("garbage.json");
    std::fs::write(&garbage, b"\xff\xfe not json").unwrap();
    let env = env.set(
        "GOOGLE_APPLICATION_CREDENTIALS",
        garbage.display().to_string(),
    );
    let (report, _) = failing(&env).await;
    assert_eq!(report["problem"]["step"], "credentials");
    assert_eq!(
        report["problem"]["message"],
        format!(
            "{}: not a credentials JSON file (syntax error at line 1 column 1)",
            garbage.display()
        )
    );
    let gdch = env.write_file("gdch.json", &json!({"type": "gdch_service_account"}));
    let env = env.set("GOOGLE_APPLICATION_CREDENTIALS", gdch.display().to_string());
    let (report, text) = failing(&env).await;
    assert_eq!(report["credential_type"], "gdch_service_account");
    assert_eq!(
        report["problem"]["message"],
        format!(
            "{}: credential type `gdch_service_account` is not supported; supported types: service_account, authorized_user, impersonated_service_account, external_account, external_account_authorized_user",
            gdch.display()
        )
    );
    assert!(
        text.contains("Type:         gdch_service_account\n"),
        "{text}"
    );
}

#[tokio::test]
async fn executable_not_allowed() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let mut file = fake.external_account_json("unused", Some(TARGET));
    file["credential_source"] = json!({"executable": {"command": "/bin/echo"}});
    env.write_gcloud_adc(&file);
    let (report, _) = failing(&env).await;
    assert_eq!(report["problem"]["step"], "credentials");
    assert!(
        report["problem"]["message"].as_str().unwrap().contains(
            "the credentials run an executable, which is allowed only when GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"
        ),
        "{report}"
    );
}

#[tokio::test]
async fn gke_workload_identity_pool_without_the_annotation() {
    let fake = FakeGoogle::start().await;
    fake.set_metadata_email("test-project.svc.id.goog");
    let env = SidecarEnv::new(&fake);
    let (report, _) = failing(&env).await;
    assert_eq!(report["problem"]["step"], "principal");
    let message = report["problem"]["message"].as_str().unwrap();
    assert!(
        message.contains("iam.gke.io/return-principal-id-as-email: \"true\""),
        "{message}"
    );
    assert!(
        message.contains("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL"),
        "{message}"
    );
    assert!(report["google_token_lifetime_secs"].as_i64().unwrap() > 3500);
}

#[tokio::test]
async fn federated_token_without_a_principal() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let subject = env.home().join("t");
    std::fs::write(&subject, fake.register_subject_token("ci")).unwrap();
    env.write_gcloud_adc(&fake.external_account_json(&subject.display().to_string(), None));
    let (report, _) = failing(&env).await;
    assert_eq!(report["problem"]["step"], "principal");
    assert!(
        report["problem"]["message"]
            .as_str()
            .unwrap()
            .contains("set GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL"),
        "{report}"
    );
}

#[tokio::test]
async fn impersonated_file_workforce_user_and_aws_reports() {
    let fake = FakeGoogle::start().await;
    // impersonated_service_account
    let env = SidecarEnv::new(&fake);
    let key = fake.service_account_key_json("builder@test-project.iam.gserviceaccount.com");
    env.write_gcloud_adc(&fake.impersonated_service_account_json(TARGET, key.clone()));
    let run = run_doctor(&env, &["--json"]).await;
    assert!(run.status.success(), "{}", run.stdout);
    let report = run.json();
    assert_eq!(report["credential_type"], "impersonated_service_account");
    assert_eq!(report["project_from"], "source_credentials.project_id");
    assert_eq!(report["principal"], TARGET);
    assert_no_secrets(&fake, &run.stdout, Some(&key));

    // external_account_authorized_user
    let principal = fake_google::workforce_principal("bob");
    let env = SidecarEnv::new(&fake).set("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", principal.clone());
    let user = fake.workforce_user_json("bob");
    env.write_gcloud_adc(&user);
    let run = run_doctor(&env, &["--json"]).await;
    assert!(run.status.success(), "{}", run.stdout);
    let report = run.json();
    assert_eq!(
        report["credential_type"],
        "external_account_authorized_user"
    );
    assert_eq!(report["principal"], principal);
    assert_no_secrets(&fake, &run.stdout, Some(&user));

    // external_account, aws
    let env = SidecarEnv::new(&fake);
    let mut file = fake.aws_external_account_json(true);
    file["service_account_impersonation_url"] = json!(fake.impersonation_url(TARGET));
    env.write_gcloud_adc(&file);
    let run = run_doctor(&env, &["--json"]).await;
    assert!(run.status.success(), "{}", run.stdout);
    let report = run.json();
    assert_eq!(report["principal"], TARGET);
    assert!(
        report["source"]
            .as_str()
            .unwrap()
            .contains("AWS (role credentials from "),
        "{report}"
    );
    for secret in [
        fake_google::aws::SECRET_ACCESS_KEY,
        fake_google::aws::SESSION_TOKEN,
        fake_google::aws::IMDSV2_TOKEN,
    ] {
        assert!(!run.stdout.contains(secret));
    }
}

/// The library names where a given principal came from in its own terms; the binary (above)
/// names its flag.
#[tokio::test]
async fn the_library_names_the_principals_origin_in_its_own_terms() {
    use gcp_kafka_auth_handler::{Env, doctor};
    let fake = FakeGoogle::start().await;
    let principal = federated_principal("lib");
    let plain = SidecarEnv::new(&fake);
    let with_var =
        SidecarEnv::new(&fake).set("GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL", principal.clone());
    let given = doctor::Options {
        principal: Some(principal.clone()),
        ..doctor::Options::default()
    };
    let named = doctor::Options {
        principal_origin: Some("the app's settings".to_owned()),
        ..given.clone()
    };
    for (env, options, from) in [
        (&plain, given, "from doctor::Options::principal"),
        (&plain, named, "from the app's settings"),
        (
            &with_var,
            doctor::Options::default(),
            "from GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL",
        ),
    ] {
        let report = doctor::examine(Env::from_pairs(env.vars.clone()), options).await;
        assert!(report.can_serve(), "{}", report.to_text());
        assert_eq!(report.principal.as_deref(), Some(principal.as_str()));
        assert_eq!(report.principal_from.as_deref(), Some(from));
    }
}
