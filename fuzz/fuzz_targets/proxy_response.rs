//! Broker answers through the proxy's rewrite: the first byte picks a rewritten key, the
//! second its version, the rest is the body. Never a panic or an abort; a rewritten answer
//! decodes again and names only local addresses (asserted in the hook).
#![no_main]

use gcp_kafka_auth_handler::proxy::fuzz_hooks::broker_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| broker_response(data));
