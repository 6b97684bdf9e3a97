//! The library as a Rust program uses it: the endpoint mounted in an axum app and served by
//! hyper directly over real sockets, and the provider's synchronous and asynchronous getters,
//! all against the fake Google.

use std::time::Duration;

use crate::support::{assert_claims, decode_response, java_style_request};
use fake_google::FakeGoogle;
use gcp_kafka_auth_handler::{BuildError, Env, KafkaTokenProvider, TokenErrorKind};

const MDS_EMAIL: &str = "sidecar@test-project.iam.gserviceaccount.com";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A provider on Application Default Credentials that find the fake's metadata server.
fn provider(fake: &FakeGoogle) -> KafkaTokenProvider {
    KafkaTokenProvider::builder()
        .with_env(Env::from_pairs([
            ("HOME", "/nonexistent".to_owned()),
            ("GCE_METADATA_HOST", fake.metadata_host()),
        ]))
        .build()
        .unwrap()
}

async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

#[tokio::test]
async fn router_nested_under_a_path_of_an_axum_app_serves_tokens_there_only() {
    let fake = FakeGoogle::start().await;
    let provider = provider(&fake);
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "the application" }))
        .nest("/oauth/token", provider.router());
    let (listener, base) = bind().await;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = client();

    let decoded =
        decode_response(java_style_request(&client, &format!("{base}/oauth/token")).await).await;
    assert_claims(&decoded, &fake, MDS_EMAIL);
    let sub_path = decode_response(
        client
            .get(format!("{base}/oauth/token/any/sub/path"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(sub_path.raw_token, decoded.raw_token);

    let health = client
        .get(format!("{base}/oauth/token/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), r#"{"status":"ok"}"#);
    let ready: serde_json::Value = client
        .get(format!("{base}/oauth/token/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["principal"], MDS_EMAIL);

    // The application's own routes are untouched, and paths outside the prefix are not the
    // token endpoint.
    let root = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(root.text().await.unwrap(), "the application");
    let outside = client.get(format!("{base}/other")).send().await.unwrap();
    assert_eq!(outside.status(), 404);

    assert_eq!(fake.stats().metadata_token, 1);
    server.abort();
}

#[tokio::test]
async fn router_served_by_hyper_directly_as_a_tower_service() {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;

    let fake = FakeGoogle::start().await;
    let service = TowerToHyperService::new(provider(&fake).router());
    let (listener, base) = bind().await;
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service.clone();
            tokio::spawn(async move {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                    .unwrap();
            });
        }
    });

    let client = client();
    let decoded = decode_response(java_style_request(&client, &format!("{base}/")).await).await;
    assert_claims(&decoded, &fake, MDS_EMAIL);
    let refused = client.put(format!("{base}/")).send().await.unwrap();
    assert_eq!(refused.status(), 405);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_token_waits_for_the_first_fetch_on_plain_threads_and_workers() {
    let fake = FakeGoogle::start().await;
    let provider = provider(&fake);

    // A thread outside the runtime, before any token exists: waits for the first fetch.
    let from_thread = {
        let provider = provider.clone();
        std::thread::spawn(move || provider.blocking_token())
    };
    let from_thread = tokio::task::spawn_blocking(move || from_thread.join().unwrap())
        .await
        .unwrap()
        .unwrap();
    // A worker of this multi-thread runtime (as a StreamConsumer polls).
    let from_worker = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.blocking_token() })
            .await
            .unwrap()
            .unwrap()
    };
    let awaited = provider.token().await.unwrap();
    let cached = provider.try_token().unwrap();

    for token in [&from_thread, &from_worker, &cached] {
        assert_eq!(token.expose(), awaited.expose());
    }
    assert_eq!(awaited.principal().as_str(), MDS_EMAIL);
    let raw = crate::support::raw_google_token(awaited.expose());
    let issued = fake.lookup(&raw).unwrap();
    assert!(
        awaited.expires_at_unix() == issued.expires_at_unix
            || awaited.expires_at_unix() + 1 == issued.expires_at_unix
    );
    assert_eq!(fake.stats().metadata_token, 1);

    // Debug output names the source and readiness, never the token.
    assert_eq!(
        format!("{provider:?}"),
        format!(
            "KafkaTokenProvider {{ source: \"application default credentials: metadata server at http://{}\", ready: true }}",
            fake.metadata_host()
        )
    );
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_token_on_a_current_thread_runtime_fails_at_once_until_a_token_is_cached() {
    let fake = FakeGoogle::start().await;
    let provider = provider(&fake);
    assert!(provider.try_token().is_none());

    let err = provider.blocking_token().unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Unavailable);
    assert!(
        err.to_string().contains("current-thread tokio runtime"),
        "{err}"
    );

    let awaited = provider.token().await.unwrap();
    // Once cached, the synchronous getters work anywhere, this thread included.
    assert_eq!(
        provider.blocking_token().unwrap().expose(),
        awaited.expose()
    );
    assert_eq!(provider.try_token().unwrap().expose(), awaited.expose());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_token_reports_the_credential_error_when_google_refuses() {
    let fake = FakeGoogle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    std::fs::write(
        &key,
        serde_json::to_vec(&fake.service_account_key_json("revoked@p.iam.gserviceaccount.com"))
            .unwrap(),
    )
    .unwrap();
    fake.revoke_service_account_key("revoked@p.iam.gserviceaccount.com");
    let provider = KafkaTokenProvider::builder()
        .with_env(Env::from_pairs([(
            "GOOGLE_APPLICATION_CREDENTIALS",
            key.display().to_string(),
        )]))
        .build()
        .unwrap();
    let err = tokio::task::spawn_blocking(move || provider.blocking_token())
        .await
        .unwrap();
    // spawn_blocking threads of a multi-thread runtime may wait too.
    let err = err.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Rejected, "{err}");
    assert!(err.to_string().contains("Google refused the key"), "{err}");
}

#[test]
fn building_outside_a_tokio_runtime_is_an_error_that_says_so() {
    let err = KafkaTokenProvider::builder().build().unwrap_err();
    assert!(matches!(err, BuildError::NoRuntime));
    assert!(err.to_string().contains("inside a tokio runtime"), "{err}");
}

#[test]
fn blocking_token_from_a_plain_thread_uses_the_runtime_the_provider_was_built_in() {
    // No runtime is entered on this thread or the one that waits: the provider keeps a handle
    // on the runtime it was built in, whose workers run the refresh.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = runtime.block_on(FakeGoogle::start());
    let provider = runtime.block_on(async { provider(&fake) });
    let token = std::thread::spawn(move || provider.blocking_token())
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(token.principal().as_str(), MDS_EMAIL);
    assert!(
        fake.lookup(&crate::support::raw_google_token(token.expose()))
            .is_some()
    );
    runtime.shutdown_timeout(Duration::from_secs(1));
}
