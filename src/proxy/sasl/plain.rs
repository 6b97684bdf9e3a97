//! SASL/PLAIN (RFC 4616): username = the principal, password = the raw Google access token.
//! One message; the broker's answer is the outcome.

use bytes::Bytes;
use secrecy::ExposeSecret as _;

use super::{Mechanism, Step};
use crate::KafkaToken;

const NAME: &str = "PLAIN";

/// PLAIN has no state.
#[derive(Debug)]
pub(super) struct Plain;

impl Mechanism for Plain {
    fn name(&self) -> &'static str {
        NAME
    }

    fn initial(&mut self, token: &KafkaToken) -> Bytes {
        let access = token.access_token();
        Bytes::from(format!(
            "\0{}\0{}",
            token.principal().as_str(),
            access.expose_secret()
        ))
    }

    fn answer(&mut self, _auth_bytes: &[u8], session_lifetime_ms: i64) -> Step {
        Step::Done(session_lifetime_ms)
    }
}
