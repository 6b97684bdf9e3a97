//! Who may fetch a token from the real binary: Host checks (DNS rebinding), browsers, client
//! authentication, IPv6 loopback, and the connection limits, over real sockets.

use std::time::{Duration, Instant};

use crate::support::{Sidecar, SidecarEnv, decode_response, get_with_host, raw_request};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use fake_google::{FakeGoogle, Fault};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn loopback_hosts_are_answered_and_foreign_hosts_refused_before_any_credential_work() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(
        SidecarEnv::new(&fake),
        &["--allowed-host", "kafka-auth.internal"],
    );
    sidecar.wait_ready().await;
    let port = sidecar.addr.port();
    for host in [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        "127.8.9.10".to_owned(),
        format!("[::1]:{port}"),
        "KAFKA-AUTH.internal:80".to_owned(),
    ] {
        let response = raw_request(sidecar.addr, &get_with_host(&host, "")).await;
        assert_eq!(response.status, 200, "Host {host}: {response:?}");
        assert!(!response.json()["access_token"].as_str().unwrap().is_empty());
    }
    // The upstream now hangs: a refusal that waited for credentials would take 15 s.
    fake.set_fault(Some(Fault::Hang));
    for host in [
        "attacker.example".to_owned(),
        format!("attacker.example:{port}"),
        "127.0.0.1.nip.io".to_owned(),
        "localhost.attacker.example".to_owned(),
        "kafka-auth.internal.attacker.example".to_owned(),
        "10.1.2.3".to_owned(),
    ] {
        for path in ["/", "/readyz", "/healthz"] {
            let started = Instant::now();
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            let response = raw_request(sidecar.addr, request.as_bytes()).await;
            let description = response.assert_oauth_error(403, "access_denied");
            assert!(started.elapsed() < Duration::from_secs(2));
            assert!(
                description.contains(&format!("Host `{host}`")),
                "{description}"
            );
            assert!(description.contains("--allowed-host"), "{description}");
        }
    }
    // HTTP/1.0 without Host.
    let response = raw_request(sidecar.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    let description = response.assert_oauth_error(403, "access_denied");
    assert!(description.contains("no Host header"), "{description}");
    // An absolute-form request line naming a foreign authority is refused too.
    let response = raw_request(
        sidecar.addr,
        b"GET http://attacker.example/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    response.assert_oauth_error(403, "access_denied");
}

#[tokio::test]
async fn browser_requests_are_refused_whatever_their_host() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    for (extra, header) in [
        ("Origin: http://attacker.example\r\n", "origin"),
        ("Origin: null\r\n", "origin"),
        ("Origin: http://localhost:14293\r\n", "origin"),
        ("Sec-Fetch-Site: same-origin\r\n", "sec-fetch-site"),
        ("Sec-Fetch-Mode: no-cors\r\n", "sec-fetch-mode"),
    ] {
        let response = raw_request(sidecar.addr, &get_with_host("localhost", extra)).await;
        let description = response.assert_oauth_error(403, "access_denied");
        assert!(
            description.contains(&format!("`{header}`")) && description.contains("browser"),
            "{description}"
        );
    }
    // A POST a page could send with fetch(): refused the same way.
    let response = client()
        .post(sidecar.url("/"))
        .header("origin", "http://attacker.example")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn client_authentication_accepts_both_alphabets_and_form_fields_and_nothing_else() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    // A secret whose Base64 differs between the alphabets (kafka-clients 3.1–3.3.1 used the
    // URL-safe one, KAFKA-14496).
    let secret = "s3cr>t?~>";
    let secret_file = env.home().join("client-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let sidecar = Sidecar::start(
        env.set("GCP_KAFKA_AUTH_CLIENT_ID", "beam-job")
            .set("RUST_LOG", "trace"),
        &["--client-secret-file", secret_file.to_str().unwrap()],
    );
    sidecar.wait_ready().await;
    let client = client();
    let raw = format!("beam-job:{secret}");
    assert_ne!(STANDARD.encode(&raw), URL_SAFE.encode(&raw));
    for encoded in [STANDARD.encode(&raw), URL_SAFE.encode(&raw)] {
        let response = client
            .post(sidecar.url("/"))
            .header("authorization", format!("Basic {encoded}"))
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        decode_response(response).await;
    }
    // librdkafka-style form fields.
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", "beam-job")
        .append_pair("client_secret", secret)
        .finish();
    decode_response(
        client
            .post(sidecar.url("/"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let wrong = [
        Some(format!("Basic {}", STANDARD.encode("beam-job:wrong"))),
        Some(format!(
            "Basic {}",
            STANDARD.encode(format!("other:{secret}"))
        )),
        Some(format!(
            "Basic {}",
            STANDARD.encode(format!("beam-job:{secret}x"))
        )),
        Some("Basic dW51c2VkOnVudXNlZA==".to_owned()), // unused:unused, the docs' default
        Some("Bearer abc".to_owned()),
        None,
    ];
    for authorization in wrong {
        let mut request = client
            .post(sidecar.url("/"))
            .body("grant_type=client_credentials");
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{authorization:?}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Basic realm=\"gcp-kafka-auth-handler\""
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "{authorization:?}");
    }
    // Health endpoints need no client credentials.
    let health = client.get(sidecar.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // The secret is in no log line, even at trace level. The lines reach `logs()` through a
    // reader thread, which a loaded machine can delay past the answers: wait for the last one.
    assert!(
        sidecar.wait_for_log("token request refused", Duration::from_secs(10)),
        "{}",
        sidecar.logs()
    );
    let logs = sidecar.logs();
    assert!(!logs.contains(secret), "{logs}");
    assert!(!logs.contains(&STANDARD.encode(&raw)), "{logs}");
}

#[test]
fn client_authentication_flags_must_come_in_pairs() {
    for (args, message) in [
        (&["--client-id", "a"][..], "--client-id needs a secret"),
        (&["--client-secret", "b"][..], "no --client-id"),
        (
            &["--allowed-host", "bad host/"][..],
            "is not a host name or address",
        ),
    ] {
        let output = std::process::Command::new(crate::support::BIN)
            .args(["serve", "--port", "0"])
            .args(args)
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn ipv6_loopback_bind_serves_tokens() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &["--bind", "::1"]);
    assert_eq!(sidecar.addr.ip().to_string(), "::1");
    let response = client().get(sidecar.url("/")).send().await.unwrap();
    decode_response(response).await;
    let logs = sidecar.logs();
    assert!(!logs.contains("non-loopback"), "{logs}");
}

#[tokio::test]
async fn oversized_heads_are_refused_with_431() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let big = format!("X-Filler: {}\r\n", "a".repeat(20 * 1024));
    let response = raw_request(sidecar.addr, &get_with_host("localhost", &big)).await;
    assert_eq!(response.status, 431, "{response:?}");
    // Many small headers add up the same way.
    let many: String = (0..400)
        .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(50)))
        .collect();
    let response = raw_request(sidecar.addr, &get_with_host("localhost", &many)).await;
    assert_eq!(response.status, 431, "{response:?}");
}

/// Reads from `stream` until EOF; returns how long that took.
async fn time_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed_after_the_header_read_timeout() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &["--header-read-timeout", "1s"]);
    // Slowloris: one header byte every 300 ms never completes the head.
    let mut slow = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        for byte in b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), trickle).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut rest)).await;
    let closed_after = started.elapsed();
    assert!(
        closed_after < Duration::from_secs(4),
        "slow head held the connection {closed_after:?}"
    );
    // An idle kept-alive connection is closed after one answered request.
    let mut idle = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let waited = time_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn connections_over_the_limit_wait_for_a_free_slot() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(
        SidecarEnv::new(&fake),
        &["--max-connections", "2", "--header-read-timeout", "30s"],
    );
    sidecar.wait_ready().await;
    // Two connections that say nothing hold both slots (wait_ready's pool is closed by now).
    let a = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
    let b = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = tokio::spawn({
        let addr = sidecar.addr;
        async move { raw_request(addr, &get_with_host("localhost", "")).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!third.is_finished(), "a third connection was served");
    drop(a);
    let response = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    drop(b);
}

#[tokio::test]
async fn a_request_waiting_on_a_hung_google_is_answered_at_the_deadline() {
    let fake = FakeGoogle::start().await;
    fake.set_fault(Some(Fault::Hang));
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &["--request-deadline", "2s"]);
    let started = Instant::now();
    let response = raw_request(sidecar.addr, &get_with_host("localhost", "")).await;
    let took = started.elapsed();
    response.assert_oauth_error(503, "temporarily_unavailable");
    assert_eq!(response.header("retry-after"), Some("1"));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

/// Every credential type at `RUST_LOG=trace`: no access token, subject token, refresh token,
/// client secret or private key in any log line (the key-file and user cases are in
/// `sidecar::no_secret_reaches_the_logs_at_trace_level`).
#[tokio::test]
async fn no_secret_of_any_credential_type_reaches_the_logs_at_trace_level() {
    const TARGET: &str = "kafka-client@test-project.iam.gserviceaccount.com";
    let fake = FakeGoogle::start().await;
    let key = fake.service_account_key_json("source@test-project.iam.gserviceaccount.com");
    let workforce = fake.workforce_user_json("alice");
    let mut cases: Vec<(&str, Option<serde_json::Value>, Vec<String>)> = vec![
        ("metadata server", None, vec![]),
        (
            "impersonated_service_account",
            Some(fake.impersonated_service_account_json(TARGET, key.clone())),
            vec![pem_fragment(&key)],
        ),
        (
            "external_account_authorized_user",
            Some(workforce.clone()),
            vec![
                workforce["refresh_token"].as_str().unwrap().to_owned(),
                workforce["client_secret"].as_str().unwrap().to_owned(),
            ],
        ),
    ];
    let subject_token = fake.register_subject_token("ci-job-7");
    cases.push(("external_account", None, vec![subject_token.clone()]));
    for (name, file, mut secrets) in cases {
        let env = SidecarEnv::new(&fake).set("RUST_LOG", "trace");
        let env = match (name, file) {
            ("external_account", _) => {
                let subject_file = env.home().join("oidc-token");
                std::fs::write(&subject_file, &subject_token).unwrap();
                let file =
                    fake.external_account_json(&subject_file.display().to_string(), Some(TARGET));
                env.write_gcloud_adc(&file);
                env
            }
            (_, Some(file)) => {
                env.write_gcloud_adc(&file);
                env
            }
            (_, None) => env,
        };
        let env = if name == "external_account_authorized_user" {
            env.set(
                "GOOGLE_MANAGED_KAFKA_AUTH_PRINCIPAL",
                fake_google::workforce_principal("alice"),
            )
        } else {
            env
        };
        let sidecar = Sidecar::start(env, &[]);
        let decoded = decode_response(client().get(sidecar.url("/")).send().await.unwrap()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let logs = sidecar.logs();
        assert!(
            logs.contains("fetched a Google access token"),
            "{name}: {logs}"
        );
        assert!(logs.contains("TRACE"), "{name}: not at trace level");
        secrets.push(decoded.raw_token.clone());
        secrets.push(decoded.served.clone());
        for secret in secrets {
            assert!(
                secret.len() >= 8 && !logs.contains(&secret),
                "{name}: secret {secret:.12}... in logs"
            );
        }
    }
}

/// A 40-character run of a key's PEM body: any such run in the logs is a leak.
fn pem_fragment(key: &serde_json::Value) -> String {
    let pem = key["private_key"]
        .as_str()
        .unwrap()
        .replace("-----BEGIN PRIVATE KEY-----", "")
        .replace('\n', "");
    pem[..40].to_owned()
}
