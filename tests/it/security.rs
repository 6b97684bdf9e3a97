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
    // HTTP/1.0 without Host (RFC 9112 §3.2: 400).
    let response = raw_request(sidecar.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    let description = response.assert_oauth_error(400, "invalid_request");
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
        // A well-formed pair that does not match names the flags that set it.
        if authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))
        {
            assert_eq!(
                body["error_description"],
                "the client id or secret does not match the sidecar's --client-id/--client-secret",
                "{authorization:?}"
            );
        }
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

/// Connections with a request in progress hold their slot: a connection over the limit waits
/// in the backlog until one ends (they are never closed to make room).
#[tokio::test]
async fn connections_over_the_limit_wait_for_a_busy_slot_to_free() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(
        SidecarEnv::new(&fake),
        &["--max-connections", "2", "--request-deadline", "30s"],
    );
    sidecar.wait_ready().await;
    // Two requests whose bodies never finish hold both slots (wait_ready's pool is closed by now).
    let busy = b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 30\r\n\r\ngrant_type=";
    let mut a = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
    a.write_all(busy).await.unwrap();
    let mut b = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
    b.write_all(busy).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
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

/// A connection waiting at the limit while every slot was busy is served as soon as one of
/// them finishes its request and sits idle in keep-alive, not after its idle timeout.
#[tokio::test]
async fn a_waiting_connection_is_served_once_a_busy_one_turns_idle() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(
        SidecarEnv::new(&fake),
        &[
            "--max-connections",
            "2",
            "--header-read-timeout",
            "60s",
            "--request-deadline",
            "60s",
        ],
    );
    sidecar.wait_ready().await;
    let head = b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 29\r\n\r\ngrant_type=";
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
        stream.write_all(head).await.unwrap();
        busy.push(tokio::io::BufReader::new(stream));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = tokio::spawn({
        let addr = sidecar.addr;
        async move { raw_request(addr, &get_with_host("localhost", "")).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!third.is_finished(), "a third connection was served");
    // Both finish their request and stay open, idle.
    for stream in &mut busy {
        stream
            .get_mut()
            .write_all(b"client_credentials")
            .await
            .unwrap();
        let response = crate::support::read_response(stream).await;
        assert_eq!(response.status, 200, "{response:?}");
    }
    let response = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a connection turned idle")
        .unwrap();
    assert_eq!(response.status, 200, "{response:?}");
}

/// One local process holding every slot with idle connections, reopened as they close, used to
/// make every request wait for the idle timeout (9-11 s with ~2,100 connections). At the
/// limit, the connection idle longest is closed for each new one, so a new request is served
/// at once. Bounded: 16 slots, 16 attacker tasks, at most 400 reconnections, stops itself.
#[tokio::test]
async fn idle_connections_give_way_to_new_requests_at_the_limit() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const SLOTS: usize = 16;
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(
        SidecarEnv::new(&fake),
        &[
            "--max-connections",
            &SLOTS.to_string(),
            "--header-read-timeout",
            "60s",
        ],
    );
    sidecar.wait_ready().await;
    let addr = sidecar.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let reconnections = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(tokio::sync::Semaphore::new(0));
    // Half the attacker's connections make one request and stay kept alive, half never speak.
    let attackers: Vec<_> = (0..SLOTS)
        .map(|i| {
            let (stop, reconnections, opened) =
                (stop.clone(), reconnections.clone(), opened.clone());
            tokio::spawn(async move {
                let mut first = true;
                while !stop.load(Ordering::Relaxed) && reconnections.load(Ordering::Relaxed) < 400 {
                    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                        break;
                    };
                    let mut stream = tokio::io::BufReader::new(stream);
                    if i % 2 == 0 {
                        let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
                        if stream.get_mut().write_all(request).await.is_err() {
                            continue;
                        }
                        let _ = crate::support::read_response(&mut stream).await;
                    }
                    if first {
                        opened.add_permits(1);
                        first = false;
                    } else {
                        reconnections.fetch_add(1, Ordering::Relaxed);
                    }
                    // Idle until the server closes it (or the test ends), then reopen.
                    let mut buf = [0u8; 64];
                    let _ =
                        tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await;
                }
            })
        })
        .collect();
    let _ = tokio::time::timeout(Duration::from_secs(10), opened.acquire_many(SLOTS as u32))
        .await
        .expect("the attacker's connections opened");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every request is served while the slots are held and retaken; the idle timeout is 60 s.
    for _ in 0..5 {
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            raw_request(addr, &get_with_host("localhost", "")),
        )
        .await
        .expect("a request served while idle connections held every slot");
        assert_eq!(response.status, 200, "{response:?}");
    }
    // The first request found every slot held, so it closed one of the attacker's connections,
    // which the attacker reopened (later ones may find the slot a previous request left, so
    // the count is not one per request).
    let waited = Instant::now();
    while reconnections.load(Ordering::Relaxed) == 0 && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.abort();
    }
    assert!(
        reconnections.load(Ordering::Relaxed) >= 1,
        "the attacker's idle connections were not the ones closed: {} reconnections; {}",
        reconnections.load(Ordering::Relaxed),
        sidecar.logs()
    );
    assert!(
        sidecar.logs().contains("connection limit reached"),
        "{}",
        sidecar.logs()
    );
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

/// RFC 9112 §3.2: a request with no Host, more than one, or an invalid one is answered 400,
/// and only after that is a well-formed foreign Host refused with 403.
#[tokio::test]
async fn host_must_be_exactly_one_valid_header() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    sidecar.wait_ready().await;
    // Two Host lines: the second must not slip past a check of the first.
    for extra in ["Host: evil.example\r\n", "Host: localhost\r\n"] {
        let response = raw_request(sidecar.addr, &get_with_host("localhost", extra)).await;
        let description = response.assert_oauth_error(400, "invalid_request");
        assert!(
            description.contains("more than one Host header"),
            "{description}"
        );
    }
    let response = raw_request(sidecar.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    let description = response.assert_oauth_error(400, "invalid_request");
    assert!(description.contains("no Host header"), "{description}");
    for host in [
        "localhost:99999",
        "127.0.0.1:65536",
        "localhost:port",
        "a b",
    ] {
        let response = raw_request(sidecar.addr, &get_with_host(host, "")).await;
        let description = response.assert_oauth_error(400, "invalid_request");
        assert!(
            description.contains(&format!("Host `{host}` is not a valid host")),
            "{description}"
        );
    }
    let response = raw_request(sidecar.addr, &get_with_host("localhost:65535", "")).await;
    assert_eq!(response.status, 200, "{response:?}");
}

/// RFC 6749 §2.3.1: client credentials must not be sent in the request URI.
#[tokio::test]
async fn a_client_secret_in_the_query_string_is_refused_with_where_it_belongs() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(
        SidecarEnv::new(&fake)
            .set("GCP_KAFKA_AUTH_CLIENT_ID", "app")
            .set("GCP_KAFKA_AUTH_CLIENT_SECRET", "query-secret-1"),
        &[],
    );
    for path in [
        "/?grant_type=client_credentials&client_id=app&client_secret=query-secret-1",
        "/token?client_secret=wrong",
    ] {
        for method in ["GET", "POST"] {
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let response = raw_request(sidecar.addr, request.as_bytes()).await;
            let description = response.assert_oauth_error(400, "invalid_request");
            assert!(
                description.contains("client_secret must not be sent in the URL")
                    && description.contains("Authorization: Basic"),
                "{method} {path}: {description}"
            );
        }
    }
    // The same credentials in a Basic header are accepted.
    let response = client()
        .get(sidecar.url("/?grant_type=client_credentials"))
        .basic_auth("app", Some("query-secret-1"))
        .send()
        .await
        .unwrap();
    decode_response(response).await;
    assert!(!sidecar.logs().contains("query-secret-1"));
}

/// A body that cannot be read is the client's mistake (400, saying what was wrong); only a
/// body over the limit is 413, and a declared length over it is refused before `100 Continue`.
#[tokio::test]
async fn body_errors_are_400_and_oversized_bodies_413_without_100_continue() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    sidecar.wait_ready().await;
    let head = "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    // A chunk size that is not hexadecimal.
    let response = raw_request(
        sidecar.addr,
        format!("{head}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n").as_bytes(),
    )
    .await;
    let description = response.assert_oauth_error(400, "invalid_request");
    assert!(
        description.starts_with("the request body could not be read"),
        "{description}"
    );
    // A body shorter than its Content-Length: the client stops sending and half-closes.
    let mut stream = tokio::net::TcpStream::connect(sidecar.addr).await.unwrap();
    stream
        .write_all(format!("{head}Content-Length: 50\r\n\r\ngrant_type=").as_bytes())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .unwrap()
        .unwrap();
    let response = crate::support::parse_raw_response(&bytes);
    let description = response.assert_oauth_error(400, "invalid_request");
    assert!(
        description.starts_with("the request body could not be read"),
        "{description}"
    );
    // A declared length over the limit: 413 at once, no `100 Continue` first.
    let response = raw_request(
        sidecar.addr,
        format!("{head}Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n").as_bytes(),
    )
    .await;
    let description = response.assert_oauth_error(413, "invalid_request");
    assert!(description.contains("8192 bytes"), "{description}");
    // A chunked body that grows over the limit: still 413.
    let chunk = "a".repeat(5000);
    let response = raw_request(
        sidecar.addr,
        format!("{head}Transfer-Encoding: chunked\r\n\r\n1388\r\n{chunk}\r\n1388\r\n{chunk}\r\n0\r\n\r\n")
            .as_bytes(),
    )
    .await;
    response.assert_oauth_error(413, "invalid_request");
}

/// `X-Content-Type-Options: nosniff` on every answer: tokens, refusals, operations, deadline.
#[tokio::test]
async fn every_response_says_nosniff() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &["--request-deadline", "1s"]);
    sidecar.wait_ready().await;
    let requests: Vec<(Vec<u8>, u16)> = vec![
        (get_with_host("localhost", ""), 200),
        (get_with_host("evil.example", ""), 403),
        (get_with_host("localhost", "Origin: http://x\r\n"), 403),
        (
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            200,
        ),
        (
            b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            200,
        ),
        (
            b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            200,
        ),
        (
            b"DELETE / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            405,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
                .to_vec(),
            503,
        ),
    ];
    for (request, status) in requests {
        let response = raw_request(sidecar.addr, &request).await;
        assert_eq!(response.status, status, "{response:?}");
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{response:?}"
        );
    }
}

/// `--authenticate-operations`: `/readyz` and `/metrics` disclose the principal, expiry and
/// failure reasons, so they can be put behind the client credentials; `/healthz` stays open.
#[tokio::test]
async fn operations_endpoints_can_require_the_client_credentials() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(
        SidecarEnv::new(&fake)
            .set("GCP_KAFKA_AUTH_CLIENT_ID", "app")
            .set("GCP_KAFKA_AUTH_CLIENT_SECRET", "ops-secret-1"),
        &["--authenticate-operations"],
    );
    let client = client();
    for path in ["/readyz", "/metrics"] {
        let response = client.get(sidecar.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "{path}");
        let response = client
            .get(sidecar.url(path))
            .basic_auth("app", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    let started = Instant::now();
    loop {
        let response = client
            .get(sidecar.url("/readyz"))
            .basic_auth("app", Some("ops-secret-1"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["status"], "ready");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = client
        .get(sidecar.url("/metrics"))
        .basic_auth("app", Some("ops-secret-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let health = client.get(sidecar.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Without client credentials the option has nothing to require.
    let (code, _, stderr) = crate::support::run(
        &SidecarEnv::new(&fake),
        &["serve", "--port", "0", "--authenticate-operations"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--authenticate-operations needs --client-id"),
        "{stderr}"
    );
}

/// Runs `serve` with `env` and `args`, which must refuse to start within 10 s; returns stderr.
async fn serve_refuses_to_start(env: &SidecarEnv, args: &[&str]) -> String {
    let mut all = vec!["serve", "--port", "0"];
    all.extend_from_slice(args);
    let mut command = tokio::process::Command::from(crate::support::command(env, &all));
    command.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .unwrap_or_else(|_| panic!("`serve {args:?}` still running after 10 s"))
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    String::from_utf8(output.stderr).unwrap()
}

/// A FIFO used to hang the start with nothing logged, and `/dev/zero` to exhaust memory:
/// secret files must be regular files of at most 64 KiB.
#[cfg(unix)]
#[tokio::test]
async fn the_client_secret_file_must_be_a_small_regular_file() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake).set("GCP_KAFKA_AUTH_CLIENT_ID", "app");
    let fifo = env.home().join("secret-fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let big = env.home().join("big-secret");
    std::fs::write(&big, "a".repeat(64 * 1024 + 1)).unwrap();
    let fifo = fifo.display().to_string();
    let big = big.display().to_string();
    for (path, message) in [
        (fifo.as_str(), format!("cannot read the client secret file {fifo}: it is a FIFO (named pipe), not a regular file")),
        (big.as_str(), format!("cannot read the client secret file {big}: it is larger than 65536 bytes, the limit for a client secret file")),
        ("/dev/zero", "cannot read the client secret file /dev/zero: it is a character device, not a regular file".to_owned()),
    ] {
        let stderr = serve_refuses_to_start(&env, &["--client-secret-file", path]).await;
        assert!(stderr.contains(&message), "{path}: {stderr}");
    }
}

/// The credentials file and `credential_source.file` are read on every refresh: both capped.
#[tokio::test]
async fn credential_files_over_64_kib_are_refused_naming_the_limit() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let big = env.home().join("big.json");
    std::fs::write(&big, format!("{{{}}}", " ".repeat(64 * 1024))).unwrap();
    let sidecar = Sidecar::start(
        env.set("GOOGLE_APPLICATION_CREDENTIALS", big.display().to_string()),
        &[],
    );
    let response = raw_request(sidecar.addr, &get_with_host("localhost", "")).await;
    let description = response.assert_oauth_error(400, "invalid_grant");
    assert!(
        description.contains(&format!(
            "cannot read {}: it is larger than 65536 bytes, the limit for a credentials file",
            big.display()
        )),
        "{description}"
    );
    // A subject token file, read before every exchange.
    let env = SidecarEnv::new(&fake);
    let subject_file = env.home().join("oidc-token");
    std::fs::write(&subject_file, "a".repeat(64 * 1024 + 1)).unwrap();
    env.write_gcloud_adc(&fake.external_account_json(
        &subject_file.display().to_string(),
        Some("kafka-client@test-project.iam.gserviceaccount.com"),
    ));
    let sidecar = Sidecar::start(env, &[]);
    let response = raw_request(sidecar.addr, &get_with_host("localhost", "")).await;
    let description = response.assert_oauth_error(400, "invalid_grant");
    assert!(
        description.contains("it is larger than 65536 bytes, the limit for a subject token file"),
        "{description}"
    );
}

/// A symbolic-link loop used to be reported as "does not exist".
#[cfg(unix)]
#[tokio::test]
async fn a_symlink_loop_in_google_application_credentials_is_named() {
    let fake = FakeGoogle::start().await;
    let env = SidecarEnv::new(&fake);
    let a = env.home().join("a.json");
    let b = env.home().join("b.json");
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    let sidecar = Sidecar::start(
        env.set("GOOGLE_APPLICATION_CREDENTIALS", a.display().to_string()),
        &[],
    );
    let response = raw_request(sidecar.addr, &get_with_host("localhost", "")).await;
    let description = response.assert_oauth_error(400, "invalid_grant");
    assert!(
        description.contains(&format!(
            "GOOGLE_APPLICATION_CREDENTIALS names {}, which is a symbolic link loop (ELOOP)",
            a.display()
        )),
        "{description}"
    );
}

/// A client secret other users can read is not a secret: warn at start.
#[cfg(unix)]
#[tokio::test]
async fn a_world_readable_client_secret_file_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let fake = FakeGoogle::start().await;
    for (mode, warned) in [(0o644, true), (0o640, false), (0o600, false)] {
        let env = SidecarEnv::new(&fake).set("GCP_KAFKA_AUTH_CLIENT_ID", "app");
        let file = env.home().join("secret");
        std::fs::write(&file, "s3cret-value\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let sidecar = Sidecar::start(env, &["--client-secret-file", file.to_str().unwrap()]);
        let logs = sidecar.logs();
        let expected = format!(
            "the client secret file {} is readable by every user on this host (mode 644); restrict it with chmod 600",
            file.display()
        );
        assert_eq!(logs.contains(&expected), warned, "mode {mode:o}: {logs}");
    }
}

/// Clients that try `::1` first for `localhost` (Python, Go, Java with preferIPv6Addresses)
/// would send their secret to whoever binds `[::1]:PORT`: by default the sidecar holds both.
#[tokio::test]
async fn the_default_bind_holds_both_loopback_families_so_neither_can_be_squatted() {
    let fake = FakeGoogle::start().await;
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    let port = sidecar.addr.port();
    assert_eq!(sidecar.addr.ip().to_string(), "127.0.0.1");
    // A second process (this test) cannot take either family's port.
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let err = std::net::TcpListener::bind(&addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{addr}");
    }
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let response = client()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap();
        decode_response(response).await;
    }
    let logs = sidecar.logs();
    assert!(
        logs.contains(&format!(
            "token endpoint is http://127.0.0.1:{port} (also http://[::1]:{port})"
        )),
        "{logs}"
    );
    // --bind still picks one address: the other family's port stays free.
    let single = Sidecar::start(SidecarEnv::new(&fake), &["--bind", "127.0.0.1"]);
    let squatter = std::net::TcpListener::bind(format!("[::1]:{}", single.addr.port()));
    assert!(squatter.is_ok(), "{squatter:?}");
    drop(squatter);
    // A port already held on ::1 is a refusal to start, not a half-bound sidecar.
    let squatter = std::net::TcpListener::bind("[::1]:0").unwrap();
    let taken = squatter.local_addr().unwrap().port().to_string();
    let mut command = tokio::process::Command::from(crate::support::command(
        &SidecarEnv::new(&fake),
        &["serve", "--port", &taken],
    ));
    let output = tokio::time::timeout(Duration::from_secs(10), command.kill_on_drop(true).output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "cannot listen on [::1]:{taken}: another process holds it"
        )),
        "{stderr}"
    );
}
