//! User credentials whose consent lacks the email scope, and a failing tokeninfo, against a
//! fake Google that withholds the email as Google does. In process: the provider on an
//! `authorized_user` file named by `GOOGLE_APPLICATION_CREDENTIALS`; and the metadata-server
//! token, which must carry the cloud-platform scope.

use fake_google::{AuthorizedUserOptions, CLOUD_PLATFORM_SCOPE, FakeGoogle, Fault, Stats};
use gcp_kafka_auth_handler::{Env, KafkaTokenProvider, TokenErrorKind};

const USER_EMAIL: &str = "dev@example.com";

/// A provider on an `authorized_user` file consenting to `scopes`, with tokeninfo at the fake.
fn user_provider(
    fake: &FakeGoogle,
    scopes: &[&str],
    dir: &tempfile::TempDir,
) -> KafkaTokenProvider {
    let file = fake.authorized_user_json_with(
        USER_EMAIL,
        AuthorizedUserOptions {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            include_token_uri: true,
        },
    );
    let path = dir.path().join("application_default_credentials.json");
    std::fs::write(&path, file.to_string()).unwrap();
    KafkaTokenProvider::builder()
        .with_env(Env::from_pairs([
            ("HOME", dir.path().display().to_string()),
            ("GOOGLE_APPLICATION_CREDENTIALS", path.display().to_string()),
            ("GCP_KAFKA_AUTH_TOKENINFO_URL", fake.tokeninfo_url()),
        ]))
        .build()
        .unwrap()
}

/// The principal of a Kafka token (its `sub` claim).
fn sub(token: &gcp_kafka_auth_handler::KafkaToken) -> &str {
    token.principal().as_str()
}

#[tokio::test]
async fn user_credentials_without_the_email_scope_are_refused_with_the_fix() {
    let fake = FakeGoogle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = user_provider(&fake, &[CLOUD_PLATFORM_SCOPE], &dir);
    let err = provider.token().await.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Rejected);
    assert_eq!(
        err.to_string(),
        format!(
            "tokeninfo endpoint at {}/tokeninfo did not return the user's email: the \
             credentials lack the `email` scope; run `gcloud auth application-default login` \
             again, or set GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL",
            fake.base_url()
        )
    );
    // The grant succeeded; tokeninfo was asked and answered without an email.
    let stats = fake.stats();
    assert_eq!(
        (stats.oauth_token, stats.tokeninfo, stats.rejected),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn user_credentials_with_the_email_scope_name_the_user() {
    let fake = FakeGoogle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = user_provider(
        &fake,
        &[
            CLOUD_PLATFORM_SCOPE,
            "https://www.googleapis.com/auth/userinfo.email",
        ],
        &dir,
    );
    let token = provider.token().await.unwrap();
    assert_eq!(sub(&token), USER_EMAIL);
    assert_eq!(
        fake.stats(),
        Stats {
            oauth_token: 1,
            tokeninfo: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test]
async fn a_failing_tokeninfo_is_transient_and_the_next_attempt_succeeds() {
    let fake = FakeGoogle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let provider = user_provider(
        &fake,
        &[
            CLOUD_PLATFORM_SCOPE,
            "https://www.googleapis.com/auth/userinfo.email",
        ],
        &dir,
    );
    fake.fail_next_tokeninfo(1, Fault::Status(503));
    let err = provider.token().await.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Unavailable, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "tokeninfo endpoint at {}/tokeninfo answered HTTP 503 (UNAVAILABLE: Service \
             Unavailable (injected by fake-google))",
            fake.base_url()
        )
    );
    // The provider's own retry schedule decides when it asks again: wait as long as it says.
    let mut waits = 0;
    let token = loop {
        match provider.token().await {
            Ok(token) => break token,
            Err(err) => {
                assert_eq!(err.kind(), TokenErrorKind::Unavailable, "{err}");
                waits += 1;
                assert!(waits <= 5, "still failing after {waits} waits: {err}");
                tokio::time::sleep(err.retry_after()).await;
            }
        }
    };
    assert_eq!(sub(&token), USER_EMAIL);
    assert_eq!(fake.stats().tokeninfo, 2);
}

#[tokio::test]
async fn the_metadata_server_token_is_asked_for_and_carries_cloud_platform() {
    use base64::Engine as _;
    let fake = FakeGoogle::start().await;
    let provider = KafkaTokenProvider::builder()
        .with_env(Env::from_pairs([
            ("HOME", "/nonexistent".to_owned()),
            ("GCE_METADATA_HOST", fake.metadata_host()),
        ]))
        .build()
        .unwrap();
    let token = provider.token().await.unwrap();
    let third = token.expose().split('.').nth(2).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(third)
        .unwrap();
    let issued = fake.lookup(std::str::from_utf8(&raw).unwrap()).unwrap();
    assert_eq!(issued.source, "metadata");
    assert_eq!(issued.scope, CLOUD_PLATFORM_SCOPE);
    let token_requests: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/service-accounts/default/token"))
        .map(|r| r.query)
        .collect();
    assert_eq!(
        token_requests,
        ["scopes=https://www.googleapis.com/auth/cloud-platform"]
    );
}
