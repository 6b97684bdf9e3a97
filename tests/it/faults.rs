//! The real binary while Google misbehaves: every fault the fake can inject, a refused
//! connection, a hang, a revoked login; a cached token keeps being served, cold requests get
//! a well-formed OAuth2 error, and the sidecar recovers by itself.

use std::time::{Duration, Instant};

use crate::support::{
    RawResponse, Sidecar, SidecarEnv, assert_claims, decode_response, get_with_host, raw_request,
};
use fake_google::{AuthorizedUserOptions, FakeGoogle, Fault};

const MDS_EMAIL: &str = "sidecar@test-project.iam.gserviceaccount.com";

/// A token is served while it has at least this many seconds left (the cache's floor).
const SERVE_FLOOR_SECS: i64 = 10;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn assert_retryable_503(response: &RawResponse, context: &str) -> String {
    let description = response.assert_oauth_error(503, "temporarily_unavailable");
    let retry_after: u64 = response
        .header("retry-after")
        .unwrap_or_else(|| panic!("{context}: no Retry-After"))
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{context}: {retry_after}");
    description
}

/// One cold sidecar per fault, all at once: 503 + Retry-After while it lasts, a valid token
/// once the fake is healthy again.
#[tokio::test]
async fn every_transient_fault_is_a_503_then_recovers_by_itself() {
    let faults = [
        (Fault::Status(500), "answered HTTP 500"),
        (Fault::Status(502), "answered HTTP 502"),
        (Fault::Status(503), "answered HTTP 503"),
        (Fault::Status(429), "answered HTTP 429"),
        (Fault::Garbage, "metadata server"),
        (Fault::ResetMidBody, "metadata server"),
        (
            Fault::ExpiresIn(0),
            "expires in 0 s; accepted lifetimes are 20 s to 86400 s",
        ),
        (Fault::ExpiresIn(-100), "expires in -100 s"),
        (Fault::ExpiresIn(1_000_000_000), "expires in 1000000000 s"),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (fault, expected) in faults {
        tasks.spawn(async move {
            let fake = FakeGoogle::start().await;
            fake.set_fault(Some(fault.clone()));
            let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
            let response = raw_request(sidecar.addr, &get_with_host("localhost", "")).await;
            let description = assert_retryable_503(&response, &fault.to_string());
            assert!(description.contains(expected), "{fault}: {description}");
            fake.set_fault(None);
            sidecar.wait_ready().await;
            let decoded =
                decode_response(client().get(sidecar.url("/")).send().await.unwrap()).await;
            assert_claims(&decoded, &fake, MDS_EMAIL);
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_503_until_google_comes_up() {
    // A port nothing listens on (yet).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let placeholder = FakeGoogle::start().await;
    let env = SidecarEnv::new(&placeholder).set("GCE_METADATA_HOST", addr.to_string());
    let sidecar = Sidecar::start(env, &[]);
    let response = raw_request(sidecar.addr, &get_with_host("localhost", "")).await;
    let description = assert_retryable_503(&response, "refused");
    assert!(
        description.contains(&format!("http://{addr}"))
            && description.contains("connection failed"),
        "{description}"
    );
    let fake = FakeGoogle::start_on(addr).await.unwrap();
    sidecar.wait_ready().await;
    let decoded = decode_response(client().get(sidecar.url("/")).send().await.unwrap()).await;
    assert_claims(&decoded, &fake, MDS_EMAIL);
}

/// A hung metadata server holds a cold request for the metadata client's total timeout
/// (10 s), not forever: the failed fetch answers the waiting request, and the next attempt
/// recovers.
#[tokio::test]
async fn a_hung_metadata_server_holds_a_cold_request_at_most_its_10_s_timeout() {
    let fake = FakeGoogle::start().await;
    fake.set_fault(Some(Fault::Hang));
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let started = Instant::now();
    let response = raw_request(sidecar.addr, &get_with_host("localhost", "")).await;
    let took = started.elapsed();
    let description = assert_retryable_503(&response, "hang");
    assert!(
        took >= Duration::from_millis(9_500) && took < Duration::from_secs(12),
        "{took:?}"
    );
    assert!(
        description.contains("metadata server at http://"),
        "{description}"
    );
    assert!(description.contains("timed out"), "{description}");
    fake.set_fault(None);
    // The hung fetch ends at the metadata client's 10 s total timeout, then a retry succeeds.
    let recovering = Instant::now();
    while recovering.elapsed() < Duration::from_secs(15) {
        let r = client().get(sidecar.url("/readyz")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let decoded = decode_response(client().get(sidecar.url("/")).send().await.unwrap()).await;
    assert_claims(&decoded, &fake, MDS_EMAIL);
}

/// With a valid token cached, every failure mode of the refresh is invisible to clients.
#[tokio::test]
async fn a_cached_token_is_served_while_every_refresh_fails() {
    let fake = FakeGoogle::start().await;
    // 30 s tokens: the refresh starts at half-life (~15 s left) and the token stays servable
    // until 10 s are left.
    fake.set_token_lifetime(Duration::from_secs(30));
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let client = client();
    let response = client.get(sidecar.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let first = decode_response(response).await;
    let fetched = Instant::now();
    let rotation = [
        Fault::Status(503),
        Fault::Status(429),
        Fault::Garbage,
        Fault::ResetMidBody,
        Fault::ExpiresIn(-1),
        Fault::Hang,
    ];
    let mut served = 0;
    // Past the refresh point, until the token is two seconds from the serve floor. When to
    // stop is read from each answer's `expires_in` (the sidecar's own clock), so a slow machine
    // shortens nothing: the next request has those two seconds to arrive.
    loop {
        if served % 5 == 0 {
            fake.set_fault(Some(rotation[(served / 5) % rotation.len()].clone()));
        }
        let response = client.get(sidecar.url("/")).send().await.unwrap();
        if response.status() != 200 {
            panic!(
                "{:?} after the fetch, fault {}: {}\n{}",
                fetched.elapsed(),
                rotation[(served / 5) % rotation.len()],
                response.text().await.unwrap(),
                sidecar.logs()
            );
        }
        let decoded = decode_response(response).await;
        assert_eq!(decoded.raw_token, first.raw_token);
        served += 1;
        if decoded.expires_in <= SERVE_FLOOR_SECS + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(served >= 100, "{served}");
    let token_requests = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/token"))
        .count();
    assert!(token_requests >= 2, "no refresh was attempted");
    // Once Google is back, a new token replaces the old one. (A refresh still hanging may
    // outlast the old token: then a well-formed 503 until the retry.)
    fake.set_fault(None);
    let recovering = Instant::now();
    loop {
        let response = raw_request(sidecar.addr, &get_with_host("localhost", "")).await;
        if response.status == 503 {
            assert_retryable_503(&response, "recovery");
        } else if response.json()["access_token"] != first_token(&first) {
            let decoded = decode_response(client.get(sidecar.url("/")).send().await.unwrap()).await;
            assert_claims(&decoded, &fake, MDS_EMAIL);
            assert_ne!(decoded.raw_token, first.raw_token);
            break;
        }
        assert!(
            recovering.elapsed() < Duration::from_secs(15),
            "never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_revoked_login_is_a_400_with_the_fix_and_recovers_when_google_accepts_it() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let options = AuthorizedUserOptions {
        include_token_uri: true,
        ..Default::default()
    };
    env.write_gcloud_adc(&fake.authorized_user_json_with("dev@example.com", options));
    fake.set_fault(Some(Fault::InvalidGrant));
    let sidecar = Sidecar::start(env, &[]);
    let response = raw_request(sidecar.addr, &get_with_host("localhost", "")).await;
    let description = response.assert_oauth_error(400, "invalid_grant");
    assert!(
        description.contains("run `gcloud auth application-default login` again"),
        "{description}"
    );
    assert!(
        description.contains("Token has been expired or revoked"),
        "{description}"
    );
    fake.set_fault(None);
    let recovering = Instant::now();
    loop {
        let r = client().get(sidecar.url("/readyz")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            recovering.elapsed() < Duration::from_secs(15),
            "never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let decoded = decode_response(client().get(sidecar.url("/")).send().await.unwrap()).await;
    assert_claims(&decoded, &fake, "dev@example.com");
}

/// The `access_token` a decoded response carried, re-encoded as served.
fn first_token(decoded: &crate::support::Decoded) -> serde_json::Value {
    serde_json::Value::String(decoded.served.clone())
}

/// SIGTERM while a request waits for a slow Google: the request still gets its token, new
/// connections are refused, and the process exits within the drain time.
#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    let fake = FakeGoogle::start().await;
    fake.set_fault(Some(Fault::Slow(Duration::from_millis(1500))));
    let mut sidecar = Sidecar::start(SidecarEnv::new(&fake), &["--shutdown-timeout", "5s"]);
    let addr = sidecar.addr;
    let in_flight =
        tokio::spawn(async move { raw_request(addr, &get_with_host("localhost", "")).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = sidecar.terminate(Duration::from_secs(8));
        (status, sidecar.logs())
    });
    let response = in_flight.await.unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert!(!response.json()["access_token"].as_str().unwrap().is_empty());
    let (status, logs) = status.await.unwrap();
    let status = status.expect("exited within the drain time");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(logs.contains("finishing requests in flight"), "{logs}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
