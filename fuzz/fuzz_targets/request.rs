//! The request parsers: the first line is an `Authorization` value and a `Host` value
//! (separated by a tab), the rest a form body. Never a panic; loopback checks stay loopback.
#![no_main]

use gcp_kafka_auth_handler::endpoint::{
    EndpointConfig, form_client_credentials, host_without_port, parse_basic,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (authorization, host) = match line.iter().position(|&b| b == b'\t') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    if let Some((id, _secret)) = parse_basic(authorization) {
        assert!(!id.contains(&b':'));
    }
    let _ = form_client_credentials(body);
    if let Ok(host) = std::str::from_utf8(host) {
        let allowed = EndpointConfig::default().host_is_allowed(host);
        if allowed {
            assert!(host_without_port(host).is_some());
        }
    }
});
