//! RSA fixture keys and the RS256 JWT operations the fake needs: verifying service-account
//! assertions and signing `id_token`s.

use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Map, Value};

/// Parses a PKCS#8 PEM RSA key. Only ever called on the compiled-in fixtures, so a failure is a
/// broken build, not a runtime condition.
pub(crate) fn load(pem: &str) -> KeyPair {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).expect("fixture key is PEM");
    KeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("fixture key is a PKCS#8 RSA key")
}

/// Signs `header` and `claims` as a compact RS256 JWT.
pub(crate) fn sign_jwt(key: &KeyPair, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &rng,
        signing_input.as_bytes(),
        &mut signature,
    )
    .expect("RSA signing with a valid key");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A compact JWT split into its decoded parts. Nothing is verified yet.
pub(crate) struct Jwt {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    /// Splits and decodes `token`; `None` when it is not three base64url parts whose first two
    /// are JSON objects.
    pub(crate) fn parse(token: &str) -> Option<Jwt> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let object = |part: &str| -> Option<Map<String, Value>> {
            match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()? {
                Value::Object(map) => Some(map),
                _ => None,
            }
        };
        Some(Jwt {
            header: object(header)?,
            claims: object(claims)?,
            signing_input: format!("{header}.{claims}"),
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    /// Whether the signature is a valid RS256 signature by the holder of `public_key_der`
    /// (a DER `RSAPublicKey`).
    pub(crate) fn verify_rs256(&self, public_key_der: &[u8]) -> bool {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key_der)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .is_ok()
    }

    /// A header field as a string.
    pub(crate) fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// A claim as a string.
    pub(crate) fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric claim in whole seconds (fractions, which some libraries write, truncated).
    pub(crate) fn claim_secs(&self, name: &str) -> Option<i64> {
        let value = self.claims.get(name)?;
        value.as_i64().or_else(|| value.as_f64().map(|f| f as i64))
    }
}
