//! The proxy's client-side frame path: the first bytes of a connection (TLS/HTTP check, size
//! prefix, header peek, admission, Produce `acks`, the local answers). The first byte picks
//! the connection buffer's size. Never a panic; local answers are well-formed (asserted in
//! the hook).
#![no_main]

use gcp_kafka_auth_handler::proxy::fuzz_hooks::client_frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&size, bytes)) = data.split_first() else {
        return;
    };
    let _ = client_frame(bytes, 4 + usize::from(size) * 64);
});
