//! Property tests of the public parsers and of the token encoding: whatever the input, an
//! error that names the problem (never a panic, never a secret in the message), and tokens
//! every Kafka client version can decode.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use gcp_kafka_auth_handler::credentials::adc::source_from_json;
use gcp_kafka_auth_handler::credentials::{ErrorKind, HttpClients};
use gcp_kafka_auth_handler::{Env, KafkaToken, Principal};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Building HTTP clients loads root certificates: once, not per case.
static HTTP: std::sync::LazyLock<HttpClients> = std::sync::LazyLock::new(HttpClients::new);

fn env() -> Env {
    Env::from_pairs([("HOME", "/nonexistent")])
}

/// JSON values of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Credentials files of the supported types with fields missing, mistyped or garbage.
fn credentials_file() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just(json!("service_account")),
        Just(json!("authorized_user")),
        Just(json!("external_account")),
        any_json(),
    ];
    let field = || proptest::option::of(prop_oneof![any_json(), ".{0,40}".prop_map(Value::String)]);
    (kind, field(), field(), field(), field(), field(), field()).prop_map(
        |(kind, private_key, client_email, client_id, client_secret, refresh_token, token_uri)| {
            let mut file = serde_json::Map::new();
            file.insert("type".into(), kind);
            for (name, value) in [
                ("private_key", private_key),
                ("client_email", client_email),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("refresh_token", refresh_token),
                ("token_uri", token_uri),
            ] {
                if let Some(value) = value {
                    file.insert(name.into(), value);
                }
            }
            Value::Object(file)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn credential_files_of_any_bytes_are_refused_with_a_message(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Err(err) = source_from_json(&bytes, &env(), &HTTP) {
            prop_assert_eq!(err.kind(), ErrorKind::Invalid);
            prop_assert!(!err.message().is_empty());
        }
    }

    #[test]
    fn malformed_credential_files_never_echo_their_secrets(file in credentials_file()) {
        let bytes = serde_json::to_vec(&file).unwrap();
        if let Err(err) = source_from_json(&bytes, &env(), &HTTP) {
            prop_assert_eq!(err.kind(), ErrorKind::Invalid);
            let message = err.to_string();
            for secret in ["private_key", "client_secret", "refresh_token"] {
                if let Some(value) = file[secret].as_str().filter(|v| v.len() >= 8) {
                    prop_assert!(!message.contains(value), "{} in {}", secret, message);
                }
            }
        }
    }

    #[test]
    fn tokens_round_trip_and_claims_decode_under_both_alphabets(
        access in "[!-~]{1,200}",
        sub in prop_oneof![
            "[a-z0-9._%+~?>-]{1,30}@[a-z0-9.-]{1,20}\\.[a-z]{2,6}",
            "principal://iam\\.googleapis\\.com/[ -~]{1,60}",
        ],
        iat in 0u64..4_000_000_000,
        life in 1u64..100_000,
    ) {
        let Ok(principal) = Principal::new(sub) else { return Ok(()) };
        let exp = iat + life;
        let token = KafkaToken::encode(&access, &principal, exp, iat);
        let parts: Vec<&str> = token.expose().split('.').collect();
        prop_assert_eq!(parts.len(), 3);
        prop_assert!(parts.iter().all(|p| !p.is_empty() && !p.contains('=')));
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        prop_assert_eq!(header, json!({"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"}));
        // kafka-clients before 4.2 decode the claims with the standard alphabet.
        let standard = STANDARD_NO_PAD.decode(parts[1]).unwrap();
        prop_assert_eq!(&standard, &URL_SAFE_NO_PAD.decode(parts[1]).unwrap());
        prop_assert!(standard.is_ascii());
        let claims: Value = serde_json::from_slice(&standard).unwrap();
        prop_assert_eq!(
            claims,
            json!({"exp": exp, "iat": iat, "iss": "Google", "scope": "kafka", "sub": principal.as_str()})
        );
        prop_assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap(), access.as_bytes());
        prop_assert_eq!(token.expires_at_unix(), exp);
    }

    #[test]
    fn principals_of_any_text_are_accepted_or_refused_never_empty(text in ".{0,80}") {
        if let Ok(principal) = Principal::new(text) {
            prop_assert!(!principal.as_str().trim().is_empty());
        }
    }
}

/// A response `body` of `key` at `version` with the fuzz hooks' selector bytes in front.
fn rewrite_input(key: kafka_protocol::messages::ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    gcp_kafka_auth_handler::proxy::fuzz_hooks::broker_response_input(key as i16, version, body)
        .unwrap_or_else(|| panic!("{key:?} v{version} is not rewritten"))
}

fn metadata_body() -> impl Strategy<Value = (i16, Vec<u8>)> {
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::{BrokerId, MetadataResponse};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    (
        0i16..=13,
        proptest::collection::vec(
            (0i32..500, "[a-z0-9.-]{1,40}", 1i32..65536, any::<bool>()),
            0..8,
        ),
        any::<i32>(),
    )
        .prop_map(|(version, brokers, controller)| {
            let msg = MetadataResponse::default()
                .with_controller_id(BrokerId(controller))
                .with_brokers(
                    brokers
                        .into_iter()
                        .map(|(id, host, port, rack)| {
                            MetadataResponseBroker::default()
                                .with_node_id(BrokerId(id))
                                .with_host(StrBytes::from_string(host))
                                .with_port(port)
                                .with_rack(rack.then(|| StrBytes::from_static_str("r")))
                        })
                        .collect(),
                );
            let mut out = bytes::BytesMut::new();
            msg.encode(&mut out, version).unwrap();
            (version, out.to_vec())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any bytes a client sends as the start of a connection: a decision or "need more",
    /// never a panic; local answers are well-formed frames with the request's id (asserted
    /// inside the hook).
    #[test]
    fn any_client_bytes_get_a_decision_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        buffer in 4usize..256,
    ) {
        let _ = gcp_kafka_auth_handler::proxy::fuzz_hooks::client_frame(&bytes, buffer);
    }

    /// A plausible request header with any key, version and body: the same.
    #[test]
    fn any_request_header_is_admitted_answered_or_closed(
        key in prop_oneof![any::<i16>(), 0i16..100],
        version in prop_oneof![-2i16..120, -1i16..5],
        correlation in any::<i32>(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        use gcp_kafka_auth_handler::proxy::fuzz_hooks::{ClientOutcome, client_frame};
        let mut frame = Vec::new();
        frame.extend_from_slice(&(10 + body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&correlation.to_be_bytes());
        frame.extend_from_slice(&[0xff, 0xff]);
        frame.extend_from_slice(&body);
        let outcome = client_frame(&frame, 64 * 1024);
        let admitted = matches!(outcome, ClientOutcome::Admitted(..));
        // TLS- or HTTP-looking first bytes are the only other outcome for a whole header.
        prop_assert!(admitted || matches!(outcome, ClientOutcome::Refused(_)), "{outcome:?}");
    }

    /// Any bytes as a broker's answer to a rewritten key: decoded and rewritten, or refused,
    /// never a panic; what comes out names only local addresses (asserted inside the hook).
    #[test]
    fn any_broker_bytes_through_the_rewrite_never_panic_or_leak(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        gcp_kafka_auth_handler::proxy::fuzz_hooks::broker_response(&bytes);
    }

    /// Well-formed Metadata answers with any brokers: every one rewritten to a local port.
    #[test]
    fn metadata_answers_name_only_local_addresses((version, body) in metadata_body()) {
        gcp_kafka_auth_handler::proxy::fuzz_hooks::broker_response(
            &rewrite_input(kafka_protocol::messages::ApiKey::Metadata, version, &body),
        );
    }
}
