//! What an operator sees: `/metrics` after known traffic, and the logs (JSON that parses, one
//! line per refresh and per failure, nothing per request at info, no secrets).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{Sidecar, SidecarEnv, decode_response, java_style_request};
use fake_google::{FakeGoogle, Fault};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An OpenMetrics text exposition, parsed: sample (`name{labels}`) → value. Panics on any
/// line that is not a comment or a well-formed sample, and on a missing `# EOF`.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no EOF marker:\n{text}");
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# ") {
            let mut words = line.split(' ');
            let kind = words.nth(1).unwrap();
            assert!(
                ["HELP", "TYPE", "UNIT", "EOF"].contains(&kind),
                "bad comment: {line}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample: {line}"));
        let metric = name.split('{').next().unwrap();
        assert!(
            metric.starts_with("gcp_kafka_auth_")
                && metric
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "bad metric name: {line}"
        );
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        assert!(
            samples.insert(name.to_owned(), value).is_none(),
            "duplicate: {line}"
        );
    }
    samples
}

async fn scrape(client: &reqwest::Client, sidecar: &Sidecar) -> BTreeMap<String, f64> {
    let response = client.get(sidecar.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    parse_exposition(&response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic_exactly() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let client = client();
    // The first token request waits for the first refresh, so no /readyz polling is needed.
    for path in ["/", "/oauth/token", "/x"] {
        decode_response(java_style_request(&client, &sidecar.url(path)).await).await;
    }
    let put = client.put(sidecar.url("/")).send().await.unwrap();
    assert_eq!(put.status(), 405);
    let unsupported = client
        .post(sidecar.url("/"))
        .body("grant_type=password")
        .send()
        .await
        .unwrap();
    assert_eq!(unsupported.status(), 400);
    for _ in 0..2 {
        assert_eq!(
            client
                .get(sidecar.url("/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        client
            .get(sidecar.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let first = scrape(&client, &sidecar).await;
    // A request is counted when its answer is complete, so a scrape does not see itself.
    assert_eq!(
        first.get(r#"gcp_kafka_auth_http_requests_total{path="metrics",status="200"}"#),
        None
    );
    let second = scrape(&client, &sidecar).await;
    let expected_requests = [
        (r#"{path="token",status="200"}"#, 3.0),
        (r#"{path="token",status="405"}"#, 1.0),
        (r#"{path="token",status="400"}"#, 1.0),
        (r#"{path="healthz",status="200"}"#, 2.0),
        (r#"{path="readyz",status="200"}"#, 1.0),
        (r#"{path="metrics",status="200"}"#, 1.0),
    ];
    let requests: BTreeMap<&str, f64> = second
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("gcp_kafka_auth_http_requests_total")
                .map(|labels| (labels, *v))
        })
        .collect();
    assert_eq!(requests, expected_requests.into_iter().collect());

    assert_eq!(
        second[r#"gcp_kafka_auth_token_refreshes_total{result="ok"}"#],
        1.0
    );
    assert_eq!(
        second[r#"gcp_kafka_auth_token_refreshes_total{result="error"}"#],
        0.0
    );
    assert_eq!(
        second[r#"gcp_kafka_auth_upstream_fetch_duration_seconds_count{result="ok"}"#],
        1.0
    );
    assert_eq!(
        second[r#"gcp_kafka_auth_upstream_fetch_duration_seconds_bucket{le="+Inf",result="ok"}"#],
        1.0
    );
    // A loopback fake answers well within 10 s.
    assert_eq!(
        second[r#"gcp_kafka_auth_upstream_fetch_duration_seconds_bucket{le="10.0",result="ok"}"#],
        1.0
    );
    assert!(second[r#"gcp_kafka_auth_upstream_fetch_duration_seconds_sum{result="ok"}"#] < 10.0);
    assert_eq!(second["gcp_kafka_auth_token_ready"], 1.0);
    let left = second["gcp_kafka_auth_token_expires_in_seconds"];
    assert!((3580.0..=3600.0).contains(&left), "{left}");
    assert_eq!(
        second["gcp_kafka_auth_last_refresh_failure_timestamp_seconds"],
        0.0
    );
    assert_eq!(
        second[&format!(
            r#"gcp_kafka_auth_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )],
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_record_failed_refreshes_and_when_they_happened() {
    let fake = FakeGoogle::start().await;
    fake.fail_next(2, Fault::Status(503));
    let before = unix_now();
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let client = client();
    // Two failures (backoff ~0.5–1 s, then ~1–2 s), then the third attempt succeeds.
    sidecar.wait_ready().await;
    let metrics = scrape(&client, &sidecar).await;
    assert_eq!(
        metrics[r#"gcp_kafka_auth_token_refreshes_total{result="error"}"#],
        2.0
    );
    assert_eq!(
        metrics[r#"gcp_kafka_auth_token_refreshes_total{result="ok"}"#],
        1.0
    );
    assert_eq!(
        metrics[r#"gcp_kafka_auth_upstream_fetch_duration_seconds_count{result="error"}"#],
        2.0
    );
    let failed_at = metrics["gcp_kafka_auth_last_refresh_failure_timestamp_seconds"] as u64;
    assert!(
        failed_at >= before && failed_at <= unix_now(),
        "{failed_at} not in [{before}, now]"
    );
    assert_eq!(metrics["gcp_kafka_auth_token_ready"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_no_token_while_google_fails() {
    let fake = FakeGoogle::start().await;
    fake.set_fault(Some(Fault::Status(503)));
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let client = client();
    assert!(sidecar.wait_for_log("could not refresh", Duration::from_secs(10)));
    let metrics = scrape(&client, &sidecar).await;
    assert_eq!(metrics["gcp_kafka_auth_token_ready"], 0.0);
    assert_eq!(metrics["gcp_kafka_auth_token_expires_in_seconds"], 0.0);
    assert_eq!(
        metrics[r#"gcp_kafka_auth_token_refreshes_total{result="ok"}"#],
        0.0
    );
    assert!(metrics[r#"gcp_kafka_auth_token_refreshes_total{result="error"}"#] >= 1.0);
    let readyz = client.get(sidecar.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    let metrics = scrape(&client, &sidecar).await;
    assert_eq!(
        metrics[r#"gcp_kafka_auth_http_requests_total{path="readyz",status="503"}"#],
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_hold_one_line_per_refresh_and_no_secrets() {
    let fake = FakeGoogle::start().await;
    let email = "kafka-writer@test-project.iam.gserviceaccount.com";
    let env = SidecarEnv::new(&fake);
    let key_json = fake.service_account_key_json(email);
    let key = env.write_file("key.json", &key_json);
    fake.fail_next(1, Fault::Status(503));
    let sidecar = Sidecar::start(
        env.set("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string()),
        &[],
    );
    let client = client();
    // The first attempt fails and a request would get 503 during the backoff.
    sidecar.wait_ready().await;
    let decoded = decode_response(java_style_request(&client, &sidecar.url("/")).await).await;
    let token_response = java_style_request(&client, &sidecar.url("/")).await;
    let kafka_token = token_response.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The reader thread may still be behind the process: wait until it has the refresh line.
    assert!(sidecar.wait_for_log("fetched a Google access token", Duration::from_secs(5)));
    let lines_after_first_requests = sidecar.json_logs().len();
    // Many requests, good and bad: none of them is worth a line at info.
    for _ in 0..20 {
        java_style_request(&client, &sidecar.url("/")).await;
        client.put(sidecar.url("/")).send().await.unwrap();
        client.get(sidecar.url("/readyz")).send().await.unwrap();
        client.get(sidecar.url("/metrics")).send().await.unwrap();
    }
    assert_eq!(sidecar.json_logs().len(), lines_after_first_requests);

    let logs = sidecar.json_logs();
    let messages: Vec<&str> = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages
            .iter()
            .filter(|m| **m == "could not refresh the Google access token")
            .count(),
        1,
        "{messages:?}"
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| **m == "fetched a Google access token")
            .count(),
        1,
        "{messages:?}"
    );
    for line in &logs {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    let failure = logs
        .iter()
        .find(|l| l["message"] == "could not refresh the Google access token")
        .unwrap();
    assert_eq!(failure["level"], "WARN");
    let fetched = logs
        .iter()
        .find(|l| l["message"] == "fetched a Google access token")
        .unwrap();
    assert_eq!(fetched["level"], "INFO");
    assert_eq!(fetched["principal"], email);

    let all = sidecar.logs();
    let private_key = key_json["private_key"].as_str().unwrap();
    let key_body: String = private_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for (what, secret) in [
        ("the Google access token", decoded.raw_token.as_str()),
        ("the Kafka token", kafka_token.as_str()),
        (
            "the token's last part",
            kafka_token.rsplit('.').next().unwrap(),
        ),
        ("a line of the private key", &key_body[..64]),
    ] {
        assert!(!all.contains(secret), "{what} is in the logs:\n{all}");
    }
}
