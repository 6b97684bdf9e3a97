//! The SASL conversation with a broker, written once and sans-IO: [`Conversation`] turns the
//! broker's answers into the next request to send, success (the session lifetime) or an
//! [`UpstreamError`]; [`converse`] drives it over an [`Exchange`], which is a fresh socket for
//! the first authentication (`upstream`) or the connection's in-flight queue for KIP-368
//! re-authentication (`connection`).
//!
//! Each mechanism is one file holding a [`Mechanism`] state machine (kroxylicious'
//! `MechanismStateMachine`, grepplabs' one file per mechanism): [`oauthbearer`], [`plain`].
//! A new one (SCRAM, say) is a new file, a variant of [`SaslMechanism`] and its arm in
//! `SaslMechanism::machine` (plus the `--upstream-sasl` value in `commands/proxy_args.rs`).

mod oauthbearer;
mod plain;

use std::future::Future;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::wire::{Sequence, UpstreamError, check_id, decode_response, encode_request};
use crate::KafkaToken;

/// The SASL mechanism the proxy uses towards the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaslMechanism {
    /// OAUTHBEARER with the Kafka token (Managed Kafka's default).
    #[default]
    OauthBearer,
    /// PLAIN: username = the principal, password = the raw Google access token.
    Plain,
}

impl SaslMechanism {
    /// The name sent in SaslHandshake.
    pub fn name(self) -> &'static str {
        self.machine().name()
    }

    /// A fresh state machine of this mechanism: the one place a new mechanism is named.
    fn machine(self) -> Box<dyn Mechanism> {
        match self {
            Self::OauthBearer => Box::new(oauthbearer::OauthBearer::default()),
            Self::Plain => Box::new(plain::Plain),
        }
    }

    /// The initial client response: RFC 7628 for OAUTHBEARER, RFC 4616 for PLAIN.
    #[cfg(test)]
    pub(crate) fn auth_bytes(self, token: &KafkaToken) -> Bytes {
        self.machine().initial(token)
    }
}

/// What a mechanism does next, given a SaslAuthenticate answer without an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send these auth bytes in another SaslAuthenticate.
    Send(Bytes),
    /// Authenticated; the broker's `session_lifetime_ms` (0: no expiry).
    Done(i64),
    /// The broker broke the mechanism's protocol (a [`UpstreamError::Protocol`] detail).
    Fail(String),
}

/// One mechanism's side of the exchange, sans-IO.
pub(crate) trait Mechanism: Send {
    /// The mechanism's name, as in SaslHandshake.
    fn name(&self) -> &'static str;
    /// The first client message.
    fn initial(&mut self, token: &KafkaToken) -> Bytes;
    /// The broker's answer with error code 0: its `auth_bytes` and `session_lifetime_ms`.
    fn answer(&mut self, auth_bytes: &[u8], session_lifetime_ms: i64) -> Step;
    /// What the broker said before refusing, to add to the refusal (RFC 7628's error
    /// challenge), if anything.
    fn challenge(&self) -> Option<&str> {
        None
    }
}

/// The SaslHandshake / SaslAuthenticate versions of a broker connection, chosen from its
/// ApiVersions when it was opened and used again when re-authenticating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SaslVersions {
    pub handshake: i16,
    pub authenticate: i16,
}

/// One of the proxy's own requests: its correlation id, its frame, and the step it is for
/// (named in an I/O error).
#[derive(Debug)]
pub(crate) struct OwnRequest {
    pub id: i32,
    pub frame: BytesMut,
    pub during: &'static str,
}

/// Sends one of the proxy's own requests on a broker connection and returns the response
/// frame (size prefix included), its correlation id not yet checked.
pub(crate) trait Exchange {
    /// What a failed exchange is; the conversation's own failures convert into it.
    type Error: From<UpstreamError>;
    /// Sends `request`, returns its answer.
    fn exchange(
        &mut self,
        request: &OwnRequest,
    ) -> impl Future<Output = Result<Bytes, Self::Error>> + Send;
}

/// Where a conversation is.
enum State {
    Handshake,
    Authenticate,
    Done,
}

/// The SASL conversation on one broker connection: SaslHandshake, then SaslAuthenticate as
/// often as the mechanism asks.
pub(crate) struct Conversation {
    mechanism: Box<dyn Mechanism>,
    host: String,
    versions: SaslVersions,
    state: State,
    pending: i32,
    initial: Option<Bytes>,
}

/// What the conversation wants after an answer.
pub(crate) enum Next {
    Send(OwnRequest),
    Done(i64),
}

impl Conversation {
    /// A conversation with `host` in `mechanism` at `versions`, authenticating with `token`.
    pub fn new(
        mechanism: SaslMechanism,
        host: &str,
        versions: SaslVersions,
        token: &KafkaToken,
    ) -> Self {
        let mut mechanism = mechanism.machine();
        let initial = Some(mechanism.initial(token));
        Self {
            mechanism,
            host: host.to_owned(),
            versions,
            state: State::Handshake,
            pending: 0,
            initial,
        }
    }

    /// The first request: SaslHandshake.
    pub fn start(&mut self, seq: &mut Sequence) -> OwnRequest {
        let id = seq.next_id();
        self.pending = id;
        let request = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(self.mechanism.name()));
        OwnRequest {
            id,
            frame: encode_request(&request, self.versions.handshake, id),
            during: "SaslHandshake",
        }
    }

    /// The broker's answer to the last request.
    pub fn answer(&mut self, frame: Bytes, seq: &mut Sequence) -> Result<Next, UpstreamError> {
        match self.state {
            State::Handshake => {
                self.check_handshake(frame)?;
                let bytes = self.initial.take().unwrap_or_default();
                self.state = State::Authenticate;
                Ok(Next::Send(self.authenticate(bytes, seq)))
            }
            State::Authenticate => {
                let response = self.decode_authenticate(frame)?;
                if response.error_code != 0 {
                    self.state = State::Done;
                    return Err(self.refused(&response));
                }
                match self
                    .mechanism
                    .answer(&response.auth_bytes, response.session_lifetime_ms)
                {
                    Step::Send(bytes) => Ok(Next::Send(self.authenticate(bytes, seq))),
                    Step::Done(lifetime) => {
                        self.state = State::Done;
                        Ok(Next::Done(lifetime))
                    }
                    Step::Fail(detail) => {
                        self.state = State::Done;
                        Err(self.protocol(detail))
                    }
                }
            }
            State::Done => Err(self.protocol("an answer after the authentication ended".into())),
        }
    }

    fn authenticate(&mut self, bytes: Bytes, seq: &mut Sequence) -> OwnRequest {
        let id = seq.next_id();
        self.pending = id;
        let request = SaslAuthenticateRequest::default().with_auth_bytes(bytes);
        OwnRequest {
            id,
            frame: encode_request(&request, self.versions.authenticate, id),
            during: "SaslAuthenticate",
        }
    }

    fn protocol(&self, detail: String) -> UpstreamError {
        UpstreamError::Protocol {
            host: self.host.clone(),
            detail,
        }
    }

    fn check_handshake(&self, frame: Bytes) -> Result<(), UpstreamError> {
        let (got, response) =
            decode_response::<SaslHandshakeRequest>(frame, self.versions.handshake)
                .map_err(|e| self.protocol(e.to_string()))?;
        check_id(got, self.pending).map_err(|d| self.protocol(d))?;
        let response: SaslHandshakeResponse = response;
        if response.error_code != 0 {
            return Err(UpstreamError::Mechanism {
                host: self.host.clone(),
                mechanism: self.mechanism.name(),
                offered: response
                    .mechanisms
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(())
    }

    fn decode_authenticate(&self, frame: Bytes) -> Result<SaslAuthenticateResponse, UpstreamError> {
        let (got, response) =
            decode_response::<SaslAuthenticateRequest>(frame, self.versions.authenticate)
                .map_err(|e| self.protocol(e.to_string()))?;
        check_id(got, self.pending).map_err(|d| self.protocol(d))?;
        Ok(response)
    }

    /// The broker's refusal: its error code and message whole, with the error challenge
    /// that came before it (which names the reason, e.g. `invalid_token`).
    fn refused(&self, response: &SaslAuthenticateResponse) -> UpstreamError {
        let mut message = response
            .error_message
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_else(|| "(the broker sent no message)".to_owned());
        // Kafka's broker usually repeats the challenge as its error message: say it once.
        if let Some(challenge) = self.mechanism.challenge().filter(|c| !message.contains(c)) {
            message.push_str("; the broker's error challenge: ");
            message.push_str(challenge);
        }
        UpstreamError::Refused {
            host: self.host.clone(),
            mechanism: self.mechanism.name(),
            code: response.error_code,
            message,
        }
    }
}

/// Runs `conversation` over `exchange` to its end: the session lifetime, or why not.
pub(crate) async fn converse<E: Exchange>(
    exchange: &mut E,
    mut conversation: Conversation,
    seq: &mut Sequence,
) -> Result<i64, E::Error> {
    let mut request = conversation.start(seq);
    loop {
        let answer = exchange.exchange(&request).await?;
        match conversation.answer(answer, seq)? {
            Next::Send(next) => request = next,
            Next::Done(lifetime) => return Ok(lifetime),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::{Decodable as _, Encodable, HeaderVersion, Request};

    const VERSIONS: SaslVersions = SaslVersions {
        handshake: 1,
        authenticate: 2,
    };

    fn token() -> KafkaToken {
        let principal = Principal::new("app@p.iam.gserviceaccount.com").unwrap();
        KafkaToken::encode("ya29.secret", &principal, 2_000_000_000, 1_999_996_400)
    }

    /// The broker's answer to `request`, as a frame.
    fn answer<R: Request>(request: &OwnRequest, version: i16, body: &R::Response) -> Bytes {
        let mut out = BytesMut::new();
        out.extend_from_slice(&[0; 4]);
        ResponseHeader::default()
            .with_correlation_id(request.id)
            .encode(&mut out, R::Response::header_version(version))
            .unwrap();
        body.encode(&mut out, version).unwrap();
        let size = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&size.to_be_bytes());
        out.freeze()
    }

    fn handshake_ok(request: &OwnRequest) -> Bytes {
        answer::<SaslHandshakeRequest>(request, 1, &SaslHandshakeResponse::default())
    }

    fn authenticate(request: &OwnRequest, body: SaslAuthenticateResponse) -> Bytes {
        answer::<SaslAuthenticateRequest>(request, 2, &body)
    }

    /// Runs a conversation to its end against scripted SaslAuthenticate answers; returns
    /// the outcome and the auth bytes the proxy sent.
    fn run(
        mechanism: SaslMechanism,
        answers: Vec<SaslAuthenticateResponse>,
    ) -> (Result<i64, UpstreamError>, Vec<Bytes>) {
        let mut seq = Sequence::default();
        let mut conversation = Conversation::new(mechanism, "b1.invalid", VERSIONS, &token());
        let first = conversation.start(&mut seq);
        assert_eq!(first.during, "SaslHandshake");
        let mut next = conversation.answer(handshake_ok(&first), &mut seq);
        let mut sent = Vec::new();
        for body in answers {
            let request = match next {
                Ok(Next::Send(request)) => request,
                Ok(Next::Done(lifetime)) => return (Ok(lifetime), sent),
                Err(e) => return (Err(e), sent),
            };
            let mut frame = request.frame.clone().freeze().slice(4..);
            let header = kafka_protocol::messages::RequestHeader::decode(&mut frame, 2).unwrap();
            assert_eq!(header.correlation_id, request.id);
            let decoded = SaslAuthenticateRequest::decode(&mut frame, 2).unwrap();
            sent.push(decoded.auth_bytes);
            next = conversation.answer(authenticate(&request, body), &mut seq);
        }
        match next {
            Ok(Next::Done(lifetime)) => (Ok(lifetime), sent),
            Ok(Next::Send(_)) => panic!("the conversation wants more answers"),
            Err(e) => (Err(e), sent),
        }
    }

    #[test]
    fn plain_and_oauthbearer_succeed_with_the_brokers_session_lifetime() {
        let ok = SaslAuthenticateResponse::default().with_session_lifetime_ms(3_600_000);
        let (outcome, sent) = run(SaslMechanism::Plain, vec![ok.clone()]);
        assert_eq!(outcome.unwrap(), 3_600_000);
        assert_eq!(
            sent,
            [Bytes::from_static(
                b"\0app@p.iam.gserviceaccount.com\0ya29.secret"
            )]
        );
        let (outcome, sent) = run(SaslMechanism::OauthBearer, vec![ok]);
        assert_eq!(outcome.unwrap(), 3_600_000);
        assert!(sent[0].starts_with(b"n,,\x01auth=Bearer "));
    }

    #[test]
    fn an_oauthbearer_error_challenge_is_acknowledged_then_reported_with_the_refusal() {
        let challenge = r#"{"status":"invalid_token"}"#;
        let (outcome, sent) = run(
            SaslMechanism::OauthBearer,
            vec![
                SaslAuthenticateResponse::default()
                    .with_auth_bytes(Bytes::from_static(challenge.as_bytes())),
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str("Authentication failed"))),
            ],
        );
        assert_eq!(sent[1], Bytes::from_static(b"\x01"), "RFC 7628 %x01");
        assert_eq!(
            outcome.unwrap_err().to_string(),
            format!(
                "broker b1.invalid refused SASL/OAUTHBEARER authentication (error 58): Authentication failed; the broker's error challenge: {challenge}"
            )
        );
    }

    #[test]
    fn a_challenge_followed_by_success_is_a_protocol_error() {
        let (outcome, _) = run(
            SaslMechanism::OauthBearer,
            vec![
                SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from_static(b"{}")),
                SaslAuthenticateResponse::default(),
            ],
        );
        assert_eq!(
            outcome.unwrap_err().to_string(),
            "broker b1.invalid broke the protocol: it sent the SASL/OAUTHBEARER error challenge {} and then accepted the authentication"
        );
    }

    #[test]
    fn a_mechanism_the_broker_does_not_enable_names_what_it_offers() {
        let mut seq = Sequence::default();
        let mut conversation =
            Conversation::new(SaslMechanism::Plain, "b1.invalid", VERSIONS, &token());
        let first = conversation.start(&mut seq);
        let refusal = SaslHandshakeResponse::default()
            .with_error_code(ResponseError::UnsupportedSaslMechanism.code())
            .with_mechanisms(vec![StrBytes::from_static_str("OAUTHBEARER")]);
        let Err(err) = conversation.answer(
            answer::<SaslHandshakeRequest>(&first, 1, &refusal),
            &mut seq,
        ) else {
            panic!("accepted");
        };
        assert_eq!(
            err.to_string(),
            "broker b1.invalid does not enable SASL mechanism PLAIN (it offers: OAUTHBEARER); choose one with ProxyBuilder::with_sasl"
        );
    }
}
