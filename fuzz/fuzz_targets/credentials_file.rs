//! Any bytes as an ADC credentials file: a source or an `Invalid` error, never a panic.
#![no_main]

use std::sync::LazyLock;

use gcp_kafka_auth_handler::Env;
use gcp_kafka_auth_handler::credentials::adc::source_from_json;
use gcp_kafka_auth_handler::credentials::{ErrorKind, HttpClients};
use libfuzzer_sys::fuzz_target;

static HTTP: LazyLock<HttpClients> = LazyLock::new(HttpClients::new);
static ENV: LazyLock<Env> = LazyLock::new(|| Env::from_pairs([("HOME", "/nonexistent")]));

fuzz_target!(|data: &[u8]| {
    if let Err(err) = source_from_json(data, &ENV, &HTTP) {
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(!err.message().is_empty());
    }
});
