//! The OAuth2 token response (RFC 6749 §5.1) the Kafka clients read.
//!
//! `{"access_token":"...","token_type":"Bearer","expires_in":N}`. Everything but `expires_in`
//! is fixed for a token's whole life, so it is rendered once per refresh and each request only
//! appends the seconds left.

use bytes::{BufMut, Bytes, BytesMut};

use crate::kafka_token::KafkaToken;

/// The part of the body that does not change while the token lives, ending with
/// `"expires_in":`. Holds the token: it is a secret.
#[derive(Clone)]
pub(crate) struct ResponsePrefix(Bytes);

impl ResponsePrefix {
    pub(crate) fn new(token: &KafkaToken) -> Self {
        // The encoded token is base64url and dots only, so it needs no JSON escaping.
        let encoded = token.expose();
        debug_assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        );
        let mut body = BytesMut::with_capacity(encoded.len() + 64);
        body.put_slice(br#"{"access_token":""#);
        body.put_slice(encoded.as_bytes());
        body.put_slice(br#"","token_type":"Bearer","expires_in":"#);
        Self(body.freeze())
    }

    /// The whole body for a token with `expires_in` seconds left.
    pub(crate) fn render(&self, expires_in: u64) -> Bytes {
        let mut buffer = itoa::Buffer::new();
        let digits = buffer.format(expires_in).as_bytes();
        let mut body = BytesMut::with_capacity(self.0.len() + digits.len() + 1);
        body.put_slice(&self.0);
        body.put_slice(digits);
        body.put_u8(b'}');
        body.freeze()
    }
}

impl std::fmt::Debug for ResponsePrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponsePrefix([censored])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Principal;

    #[test]
    fn renders_the_exact_json_clients_expect() {
        let principal = Principal::new("a@b.c").unwrap();
        let token = KafkaToken::encode("ya29.x", &principal, 2_000_000_000, 1_999_996_400);
        let body = ResponsePrefix::new(&token).render(3599);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "access_token": token.expose(),
                "token_type": "Bearer",
                "expires_in": 3599
            })
        );
        assert_eq!(
            format!("{:?}", ResponsePrefix::new(&token)),
            "ResponsePrefix([censored])"
        );
    }
}
