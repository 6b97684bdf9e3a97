//! Feature `rdkafka`: real librdkafka clients whose OAUTHBEARER tokens come from the provider,
//! against the fake Google and a loopback listener that speaks just enough of the Kafka
//! protocol (ApiVersions, SaslHandshake, SaslAuthenticate) to capture what librdkafka sends.
//!
//! Run with `cargo test --features rdkafka --test it rdkafka::`. The interop suite covers the
//! same clients against a real Kafka broker that validates the token.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use fake_google::FakeGoogle;
use gcp_kafka_auth_handler::rdkafka::ManagedKafkaContext;
use gcp_kafka_auth_handler::{Env, KafkaTokenProvider};
use rdkafka::ClientConfig;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer as _, ProducerContext};

const MDS_EMAIL: &str = "sidecar@test-project.iam.gserviceaccount.com";

fn provider(fake: &FakeGoogle) -> KafkaTokenProvider {
    KafkaTokenProvider::builder()
        .with_env(Env::from_pairs([
            ("HOME", "/nonexistent".to_owned()),
            ("GCE_METADATA_HOST", fake.metadata_host()),
        ]))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_hands_librdkafka_the_kafka_token_its_principal_and_expiry_in_ms() {
    let fake = FakeGoogle::start().await;
    let context = ManagedKafkaContext::new(provider(&fake));
    // librdkafka calls from its own thread, before any token is cached.
    let token: OAuthToken = {
        let context = context.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::spawn(move || context.generate_oauth_token(None).unwrap())
                .join()
                .unwrap()
        })
        .await
        .unwrap()
    };

    let parts: Vec<&str> = token.token.split('.').collect();
    assert_eq!(parts.len(), 3, "three parts");
    let claims = decode_claims(parts[1]);
    assert_eq!(claims["sub"], MDS_EMAIL);
    assert_eq!(token.principal_name, MDS_EMAIL);
    let exp = claims["exp"].as_i64().unwrap();
    assert_eq!(token.lifetime_ms, exp * 1000);
    let issued = fake
        .lookup(&crate::support::raw_google_token(&token.token))
        .expect("the fake issued the raw token");
    assert!(
        exp as u64 == issued.expires_at_unix || exp as u64 + 1 == issued.expires_at_unix,
        "exp {exp} vs the fake's {}",
        issued.expires_at_unix
    );
    // Every later call is answered from the same cache.
    let cached = context.provider().token().await.unwrap();
    assert_eq!(cached.expose(), token.token);
    assert_eq!(fake.stats().metadata_token, 1);
}

/// A context of the user's own that embeds a `ManagedKafkaContext` (the documented way to
/// combine them) and records what librdkafka reports.
struct Recording {
    kafka_auth: ManagedKafkaContext,
    errors: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Recording {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.kafka_auth.generate_oauth_token(config)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors
            .lock()
            .unwrap()
            .push(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Recording {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

fn sasl_plaintext_producer<C: ProducerContext>(bootstrap: &str, context: C) -> BaseProducer<C> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "OAUTHBEARER")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "500")
        .create_with_context(context)
        .unwrap()
}

/// Polls `producer` on this (non-runtime) thread until `done` or 20 s.
fn poll_until<C: ProducerContext>(producer: &BaseProducer<C>, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out");
        producer.poll(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_sends_the_providers_token_in_its_sasl_handshake() {
    let fake = FakeGoogle::start().await;
    let provider = provider(&fake);
    let broker = SaslCapture::start();
    let bootstrap = broker.address.clone();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let context = Recording {
        kafka_auth: ManagedKafkaContext::new(provider.clone()),
        errors: errors.clone(),
    };

    let captured = tokio::task::spawn_blocking(move || {
        let producer = sasl_plaintext_producer(&bootstrap, context);
        let mut captured = None;
        poll_until(&producer, || {
            captured = broker.messages.try_recv().ok();
            captured.is_some()
        });
        producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        captured.unwrap()
    })
    .await
    .unwrap();

    let token = provider.token().await.unwrap();
    // RFC 7628 client first message: GS2 header, then `auth=Bearer <token>` between ^A.
    assert_eq!(
        captured,
        format!("n,,\x01auth=Bearer {}\x01\x01", token.expose())
    );
    assert_eq!(token.principal().as_str(), MDS_EMAIL);
    let auth_errors: Vec<String> = errors
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains("OAUTHBEARER"))
        .cloned()
        .collect();
    assert!(auth_errors.is_empty(), "{auth_errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_reach_librdkafka_as_an_authentication_error_that_says_why() {
    let fake = FakeGoogle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    let email = "revoked@p.iam.gserviceaccount.com";
    std::fs::write(
        &key,
        serde_json::to_vec(&fake.service_account_key_json(email)).unwrap(),
    )
    .unwrap();
    fake.revoke_service_account_key(email);
    let provider = KafkaTokenProvider::builder()
        .with_env(Env::from_pairs([(
            "GOOGLE_APPLICATION_CREDENTIALS",
            key.display().to_string(),
        )]))
        .build()
        .unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let context = Recording {
        kafka_auth: ManagedKafkaContext::new(provider),
        errors: errors.clone(),
    };

    let reported = tokio::task::spawn_blocking(move || {
        // Nothing listens on port 1: the token is refused before any connection matters.
        let producer = sasl_plaintext_producer("127.0.0.1:1", context);
        let oauth_error = || {
            errors
                .lock()
                .unwrap()
                .iter()
                .find(|e| e.contains("OAUTHBEARER"))
                .cloned()
        };
        poll_until(&producer, || oauth_error().is_some());
        oauth_error().unwrap()
    })
    .await
    .unwrap();
    assert!(
        reported.contains("Failed to acquire SASL OAUTHBEARER token"),
        "{reported}"
    );
    assert!(reported.contains("Google refused the key"), "{reported}");
}

/// A loopback listener that answers librdkafka's ApiVersions, SaslHandshake and
/// SaslAuthenticate requests (accepting any token) and hands over each SASL client message.
struct SaslCapture {
    address: String,
    messages: mpsc::Receiver<String>,
}

impl SaslCapture {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            // Bounded: a few connections at most, each with a read timeout.
            for stream in listener.incoming().take(8) {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                std::thread::spawn(move || serve_kafka_connection(stream, tx));
            }
        });
        Self { address, messages }
    }
}

const API_VERSIONS: i16 = 18;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;

fn serve_kafka_connection(mut stream: TcpStream, tx: mpsc::Sender<String>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut request = vec![0u8; i32::from_be_bytes(len) as usize];
        if stream.read_exact(&mut request).is_err() {
            return;
        }
        let api_key = i16::from_be_bytes([request[0], request[1]]);
        let api_version = i16::from_be_bytes([request[2], request[3]]);
        let correlation_id = &request[4..8];
        // Request header v1 (all these versions): then client_id as an INT16-length string.
        let client_id_len = i16::from_be_bytes([request[8], request[9]]).max(0) as usize;
        let body = &request[10 + client_id_len..];
        let mut response = correlation_id.to_vec();
        match api_key {
            // Brokers answer an ApiVersions version they do not know with a v0 body and
            // UNSUPPORTED_VERSION; librdkafka then asks again with v0.
            API_VERSIONS => {
                let error: i16 = if api_version > 0 { 35 } else { 0 };
                response.extend(error.to_be_bytes());
                let apis: [(i16, i16, i16); 3] = [
                    (API_VERSIONS, 0, 0),
                    (SASL_HANDSHAKE, 0, 1),
                    (SASL_AUTHENTICATE, 0, 1),
                ];
                response.extend((apis.len() as i32).to_be_bytes());
                for (key, min, max) in apis {
                    for v in [key, min, max] {
                        response.extend(v.to_be_bytes());
                    }
                }
            }
            SASL_HANDSHAKE => {
                response.extend(0i16.to_be_bytes());
                response.extend(1i32.to_be_bytes());
                response.extend(11i16.to_be_bytes());
                response.extend(b"OAUTHBEARER");
            }
            SASL_AUTHENTICATE => {
                let n = i32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
                let _ = tx.send(String::from_utf8_lossy(&body[4..4 + n]).into_owned());
                response.extend(0i16.to_be_bytes()); // error_code
                response.extend((-1i16).to_be_bytes()); // error_message: null
                response.extend(0i32.to_be_bytes()); // auth_bytes: empty
                if api_version >= 1 {
                    response.extend(0i64.to_be_bytes()); // session_lifetime_ms
                }
            }
            // Anything after authentication (metadata): the test has what it needs.
            _ => return,
        }
        let mut framed = (response.len() as i32).to_be_bytes().to_vec();
        framed.extend(response);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}

/// The claims part of a Kafka token, decoded the way kafka-clients before 4.2 do.
pub fn decode_claims(part: &str) -> serde_json::Value {
    serde_json::from_slice(&STANDARD_NO_PAD.decode(part).unwrap()).unwrap()
}
