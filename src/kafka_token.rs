//! The token Google Managed Kafka accepts: a Google access token wrapped in a JWT-shaped value.
//!
//! `base64url(header) "." base64url(claims) "." base64url(raw access token)`, all unpadded,
//! as Google's own Java and Python login handlers build it. The claims JSON is kept ASCII and `>`, `?`, `~` and DEL are escaped, so its
//! base64url text never contains `-` or `_` and kafka-clients before 4.2, which decode the
//! claims with the *standard* Base64 alphabet (KAFKA-17089), accept it too.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

use crate::principal::Principal;

/// The JOSE header Managed Kafka expects, as JSON.
pub const HEADER_JSON: &str = r#"{"typ":"JWT","alg":"GOOG_OAUTH2_TOKEN"}"#;

/// The Kafka OAUTHBEARER token for one Google access token.
///
/// Holds the Google access token, so its `Debug` output is censored.
#[derive(Clone)]
pub struct KafkaToken {
    encoded: SecretString,
    principal: Principal,
    expires_at_unix: u64,
    issued_at_unix: u64,
}

impl KafkaToken {
    /// Wraps `access_token` for `principal`; `exp` and `iat` are whole seconds since the epoch.
    ///
    /// ```
    /// use gcp_kafka_auth_handler::{KafkaToken, Principal};
    /// use secrecy::ExposeSecret;
    /// let principal = Principal::new("app@p.iam.gserviceaccount.com").unwrap();
    /// let token = KafkaToken::encode("ya29.a.b", &principal, 1_700_003_600, 1_700_000_000);
    /// assert_eq!(token.expose().split('.').count(), 3);
    /// assert_eq!(token.expires_at_unix(), 1_700_003_600);
    /// ```
    pub fn encode(access_token: &str, principal: &Principal, exp: u64, iat: u64) -> Self {
        let header = URL_SAFE_NO_PAD.encode(HEADER_JSON);
        let claims = URL_SAFE_NO_PAD.encode(claims_json(principal.as_str(), exp, iat));
        let raw = URL_SAFE_NO_PAD.encode(access_token);
        Self {
            encoded: SecretString::from(format!("{header}.{claims}.{raw}")),
            principal: principal.clone(),
            expires_at_unix: exp,
            issued_at_unix: iat,
        }
    }

    /// The encoded token, to hand to a Kafka client. It is a credential: never log it.
    pub fn expose(&self) -> &str {
        self.encoded.expose_secret()
    }

    /// The raw Google access token the Kafka token wraps, for SASL/PLAIN, whose password
    /// Managed Kafka takes as the bare access token. It is a credential: never log it.
    ///
    /// ```
    /// use gcp_kafka_auth_handler::{KafkaToken, Principal};
    /// use secrecy::ExposeSecret;
    /// let principal = Principal::new("app@p.iam.gserviceaccount.com").unwrap();
    /// let token = KafkaToken::encode("ya29.a.b", &principal, 2, 1);
    /// assert_eq!(token.access_token().expose_secret(), "ya29.a.b");
    /// ```
    pub fn access_token(&self) -> SecretString {
        // The third part is base64url(access token), written by `encode`, so it decodes.
        let raw = self.expose().rsplit('.').next().unwrap_or_default();
        let bytes = URL_SAFE_NO_PAD.decode(raw).unwrap_or_default();
        SecretString::from(String::from_utf8(bytes).unwrap_or_default())
    }

    /// The principal in the `sub` claim.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The `exp` claim: when the Google access token expires, in seconds since the epoch.
    pub fn expires_at_unix(&self) -> u64 {
        self.expires_at_unix
    }

    /// The `iat` claim, in seconds since the epoch.
    pub fn issued_at_unix(&self) -> u64 {
        self.issued_at_unix
    }
}

impl std::fmt::Debug for KafkaToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaToken")
            .field("token", &"[censored]")
            .field("principal", &self.principal)
            .field("exp", &self.expires_at_unix)
            .field("iat", &self.issued_at_unix)
            .finish()
    }
}

/// The claims JSON: integers for `exp`/`iat`, all five claims Google's handlers send between
/// them, and a `sub` escaped so the text is ASCII without `>`, `?`, `~` or DEL.
fn claims_json(sub: &str, exp: u64, iat: u64) -> String {
    let mut json = String::with_capacity(80 + sub.len());
    json.push_str(r#"{"exp":"#);
    json.push_str(&exp.to_string());
    json.push_str(r#","iat":"#);
    json.push_str(&iat.to_string());
    json.push_str(r#","iss":"Google","scope":"kafka","sub":""#);
    push_escaped(&mut json, sub);
    json.push_str(r#""}"#);
    json
}

/// JSON string escaping that also escapes every non-ASCII character (as UTF-16 `\uXXXX`) and
/// the four ASCII characters that can produce `-`/`_` in base64url at an offset of 2 mod 3.
fn push_escaped(out: &mut String, value: &str) {
    use std::fmt::Write as _;
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='=' | '@'..='[' | ']'..='}' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

    fn parts(token: &KafkaToken) -> Vec<String> {
        token.expose().split('.').map(str::to_owned).collect()
    }

    #[test]
    fn header_claims_and_raw_token_decode_to_exact_values() {
        let principal = Principal::new("app@proj.iam.gserviceaccount.com").unwrap();
        let token = KafkaToken::encode("ya29.c.abc.def", &principal, 1_700_003_600, 1_700_000_000);
        let p = parts(&token);
        assert_eq!(p.len(), 3);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&p[0]).unwrap(),
            br#"{"typ":"JWT","alg":"GOOG_OAUTH2_TOKEN"}"#
        );
        assert_eq!(
            String::from_utf8(URL_SAFE_NO_PAD.decode(&p[1]).unwrap()).unwrap(),
            r#"{"exp":1700003600,"iat":1700000000,"iss":"Google","scope":"kafka","sub":"app@proj.iam.gserviceaccount.com"}"#
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&p[2]).unwrap(), b"ya29.c.abc.def");
        assert!(!token.expose().contains('='));
    }

    #[test]
    fn awkward_principals_decode_under_both_alphabets() {
        // Each of these puts `>`, `?`, `~` or non-ASCII at every offset mod 3.
        for sub in [
            "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/a>b",
            "principal://iam.googleapis.com/x?y",
            "principal://iam.googleapis.com/x?yy",
            "principal://iam.googleapis.com/x?yyy",
            "a~b@x.com",
            "a~~b@x.com",
            "ab~@x.com",
            "é>?~\u{7f}@x.com",
            "quote\"back\\slash@x.com",
        ] {
            let principal = Principal::new(sub).unwrap_or_else(|e| panic!("{sub}: {e}"));
            let token = KafkaToken::encode("ya29.t", &principal, 2, 1);
            let claims = &parts(&token)[1];
            assert!(!claims.contains(['-', '_']), "{sub}: {claims}");
            let std = STANDARD_NO_PAD.decode(claims).unwrap();
            let decoded: serde_json::Value = serde_json::from_slice(&std).unwrap();
            assert_eq!(decoded["sub"], sub);
            assert!(std.is_ascii());
        }
    }

    #[test]
    fn debug_is_censored() {
        let principal = Principal::new("a@b.c").unwrap();
        let token = KafkaToken::encode("ya29.secret-value", &principal, 2, 1);
        let shown = format!("{token:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!shown.contains(&parts(&token)[2]), "{shown}");
        assert!(shown.contains("[censored]"));
    }
}
