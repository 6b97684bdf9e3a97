//! Entry points for the fuzz targets in `fuzz/` and the property and integration tests: the
//! proxy's parsers of untrusted bytes, from clients and from brokers, with the invariants they
//! must keep asserted inside, and the reviewed version table in plain integers. Hidden from
//! the docs and free to change; they exist so that a target outside the crate runs exactly
//! the code a connection runs. Signatures use std types and `bytes` only: the codecs and
//! their `kafka-protocol` types stay crate-private.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use super::connection;
use super::frame;
use super::rewrite::{self, PortMap};
use super::versions::{self, Admission};

/// What the proxy does with the first request on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutcome {
    /// More bytes are needed before anything is decided.
    NeedMore,
    /// The connection is closed for this reason (a framing error, TLS, HTTP).
    Refused(String),
    /// The request header was read and admitted or answered as the admission (its name,
    /// e.g. `Forward`, `Hidden(DescribeQuorum)`) says; for a local answer, the answer's bytes.
    Admitted(String, Option<Bytes>),
}

/// The client-side frame path on `data`, the first bytes of a connection, with `buffer`
/// bytes of connection buffer: the TLS/HTTP check, the size prefix, the header peek within
/// the buffer, admission, Produce `acks`, and the local answers. Never panics; a local
/// answer is a well-formed frame carrying the request's correlation id.
pub fn client_frame(data: &[u8], buffer: usize) -> ClientOutcome {
    if data.len() >= 4
        && let Some(mistake) = frame::classify_first_bytes(data)
    {
        return ClientOutcome::Refused(mistake.to_string());
    }
    let total = match frame::declared_len(data, frame::DEFAULT_MAX_FRAME_BYTES) {
        Ok(Some(total)) => total,
        Ok(None) => return ClientOutcome::NeedMore,
        Err(e) => return ClientOutcome::Refused(e.to_string()),
    };
    assert!((frame::SIZE_LEN..=frame::SIZE_LEN + frame::DEFAULT_MAX_FRAME_BYTES).contains(&total));
    let head = total.min(buffer.max(frame::SIZE_LEN));
    if data.len() < head {
        return ClientOutcome::NeedMore;
    }
    let peek = match frame::peek_request(&data[..head]) {
        Ok(peek) => peek,
        Err(e) => return ClientOutcome::Refused(e.to_string()),
    };
    if peek.api_key == frame::PRODUCE {
        let _ = frame::produce_acks(&data[..head]);
    }
    let admission = versions::admit(peek.api_key, peek.api_version);
    let answer = connection::local_answer(admission, peek);
    assert_eq!(
        answer.is_some(),
        !matches!(admission, Admission::Forward | Admission::NotOffered),
        "{admission:?} v{}: a request answered locally must get its answer",
        peek.api_version
    );
    if let Some(answer) = &answer {
        let size = u32::from_be_bytes([answer[0], answer[1], answer[2], answer[3]]) as usize;
        assert_eq!(
            size + frame::SIZE_LEN,
            answer.len(),
            "a local answer's size prefix"
        );
        assert_eq!(
            frame::response_correlation_id(answer).unwrap(),
            peek.correlation_id,
            "a local answer carries the request's correlation id"
        );
    }
    ClientOutcome::Admitted(format!("{admission:?}"), answer)
}

/// A broker response through the rewrite: `data[0]` picks a key the proxy decodes, `data[1]`
/// a version of it, the rest is the body. Never panics; when the body decodes, the rewritten
/// one decodes too, and every address in it is the advertised host with the node's local
/// port (the rewrite applied again finds only those), and no address-valued configuration
/// keeps a value.
pub fn broker_response(data: &[u8]) {
    // The table's order: the offered rows, then Produce and Fetch (KIP-951 versions).
    let keys: Vec<(ApiKey, i16, i16)> = versions::TABLE
        .iter()
        .map(|row| (row.key, row.decoded.min, row.decoded.max))
        .collect();
    let (Some(&pick), Some(&v)) = (data.first(), data.get(1)) else {
        return;
    };
    let (key, min, max) = keys[usize::from(pick) % keys.len()];
    let version = min + (i16::from(v) % (max - min + 1));
    let map = PortMap::new("127.0.0.1", 9093, 9092);
    let body = Bytes::copy_from_slice(&data[2..]);
    let Ok(first) = rewrite::rewrite(key, version, body, &map) else {
        return;
    };
    let again =
        rewrite::rewrite(key, version, first.body.clone().freeze(), &map).unwrap_or_else(|e| {
            panic!("{key:?} v{version}: the rewritten answer does not decode: {e}")
        });
    for broker in &again.brokers {
        assert_eq!(broker.host, "127.0.0.1", "{key:?} v{version}");
        assert_eq!(
            Ok(broker.port),
            map.port(broker.node_id),
            "{key:?} v{version}"
        );
    }
    assert_eq!(
        again.brokers.len(),
        first.brokers.len(),
        "{key:?} v{version}"
    );
    if key != ApiKey::ApiVersions {
        assert_eq!(
            again.body, first.body,
            "{key:?} v{version}: rewriting is idempotent"
        );
    }
}

/// Produce responses carry broker addresses (KIP-951) from this version on.
pub const PRODUCE_NODE_ENDPOINTS: i16 = versions::PRODUCE_NODE_ENDPOINTS;
/// Fetch responses carry broker addresses (KIP-951) from this version on.
pub const FETCH_NODE_ENDPOINTS: i16 = versions::FETCH_NODE_ENDPOINTS;

/// The reviewed table of keys the proxy offers and rewrites: `(api key, min, max)` of the
/// versions it decodes, in the table's order (not Produce and Fetch, which it rewrites from
/// their KIP-951 versions without offering them).
pub fn rewritten_ranges() -> Vec<(i16, i16, i16)> {
    versions::REWRITTEN
        .iter()
        .map(|(key, range)| (*key as i16, range.min, range.max))
        .collect()
}

/// Whether the response to a request `(api_key, version)` is decoded and rewritten.
pub fn is_rewritten(api_key: i16, version: i16) -> bool {
    matches!(
        versions::handling(api_key, version),
        versions::Handling::Rewrite(key) if key as i16 == api_key
    )
}

/// The input [`broker_response`] reads as an `api_key` v`version` response with `body`; `None`
/// for a key or version the proxy does not rewrite.
pub fn broker_response_input(api_key: i16, version: i16, body: &[u8]) -> Option<Vec<u8>> {
    let index = versions::TABLE
        .iter()
        .position(|row| row.key as i16 == api_key)?;
    let decoded = versions::TABLE[index].decoded;
    if !(decoded.min..=decoded.max).contains(&version) {
        return None;
    }
    let mut input = vec![
        u8::try_from(index).ok()?,
        u8::try_from(version - decoded.min).ok()?,
    ];
    input.extend_from_slice(body);
    Some(input)
}
