//! Entry points for the criterion benchmarks in `benches/` (`cargo bench`).
//!
//! Not part of the public API: hidden from the docs, free to change in any release. They exist
//! because the response body is crate-private, and a benchmark outside the crate must still
//! measure exactly the code a request runs.

use crate::kafka_token::KafkaToken;
use crate::token_response::ResponsePrefix;

/// The token endpoint's response body for one token, with its fixed part rendered once (as
/// the refresh task does).
pub struct ResponseBody(ResponsePrefix);

impl ResponseBody {
    /// Renders the fixed part for `token`: once per refresh in the server.
    pub fn new(token: &KafkaToken) -> Self {
        Self(ResponsePrefix::new(token))
    }

    /// The whole body with `expires_in` seconds left: once per request in the server.
    pub fn render(&self, expires_in: u64) -> bytes::Bytes {
        self.0.render(expires_in)
    }
}
