//! Soak: steady load on the real binary while the fake Google fails in a rotating pattern and
//! tokens expire every 20 s. Every 200 must carry a valid, unexpired token Google issued;
//! every other answer a well-formed OAuth2 error; memory must stay flat.
//!
//! CI runs 24 s (one rotation, one outage, one recovery). The long run: `GCP_KAFKA_AUTH_SOAK_SECS=600 cargo test --release --test it soak:: -- --nocapture`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{Sidecar, SidecarEnv, memory_kib, read_response};
use fake_google::{FakeGoogle, Fault};
use tokio::io::{AsyncWriteExt as _, BufReader};

const CLIENTS: usize = 32;

fn soak_duration() -> Duration {
    let secs = std::env::var("GCP_KAFKA_AUTH_SOAK_SECS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("GCP_KAFKA_AUTH_SOAK_SECS is a number of seconds")
        })
        .unwrap_or(24);
    Duration::from_secs(secs)
}

#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    last_ok: Option<Instant>,
    errors: BTreeMap<(u16, String), u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_through_rotating_upstream_faults_serves_only_valid_tokens() {
    let duration = soak_duration();
    let fake = FakeGoogle::start().await;
    // Short tokens so the soak crosses many refreshes (every ~10 s).
    fake.set_token_lifetime(Duration::from_secs(20));
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    sidecar.wait_ready().await;
    let fake = Arc::new(fake);
    let stop_at = Instant::now() + duration;

    // A 24 s cycle: 10 s of faults rotating every 700 ms (healthy slots in between let
    // refreshes succeed), 6 s of outage (the cached token runs out: 503s), 8 s of rotation.
    let rotation = [
        None,
        Some(Fault::Status(503)),
        Some(Fault::Status(429)),
        None,
        Some(Fault::Garbage),
        Some(Fault::ResetMidBody),
        None,
        Some(Fault::ExpiresIn(-1)),
        Some(Fault::ExpiresIn(1_000_000_000)),
        None,
        Some(Fault::Status(500)),
        Some(Fault::Slow(Duration::from_millis(300))),
        Some(Fault::InvalidGrant),
        None,
    ];
    let outage_ended = Arc::new(Mutex::new(None::<Instant>));
    let faults = tokio::spawn({
        let fake = fake.clone();
        let outage_ended = outage_ended.clone();
        async move {
            let mut i = 0;
            let started = Instant::now();
            while Instant::now() < stop_at {
                let outage = (10..16).contains(&(started.elapsed().as_secs() % 24));
                if outage {
                    *outage_ended.lock().unwrap() = Some(Instant::now());
                }
                fake.set_fault(if outage {
                    Some(Fault::Status(503))
                } else {
                    rotation[i % rotation.len()].clone()
                });
                i += 1;
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
            fake.set_fault(None);
        }
    });

    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (addr, fake, tally) = (sidecar.addr, fake.clone(), tally.clone());
        clients.spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            while Instant::now() < stop_at {
                write
                    .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    .await
                    .unwrap();
                let response = read_response(&mut read).await;
                if response.status == 200 {
                    check_token(&response.json(), &fake);
                    let mut tally = tally.lock().unwrap();
                    tally.ok += 1;
                    tally.last_ok = Some(Instant::now());
                } else {
                    let error = response.assert_oauth_error(response.status, {
                        // Transient trouble or rejected credentials: nothing else.
                        assert!(matches!(response.status, 503 | 400), "{response:?}");
                        if response.status == 503 {
                            "temporarily_unavailable"
                        } else {
                            "invalid_grant"
                        }
                    });
                    assert!(!error.is_empty());
                    if response.status == 503 {
                        assert!(response.header("retry-after").is_some(), "{response:?}");
                    }
                    *tally
                        .lock()
                        .unwrap()
                        .errors
                        .entry((
                            response.status,
                            response.json()["error"].as_str().unwrap().to_owned(),
                        ))
                        .or_default() += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    // RSS once a second.
    let mut rss = Vec::new();
    while Instant::now() < stop_at {
        rss.push(memory_kib(sidecar.pid()).0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    while let Some(result) = clients.join_next().await {
        result.unwrap();
    }
    faults.await.unwrap();
    let (_, peak) = memory_kib(sidecar.pid());
    let tally = tally.lock().unwrap();
    let refreshes = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/token"))
        .count();
    let after_warmup = &rss[rss.len() / 4..];
    let (low, high) = (
        *after_warmup.iter().min().unwrap(),
        *after_warmup.iter().max().unwrap(),
    );
    eprintln!(
        "soak: {duration:?}, {CLIENTS} clients, {} tokens served, errors {:?}, {refreshes} upstream token requests, RSS after warm-up {low}..{high} KiB, peak {peak} KiB",
        tally.ok, tally.errors
    );
    assert!(tally.ok > 0);
    // Recovered after the last outage by itself.
    let outage_ended = outage_ended.lock().unwrap().expect("an outage happened");
    // Recovered by itself: the retry backoff is capped at 30 s.
    if stop_at.saturating_duration_since(outage_ended) > Duration::from_secs(31) {
        assert!(
            tally.last_ok.unwrap() > outage_ended,
            "no token served after the last outage"
        );
    }
    // Flat: growth after warm-up stays within 4 MiB, whatever the duration.
    assert!(high - low < 4 * 1024, "RSS grew from {low} to {high} KiB");
}

/// A served token must be one the fake issued, unexpired, with a non-empty third part.
fn check_token(body: &serde_json::Value, fake: &FakeGoogle) {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    let expires_in = body["expires_in"].as_u64().expect("integer expires_in");
    assert!(expires_in >= 10, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let claims: serde_json::Value =
        serde_json::from_slice(&STANDARD_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    assert!(!raw.is_empty());
    let issued = fake.lookup(&raw).expect("a token the fake issued");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        issued.expires_at_unix > now + 5,
        "served a token about to expire"
    );
    assert!(claims["exp"].as_u64().unwrap() <= issued.expires_at_unix);
    assert_eq!(claims["sub"], issued.principal);
}
