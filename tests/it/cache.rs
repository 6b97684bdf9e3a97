//! The token cache, driven by a scripted credential source on tokio's paused clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gcp_kafka_auth_handler::credentials::{
    BoxFuture, CredentialError, CredentialSource, ErrorKind, GoogleToken,
};
use gcp_kafka_auth_handler::{Env, KafkaTokenProvider, Principal, TokenErrorKind};
use secrecy::SecretString;

/// What the scripted source does on one fetch.
#[derive(Clone)]
enum Step {
    /// A token living this many seconds, after an upstream delay.
    Token { lifetime_s: u64, delay: Duration },
    /// A failure of this kind.
    Fail(ErrorKind),
}

/// A credential source that plays a script; once the script is exhausted it repeats the last
/// step.
#[derive(Debug, Clone)]
struct Scripted(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    steps: Mutex<VecDeque<StepRepr>>,
    last: Mutex<Option<StepRepr>>,
    fetches: AtomicU32,
}

#[derive(Debug, Clone)]
struct StepRepr {
    lifetime_s: Option<u64>,
    delay: Duration,
    fail: Option<ErrorKind>,
}

impl From<Step> for StepRepr {
    fn from(step: Step) -> Self {
        match step {
            Step::Token { lifetime_s, delay } => StepRepr {
                lifetime_s: Some(lifetime_s),
                delay,
                fail: None,
            },
            Step::Fail(kind) => StepRepr {
                lifetime_s: None,
                delay: Duration::ZERO,
                fail: Some(kind),
            },
        }
    }
}

impl Scripted {
    fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self(Arc::new(Inner {
            steps: Mutex::new(steps.into_iter().map(StepRepr::from).collect()),
            last: Mutex::new(None),
            fetches: AtomicU32::new(0),
        }))
    }

    fn fetches(&self) -> u32 {
        self.0.fetches.load(Ordering::SeqCst)
    }
}

impl CredentialSource for Scripted {
    fn fetch_token(&self) -> BoxFuture<'_, Result<GoogleToken, CredentialError>> {
        Box::pin(async move {
            let n = self.0.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            let step = {
                let mut steps = self.0.steps.lock().unwrap();
                let mut last = self.0.last.lock().unwrap();
                if let Some(step) = steps.pop_front() {
                    *last = Some(step.clone());
                }
                last.clone().expect("script has a step")
            };
            tokio::time::sleep(step.delay).await;
            if let Some(kind) = step.fail {
                return Err(CredentialError::new(kind, format!("scripted failure {n}")));
            }
            Ok(GoogleToken {
                access_token: SecretString::from(format!("ya29.scripted.{n}")),
                expires_at: SystemTime::now() + Duration::from_secs(step.lifetime_s.unwrap()),
                principal_hint: None,
            })
        })
    }

    fn principal<'a>(
        &'a self,
        _token: &'a GoogleToken,
    ) -> BoxFuture<'a, Result<Principal, CredentialError>> {
        Box::pin(async { Ok(Principal::new("scripted@test.iam.gserviceaccount.com").unwrap()) })
    }

    fn describe(&self) -> String {
        "scripted source".to_owned()
    }
}

fn provider(source: &Scripted) -> KafkaTokenProvider {
    KafkaTokenProvider::builder()
        .with_env(Env::default())
        .with_credentials(source.clone())
        .build()
        .unwrap()
}

fn raw_token(token: &gcp_kafka_auth_handler::KafkaToken) -> String {
    use base64::Engine as _;
    let raw = token.expose().split('.').nth(2).unwrap();
    String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .unwrap(),
    )
    .unwrap()
}

/// Lets the spawned refresh task run until it blocks.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_cold_requests_share_one_upstream_call() {
    let source = Scripted::new([Step::Token {
        lifetime_s: 3600,
        delay: Duration::from_millis(500),
    }]);
    let provider = provider(&source);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.token().await.map(|t| raw_token(&t)) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "ya29.scripted.1");
    }
    assert_eq!(source.fetches(), 1);
}

#[tokio::test(start_paused = true)]
async fn refreshes_ahead_of_expiry_by_the_margin() {
    let source = Scripted::new([Step::Token {
        lifetime_s: 3600,
        delay: Duration::ZERO,
    }]);
    let provider = provider(&source);
    assert_eq!(
        raw_token(&provider.token().await.unwrap()),
        "ya29.scripted.1"
    );
    // Refresh is due at 3300 s less up to 5% jitter: between 3135 s and 3300 s.
    tokio::time::advance(Duration::from_secs(3130)).await;
    settle().await;
    assert_eq!(source.fetches(), 1);
    tokio::time::advance(Duration::from_secs(171)).await;
    settle().await;
    assert_eq!(source.fetches(), 2);
    assert_eq!(
        raw_token(&provider.token().await.unwrap()),
        "ya29.scripted.2"
    );
}

#[tokio::test(start_paused = true)]
async fn short_lived_tokens_are_refreshed_at_half_life_not_in_a_loop() {
    // Like a metadata server handing out its cached 4-minute token: lifetime < margin.
    let source = Scripted::new([Step::Token {
        lifetime_s: 240,
        delay: Duration::ZERO,
    }]);
    let provider = provider(&source);
    provider.token().await.unwrap();
    // Half-life refreshes at 114..120 s: 10 minutes hold 5 fetches at the most, 6 with the first.
    for _ in 0..600 {
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
    }
    let fetches = source.fetches();
    assert!((6..=7).contains(&fetches), "fetches = {fetches}");
}

#[tokio::test(start_paused = true)]
async fn serves_the_cached_token_while_refreshes_fail_then_503_after_expiry() {
    let source = Scripted::new([
        Step::Token {
            lifetime_s: 3600,
            delay: Duration::ZERO,
        },
        Step::Fail(ErrorKind::Transient),
    ]);
    let provider = provider(&source);
    assert_eq!(
        raw_token(&provider.token().await.unwrap()),
        "ya29.scripted.1"
    );
    // Past the refresh time, refreshes fail; the old token is still served.
    for _ in 0..35 {
        tokio::time::advance(Duration::from_secs(100)).await;
        settle().await;
    }
    assert!(source.fetches() >= 3, "fetches = {}", source.fetches());
    assert_eq!(
        raw_token(&provider.token().await.unwrap()),
        "ya29.scripted.1"
    );
    // 3500 s in; at 3591 s less than the 10 s floor is left, so nothing is served any more.
    tokio::time::advance(Duration::from_secs(91)).await;
    settle().await;
    let err = provider.token().await.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Unavailable);
    assert!(err.to_string().starts_with("scripted failure"), "{err}");
    assert!(
        err.retry_after() <= Duration::from_secs(10),
        "{:?}",
        err.retry_after()
    );
}

#[tokio::test(start_paused = true)]
async fn cold_failure_is_unavailable_then_recovers_by_itself() {
    let source = Scripted::new([
        Step::Fail(ErrorKind::Transient),
        Step::Fail(ErrorKind::Transient),
        Step::Token {
            lifetime_s: 3600,
            delay: Duration::ZERO,
        },
    ]);
    let provider = provider(&source);
    settle().await;
    let err = provider.token().await.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Unavailable);
    assert_eq!(err.to_string(), "scripted failure 1");
    // Backoff: 0.5-1 s, then 1-2 s; after 3 s the third attempt has succeeded.
    for _ in 0..30 {
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
    }
    assert_eq!(source.fetches(), 3);
    assert_eq!(
        raw_token(&provider.token().await.unwrap()),
        "ya29.scripted.3"
    );
    assert!(provider.is_ready());
}

#[tokio::test(start_paused = true)]
async fn rejected_credentials_are_reported_as_rejected() {
    let source = Scripted::new([Step::Fail(ErrorKind::Rejected)]);
    let provider = provider(&source);
    settle().await;
    let err = provider.token().await.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Rejected);
    assert!(!provider.is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_slow_upstream_makes_cold_requests_wait_at_most_the_request_wait() {
    let source = Scripted::new([Step::Token {
        lifetime_s: 3600,
        delay: Duration::from_secs(3600),
    }]);
    let provider = provider(&source);
    let started = tokio::time::Instant::now();
    let err = provider.token().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    assert_eq!(err.kind(), TokenErrorKind::Unavailable);
    assert_eq!(err.to_string(), "Google did not answer within 15 s");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_provider_stops_the_refresh_task() {
    let source = Scripted::new([Step::Token {
        lifetime_s: 60,
        delay: Duration::ZERO,
    }]);
    let provider = provider(&source);
    provider.token().await.unwrap();
    drop(provider);
    for _ in 0..10 {
        tokio::time::advance(Duration::from_secs(60)).await;
        settle().await;
    }
    assert_eq!(source.fetches(), 1);
}
