//! SASL/OAUTHBEARER (RFC 7628) with the Kafka token.
//!
//! RFC 7628 §3.2.2: a server refuses a token with an error *challenge*
//! (`{"status":"invalid_token",...}` in `auth_bytes`, error code 0) and fails the
//! authentication only once the client answers `%x01`. Kafka's broker does exactly this, so
//! the challenge is a refusal, never a success: it is acknowledged, and the refusal that
//! follows carries it.

use bytes::Bytes;

use super::{Mechanism, Step};
use crate::KafkaToken;

const NAME: &str = "OAUTHBEARER";

/// OAUTHBEARER's state: the error challenge, once the broker sent one.
#[derive(Debug, Default)]
pub(super) struct OauthBearer {
    challenge: Option<String>,
}

impl Mechanism for OauthBearer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn initial(&mut self, token: &KafkaToken) -> Bytes {
        Bytes::from(format!("n,,\x01auth=Bearer {}\x01\x01", token.expose()))
    }

    fn answer(&mut self, auth_bytes: &[u8], session_lifetime_ms: i64) -> Step {
        match &self.challenge {
            Some(challenge) => Step::Fail(format!(
                "it sent the SASL/{NAME} error challenge {challenge} and then accepted the authentication"
            )),
            None if !auth_bytes.is_empty() => {
                self.challenge = Some(String::from_utf8_lossy(auth_bytes).into_owned());
                Step::Send(Bytes::from_static(b"\x01"))
            }
            None => Step::Done(session_lifetime_ms),
        }
    }

    fn challenge(&self) -> Option<&str> {
        self.challenge.as_deref()
    }
}
