//! Soak: steady load on the real binary while the fake Google fails in a rotating pattern and
//! tokens expire every 20 s. Every 200 must carry a valid, unexpired token Google issued;
//! every other answer a well-formed OAuth2 error; memory must stay flat.
//!
//! Cycles of 10 s of rotating faults, an outage that lasts until the cached token has run out
//! (503s asserted), and a healthy upstream until the sidecar has recovered by itself (a 200
//! asserted); every cycle must show both. CI runs one cycle (24 s leave room for no second). The long run: `GCP_KAFKA_AUTH_SOAK_SECS=600 cargo test --release --test it soak:: -- --nocapture`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
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
    last_unavailable: Option<Instant>,
    errors: BTreeMap<(u16, String), u64>,
}

/// Lifetime of the fake's tokens: short, so the soak crosses a refresh every ~10 s.
const TOKEN_LIFETIME: Duration = Duration::from_secs(20);
/// Longest retry delay of the cache (`CacheTiming::backoff_max`'s default).
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Waits until `seen` (read from the tally) is after `since`, at most `limit`; false if not.
async fn seen_after(
    tally: &Mutex<Tally>,
    seen: impl Fn(&Tally) -> Option<Instant>,
    since: Instant,
    limit: Duration,
) -> bool {
    let deadline = since + limit;
    loop {
        if seen(&tally.lock().unwrap()).is_some_and(|at| at > since) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_through_rotating_upstream_faults_serves_only_valid_tokens() {
    let duration = soak_duration();
    let fake = FakeGoogle::start().await;
    fake.set_token_lifetime(TOKEN_LIFETIME);
    let sidecar = Sidecar::start(SidecarEnv::new(&fake), &[]);
    sidecar.wait_ready().await;
    let fake = Arc::new(fake);
    let stop_at = Instant::now() + duration;

    // Rotating faults, 700 ms each (healthy slots in between let refreshes succeed).
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
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut clients = tokio::task::JoinSet::new();
    let done = Arc::new(AtomicBool::new(false));
    for _ in 0..CLIENTS {
        let (addr, fake, tally, done) = (sidecar.addr, fake.clone(), tally.clone(), done.clone());
        clients.spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            while !done.load(Ordering::Relaxed) {
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
                    let mut tally = tally.lock().unwrap();
                    if response.status == 503 {
                        assert!(response.header("retry-after").is_some(), "{response:?}");
                        tally.last_unavailable = Some(Instant::now());
                    }
                    *tally
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

    // The cycles. Each waits for what it must see within a bound derived from the cache's
    // rules, not from the machine's speed: a served token is unusable at the latest when it
    // expires, so an outage longer than TOKEN_LIFETIME must produce 503s; after the outage the
    // next attempt comes within BACKOFF_MAX, and the one after that if the first lands on the
    // fake's last refusal.
    let controller = tokio::spawn({
        let (fake, tally) = (fake.clone(), tally.clone());
        async move {
            let mut cycles = 0;
            // A cycle takes about 20 s (10 s of rotation, the token's last ~10 s of use, a
            // retry): start another only if it can end near `stop_at`.
            while cycles == 0 || Instant::now() + Duration::from_secs(20) < stop_at {
                cycles += 1;
                let rotation_ends = Instant::now() + Duration::from_secs(10);
                let mut i = 0;
                while Instant::now() < rotation_ends {
                    fake.set_fault(rotation[i % rotation.len()].clone());
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(700)).await;
                }
                fake.set_fault(Some(Fault::Status(503)));
                let outage_began = Instant::now();
                assert!(
                    seen_after(&tally, |t| t.last_unavailable, outage_began, TOKEN_LIFETIME).await,
                    "cycle {cycles}: no 503 within {TOKEN_LIFETIME:?} of the outage's start"
                );
                fake.set_fault(None);
                let outage_ended = Instant::now();
                assert!(
                    seen_after(&tally, |t| t.last_ok, outage_ended, 2 * BACKOFF_MAX).await,
                    "cycle {cycles}: no token served within {:?} of the outage's end",
                    2 * BACKOFF_MAX
                );
            }
            cycles
        }
    });

    // RSS once a second.
    let mut rss = Vec::new();
    while !controller.is_finished() {
        rss.push(memory_kib(sidecar.pid()).0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cycles = controller.await.unwrap();
    done.store(true, Ordering::Relaxed);
    while let Some(result) = clients.join_next().await {
        result.unwrap();
    }
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
        "soak: {duration:?}, {cycles} cycles, {CLIENTS} clients, {} tokens served, errors {:?}, {refreshes} upstream token requests, RSS after warm-up {low}..{high} KiB, peak {peak} KiB",
        tally.ok, tally.errors
    );
    assert!(tally.ok > 0);
    assert!(
        tally
            .errors
            .contains_key(&(503, "temporarily_unavailable".to_owned())),
        "{:?}",
        tally.errors
    );
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
