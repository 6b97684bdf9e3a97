//! Micro-benchmarks of the request path: `cargo bench --bench hot_path`.
//!
//! - `kafka_token/encode`: building the Kafka token (once per refresh);
//! - `response/render`: the body a request gets from the precomputed prefix (once per request);
//! - `endpoint/post_token`: a whole token request through the axum router in process (routing,
//!   form parsing, cache read, body, headers), without sockets.
//!
//! The load benchmark with sockets is `bench/run.sh`; figures in `docs/performance.md`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use gcp_kafka_auth_handler::bench_hooks::ResponseBody;
use gcp_kafka_auth_handler::credentials::{
    BoxFuture, CredentialError, CredentialSource, GoogleToken,
};
use gcp_kafka_auth_handler::{KafkaToken, KafkaTokenProvider, Principal};
use tower::ServiceExt as _;

/// A Google access token of a typical length (metadata-server tokens are ~250 characters).
fn access_token() -> String {
    let mut token = String::from("ya29.c.");
    while token.len() < 250 {
        token.push_str("b0AXv0zTPq3x-Kd_9fLm.");
    }
    token
}

fn principal() -> Principal {
    Principal::new("pipeline-worker@my-project.iam.gserviceaccount.com").unwrap()
}

fn kafka_token(c: &mut Criterion) {
    let access = access_token();
    let principal = principal();
    c.bench_function("kafka_token/encode", |b| {
        b.iter(|| {
            KafkaToken::encode(
                black_box(&access),
                black_box(&principal),
                black_box(1_900_003_600),
                black_box(1_900_000_000),
            )
        })
    });
}

fn response(c: &mut Criterion) {
    let token = KafkaToken::encode(&access_token(), &principal(), 1_900_003_600, 1_900_000_000);
    let body = ResponseBody::new(&token);
    c.bench_function("response/render", |b| {
        b.iter(|| body.render(black_box(3299)))
    });
}

/// Hands out one fixed token that lives an hour: the cache is warm after the first fetch.
#[derive(Debug)]
struct FixedToken(String);

impl CredentialSource for FixedToken {
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>> {
        Box::pin(async move {
            Ok(GoogleToken {
                access_token: self.0.clone().into(),
                expires_at: SystemTime::now() + Duration::from_secs(3600),
                principal_hint: None,
            })
        })
    }

    fn principal<'a>(
        &'a self,
        _token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>> {
        Box::pin(async { Ok(principal()) })
    }

    fn describe(&self) -> String {
        "a fixed token".to_owned()
    }
}

fn endpoint(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(async {
        let provider = KafkaTokenProvider::builder()
            .with_credentials(FixedToken(access_token()))
            .build()
            .unwrap();
        provider.token().await.unwrap(); // warm the cache
        provider.router()
    });
    let request = || {
        // The endpoint answers only requests addressed to a loopback name (DNS rebinding), as
        // every Kafka client's request to the sidecar is.
        http::Request::post("/")
            .header("host", "localhost:14293")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("grant_type=client_credentials"))
            .unwrap()
    };
    c.bench_function("endpoint/post_token", |b| {
        b.iter(|| {
            let response = runtime.block_on(app.clone().oneshot(request())).unwrap();
            assert_eq!(response.status(), 200);
            response
        })
    });
}

criterion_group!(benches, kafka_token, response, endpoint);
criterion_main!(benches);
