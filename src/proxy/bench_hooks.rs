//! Entry points for the criterion benchmark `benches/proxy_decode.rs`: the opaque path (a
//! correlation-id write) and the rewrite path on a response body, in plain bytes and
//! integers. Hidden from the docs and free to change; they exist because the codecs are
//! crate-private and a benchmark outside the crate must measure exactly the code a
//! connection runs.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use super::frame;
use super::rewrite::{self, PortMap};

/// `body` behind a 4-byte size prefix, as a frame on the wire.
pub fn framed(body: &[u8]) -> Vec<u8> {
    frame::framed(body).to_vec()
}

/// Overwrites a response frame's correlation id: all the proxy does to a response it
/// forwards opaquely.
pub fn set_response_correlation_id(frame: &mut [u8], id: i32) {
    frame::set_response_correlation_id(frame, id);
}

/// The rewrite of broker responses for one advertised host and port layout.
#[derive(Debug, Clone)]
pub struct Rewriter(PortMap);

impl Rewriter {
    /// Node N is advertised as `advertised_host:(broker_port_base + N)`.
    pub fn new(advertised_host: &str, broker_port_base: u16, bootstrap_port: u16) -> Self {
        Self(PortMap::new(
            advertised_host,
            broker_port_base,
            bootstrap_port,
        ))
    }

    /// Rewrites the body of an `api_key` v`version` response, as a connection does; the
    /// rewritten body, or why it could not be.
    pub fn rewrite(&self, api_key: i16, version: i16, body: Bytes) -> Result<Bytes, String> {
        let key = ApiKey::try_from(api_key).map_err(|()| format!("unknown API key {api_key}"))?;
        rewrite::rewrite(key, version, body, &self.0)
            .map(|rewritten| rewritten.body.freeze())
            .map_err(|e| e.to_string())
    }
}
