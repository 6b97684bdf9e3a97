//! Connections to the brokers: TCP (through the `--resolve` map), TLS with hostname
//! verification, then SASL (OAUTHBEARER or PLAIN) before any client byte is forwarded.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rustls::pki_types::ServerName;
use secrecy::ExposeSecret as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::frame;
use crate::{KafkaToken, TokenError};

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
        match self {
            Self::OauthBearer => "OAUTHBEARER",
            Self::Plain => "PLAIN",
        }
    }

    /// The initial client response: RFC 7628 for OAUTHBEARER, RFC 4616 for PLAIN.
    pub(crate) fn auth_bytes(self, token: &KafkaToken) -> Bytes {
        match self {
            Self::OauthBearer => {
                Bytes::from(format!("n,,\x01auth=Bearer {}\x01\x01", token.expose()))
            }
            Self::Plain => {
                let access = token.access_token();
                Bytes::from(format!(
                    "\0{}\0{}",
                    token.principal().as_str(),
                    access.expose_secret()
                ))
            }
        }
    }
}

/// A broker byte stream: TLS or (test brokers only) plain TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach and authenticate to brokers.
#[derive(Clone)]
pub(crate) struct Upstream {
    pub tls: Option<tokio_rustls::TlsConnector>,
    pub resolve: Arc<HashMap<String, IpAddr>>,
    /// `--forward-proxy`: dial every broker through it.
    pub forward: Option<Arc<super::dial::ForwardProxy>>,
    pub sasl: SaslMechanism,
    pub connect_timeout: Duration,
    pub max_frame: usize,
}

/// Why a broker connection could not be opened and authenticated.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// DNS found nothing (or failed).
    #[error("cannot resolve broker host {host}: {detail}; {hint}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's complaint.
        detail: String,
        /// What to do about it, for this kind of failure.
        hint: String,
    },
    /// TCP connect failed or timed out.
    #[error("cannot connect to broker {host}:{port} ({addr}): {detail}; {hint}")]
    Connect {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// The address dialled.
        addr: String,
        /// The error.
        detail: String,
        /// What to do about it, for this kind of failure.
        hint: &'static str,
    },
    /// The TLS handshake failed (certificate problems are named).
    #[error("TLS handshake with broker {host} failed: {detail}")]
    Tls {
        /// The host verified against.
        host: String,
        /// What went wrong, with the fix.
        detail: String,
    },
    /// No token: the credentials cannot produce one.
    #[error("no Kafka token to authenticate with: {0}")]
    Token(#[from] TokenError),
    /// The broker does not offer the mechanism.
    #[error(
        "broker {host} does not enable SASL mechanism {mechanism} (it offers: {offered}); choose one with --upstream-sasl"
    )]
    Mechanism {
        /// The host.
        host: String,
        /// What the proxy asked for.
        mechanism: &'static str,
        /// What the broker offers.
        offered: String,
    },
    /// The broker refused the credentials.
    #[error("broker {host} refused SASL/{mechanism} authentication (error {code}): {message}")]
    Refused {
        /// The host.
        host: String,
        /// The mechanism.
        mechanism: &'static str,
        /// The Kafka error code.
        code: i16,
        /// The broker's `error_message`, whole.
        message: String,
    },
    /// The broker's answers are not what Kafka sends.
    #[error("broker {host} broke the protocol: {detail}")]
    Protocol {
        /// The host.
        host: String,
        /// What was wrong.
        detail: String,
    },
    /// The connection dropped during set-up.
    #[error("broker {host} closed the connection during {during}: {detail}")]
    Io {
        /// The host.
        host: String,
        /// Which step.
        during: &'static str,
        /// The error.
        detail: String,
    },
}

/// Out of file descriptors: the fix is the process's limit, not the broker's address.
const FD_HINT: &str = "the proxy is out of file descriptors (each client uses two): raise its limit (ulimit -n, LimitNOFILE=) or lower --max-connections";

fn out_of_descriptors(err: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = err;
        false
    }
}

/// The fix for a failed TCP connect, by what failed (`None`: it timed out).
fn connect_hint(err: Option<&io::Error>) -> &'static str {
    match err {
        Some(e) if out_of_descriptors(e) => FD_HINT,
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            "the host answered but nothing listens on that port: check the bootstrap address and port (Managed Kafka's is 9092)"
        }
        _ => {
            "Managed Kafka brokers are reachable only from the cluster's VPC (use a VPN, bastion or Private Service Connect endpoint, or --forward-proxy), and the port is 9092"
        }
    }
}

/// The fix for a failed name resolution.
fn resolve_hint(host: &str, err: Option<&io::Error>) -> String {
    match err {
        Some(e) if out_of_descriptors(e) => FD_HINT.to_owned(),
        _ => format!("check the name, or map it with --resolve {host}=IP"),
    }
}

/// What authentication established on a broker connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Session {
    /// The broker's `session_lifetime_ms` (0: no expiry, no re-authentication needed).
    pub lifetime_ms: i64,
    /// The SaslHandshake / SaslAuthenticate versions to use again when re-authenticating.
    pub handshake_version: i16,
    pub authenticate_version: i16,
}

/// The correlation ids the proxy uses on a broker connection: its own sequence, so its own
/// requests can never collide with a client's.
#[derive(Debug, Default)]
pub(crate) struct Sequence(i32);

impl Sequence {
    pub fn next_id(&mut self) -> i32 {
        let id = self.0;
        self.0 = self.0.wrapping_add(1);
        id
    }
}

/// Encodes a request `R` at `version` with `correlation_id`, size prefix included.
pub(crate) fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("gcp-kafka-auth-handler")));
    let mut out = BytesMut::with_capacity(128);
    out.extend_from_slice(&[0; 4]);
    // Both encoders write into a growable buffer; they fail only on values out of a
    // version's range, which the proxy never builds.
    header
        .encode(&mut out, R::header_version(version))
        .expect("request header encodes");
    request.encode(&mut out, version).expect("request encodes");
    let size = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    out
}

/// Decodes a response frame (size prefix included) of `R` at `version`.
pub(crate) fn decode_response<R: Request>(
    frame: Bytes,
    version: i16,
) -> Result<(i32, R::Response), String> {
    let mut buf = frame.slice(frame::SIZE_LEN..);
    let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
        .map_err(|e| format!("bad response header: {e:#}"))?;
    let body = R::Response::decode(&mut buf, version)
        .map_err(|e| format!("bad {:?} response: {e:#}", ApiKey::try_from(R::KEY)))?;
    Ok((header.correlation_id, body))
}

impl Upstream {
    /// Opens a TCP (and TLS) connection to `host:port`.
    pub async fn connect(&self, host: &str, port: u16) -> Result<Box<dyn Io>, UpstreamError> {
        let tcp = match &self.forward {
            Some(forward) => self.connect_forwarded(forward, host, port).await?,
            None => self.connect_direct(host, port).await?,
        };
        // Kafka requests are small and latency-bound; never wait to coalesce them.
        let _ = tcp.set_nodelay(true);
        self.secure(tcp, host).await
    }

    /// TCP through the forward proxy, which resolves the name (unless --resolve maps it).
    async fn connect_forwarded(
        &self,
        forward: &super::dial::ForwardProxy,
        host: &str,
        port: u16,
    ) -> Result<TcpStream, UpstreamError> {
        let target = match self.resolve.get(host) {
            Some(ip) => ip.to_string(),
            None => host.to_owned(),
        };
        match tokio::time::timeout(self.connect_timeout, forward.connect(&target, port)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(UpstreamError::Connect {
                host: host.to_owned(),
                port,
                addr: format!("via {forward}"),
                detail: e.to_string(),
                hint: "check that the forward proxy can reach the broker",
            }),
            Err(_) => Err(UpstreamError::Connect {
                host: host.to_owned(),
                port,
                addr: format!("via {forward}"),
                detail: format!("timed out after {:?}", self.connect_timeout),
                hint: connect_hint(None),
            }),
        }
    }

    async fn connect_direct(&self, host: &str, port: u16) -> Result<TcpStream, UpstreamError> {
        let addrs: Vec<SocketAddr> = match self.resolve.get(host) {
            Some(ip) => vec![SocketAddr::new(*ip, port)],
            None => match tokio::net::lookup_host((host, port)).await {
                Ok(found) => found.collect(),
                Err(e) => {
                    return Err(UpstreamError::Resolve {
                        host: host.to_owned(),
                        detail: e.to_string(),
                        hint: resolve_hint(host, Some(&e)),
                    });
                }
            },
        };
        if addrs.is_empty() {
            return Err(UpstreamError::Resolve {
                host: host.to_owned(),
                detail: "no addresses".to_owned(),
                hint: resolve_hint(host, None),
            });
        }
        let mut last = None;
        let mut tcp = None;
        for addr in &addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    tcp = Some(stream);
                    break;
                }
                Ok(Err(e)) => last = Some((addr, e.to_string(), connect_hint(Some(&e)))),
                Err(_) => {
                    last = Some((
                        addr,
                        format!("timed out after {:?}", self.connect_timeout),
                        connect_hint(None),
                    ))
                }
            }
        }
        let Some(tcp) = tcp else {
            let (addr, detail, hint) = last.expect("at least one address was tried");
            return Err(UpstreamError::Connect {
                host: host.to_owned(),
                port,
                addr: addr.to_string(),
                detail,
                hint,
            });
        };
        Ok(tcp)
    }

    /// TLS on top of `tcp` when configured.
    async fn secure(&self, tcp: TcpStream, host: &str) -> Result<Box<dyn Io>, UpstreamError> {
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|e| UpstreamError::Tls {
            host: host.to_owned(),
            detail: format!("`{host}` is not a valid TLS server name: {e}"),
        })?;
        match tokio::time::timeout(self.connect_timeout, tls.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(e)) => Err(UpstreamError::Tls {
                host: host.to_owned(),
                detail: describe_tls_error(host, &e),
            }),
            Err(_) => Err(UpstreamError::Tls {
                host: host.to_owned(),
                detail: format!(
                    "no answer within {:?}; is this the broker's TLS port?",
                    self.connect_timeout
                ),
            }),
        }
    }

    /// ApiVersions, SaslHandshake v1 and SaslAuthenticate v1+ on a fresh connection.
    pub async fn authenticate(
        &self,
        stream: &mut Box<dyn Io>,
        host: &str,
        seq: &mut Sequence,
        token: &KafkaToken,
    ) -> Result<Session, UpstreamError> {
        let io_err = |during: &'static str| {
            move |e: io::Error| UpstreamError::Io {
                host: host.to_owned(),
                during,
                detail: e.to_string(),
            }
        };
        let protocol = |detail: String| UpstreamError::Protocol {
            host: host.to_owned(),
            detail,
        };
        // ApiVersions v0 is understood by every broker and is enough to pick the SASL versions.
        let id = seq.next_id();
        let request = encode_request(&ApiVersionsRequest::default(), 0, id);
        let frame = self
            .exchange(stream, &request)
            .await
            .map_err(io_err("ApiVersions"))?;
        let (got, versions) = decode_response::<ApiVersionsRequest>(frame, 0).map_err(protocol)?;
        check_id(got, id).map_err(protocol)?;
        let range = |key: ApiKey| {
            versions
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .map(|k| (k.min_version, k.max_version))
        };
        let handshake_version = match range(ApiKey::SaslHandshake) {
            Some((_, max)) if max >= 1 => 1,
            other => {
                return Err(protocol(format!(
                    "it does not offer SaslHandshake v1 (offers {other:?}); is this a Kafka 1.0+ SASL listener?"
                )));
            }
        };
        let authenticate_version = match range(ApiKey::SaslAuthenticate) {
            Some((_, max)) if max >= 1 => max.min(2),
            other => {
                return Err(protocol(format!(
                    "it does not offer SaslAuthenticate v1+ (offers {other:?}), so session lifetimes cannot be known"
                )));
            }
        };
        let session = Session {
            lifetime_ms: 0,
            handshake_version,
            authenticate_version,
        };
        let request = handshake_request(self.sasl, handshake_version, seq.next_id());
        let frame = self
            .exchange(stream, &request.1)
            .await
            .map_err(io_err("SaslHandshake"))?;
        check_handshake(self.sasl, host, request.0, frame, handshake_version)?;
        let request = authenticate_request(self.sasl, token, authenticate_version, seq.next_id());
        let frame = self
            .exchange(stream, &request.1)
            .await
            .map_err(io_err("SaslAuthenticate"))?;
        let lifetime_ms =
            match check_authenticate(self.sasl, host, request.0, frame, authenticate_version)? {
                AuthAnswer::Done(lifetime_ms) => lifetime_ms,
                AuthAnswer::Challenge(challenge) => {
                    let (id, request) = challenge_ack_request(authenticate_version, seq.next_id());
                    let frame = self
                        .exchange(stream, &request)
                        .await
                        .map_err(io_err("SaslAuthenticate"))?;
                    return Err(refusal_after_challenge(
                        self.sasl,
                        host,
                        id,
                        frame,
                        authenticate_version,
                        &challenge,
                    ));
                }
            };
        Ok(Session {
            lifetime_ms,
            ..session
        })
    }

    /// Writes one request and reads one response frame.
    async fn exchange(&self, stream: &mut Box<dyn Io>, request: &[u8]) -> io::Result<Bytes> {
        stream.write_all(request).await?;
        stream.flush().await?;
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).await?;
        let len = frame::complete_frame_len(&size, self.max_frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        debug_assert!(len.is_none());
        let body_len = u32::from_be_bytes(size) as usize;
        let mut out = BytesMut::with_capacity(4 + body_len);
        out.extend_from_slice(&size);
        out.resize(4 + body_len, 0);
        stream.read_exact(&mut out[4..]).await?;
        Ok(out.freeze())
    }
}

fn check_id(got: i32, sent: i32) -> Result<(), String> {
    if got == sent {
        Ok(())
    } else {
        Err(format!("answered correlation id {got} to request {sent}"))
    }
}

/// A SaslHandshake request: (correlation id, frame).
pub(crate) fn handshake_request(sasl: SaslMechanism, version: i16, id: i32) -> (i32, BytesMut) {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(sasl.name()));
    (id, encode_request(&request, version, id))
}

/// A SaslAuthenticate request with a fresh initial response: (correlation id, frame).
pub(crate) fn authenticate_request(
    sasl: SaslMechanism,
    token: &KafkaToken,
    version: i16,
    id: i32,
) -> (i32, BytesMut) {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(sasl.auth_bytes(token));
    (id, encode_request(&request, version, id))
}

/// Checks a SaslHandshake response.
pub(crate) fn check_handshake(
    sasl: SaslMechanism,
    host: &str,
    id: i32,
    frame: Bytes,
    version: i16,
) -> Result<(), UpstreamError> {
    let protocol = |detail: String| UpstreamError::Protocol {
        host: host.to_owned(),
        detail,
    };
    let (got, response) =
        decode_response::<SaslHandshakeRequest>(frame, version).map_err(protocol)?;
    check_id(got, id).map_err(protocol)?;
    let response: SaslHandshakeResponse = response;
    if response.error_code != 0 {
        return Err(UpstreamError::Mechanism {
            host: host.to_owned(),
            mechanism: sasl.name(),
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

/// What a SaslAuthenticate answer without an error code means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthAnswer {
    /// Authenticated; the broker's `session_lifetime_ms`.
    Done(i64),
    /// RFC 7628 §3.2.2: an OAUTHBEARER server refuses a token with an error *challenge*
    /// (`{"status":"invalid_token",...}` in `auth_bytes`, error code 0) and fails the
    /// authentication only once the client answers `%x01`. Kafka's broker does exactly this,
    /// so the challenge is a refusal, never a success.
    Challenge(String),
}

/// Checks a SaslAuthenticate response: the session lifetime, or the broker's RFC 7628 error
/// challenge (OAUTHBEARER only) that the caller must acknowledge with
/// [`challenge_ack_request`] before reading the refusal with [`refusal_after_challenge`].
pub(crate) fn check_authenticate(
    sasl: SaslMechanism,
    host: &str,
    id: i32,
    frame: Bytes,
    version: i16,
) -> Result<AuthAnswer, UpstreamError> {
    let response = decode_authenticate(host, id, frame, version)?;
    if response.error_code != 0 {
        return Err(refused(sasl, host, &response, None));
    }
    if sasl == SaslMechanism::OauthBearer && !response.auth_bytes.is_empty() {
        return Ok(AuthAnswer::Challenge(
            String::from_utf8_lossy(&response.auth_bytes).into_owned(),
        ));
    }
    Ok(AuthAnswer::Done(response.session_lifetime_ms))
}

/// The client's `%x01` answer to an RFC 7628 error challenge: (correlation id, frame).
pub(crate) fn challenge_ack_request(version: i16, id: i32) -> (i32, BytesMut) {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\x01"));
    (id, encode_request(&request, version, id))
}

/// The refusal that follows an acknowledged error challenge: the broker's error code and
/// message with the challenge's JSON (which names the reason, e.g. `invalid_token`).
pub(crate) fn refusal_after_challenge(
    sasl: SaslMechanism,
    host: &str,
    id: i32,
    frame: Bytes,
    version: i16,
    challenge: &str,
) -> UpstreamError {
    match decode_authenticate(host, id, frame, version) {
        Ok(response) if response.error_code != 0 => refused(sasl, host, &response, Some(challenge)),
        Ok(_) => UpstreamError::Protocol {
            host: host.to_owned(),
            detail: format!(
                "it sent the SASL/{} error challenge {challenge} and then accepted the authentication",
                sasl.name()
            ),
        },
        Err(err) => err,
    }
}

fn decode_authenticate(
    host: &str,
    id: i32,
    frame: Bytes,
    version: i16,
) -> Result<SaslAuthenticateResponse, UpstreamError> {
    let protocol = |detail: String| UpstreamError::Protocol {
        host: host.to_owned(),
        detail,
    };
    let (got, response) =
        decode_response::<SaslAuthenticateRequest>(frame, version).map_err(protocol)?;
    check_id(got, id).map_err(protocol)?;
    Ok(response)
}

fn refused(
    sasl: SaslMechanism,
    host: &str,
    response: &SaslAuthenticateResponse,
    challenge: Option<&str>,
) -> UpstreamError {
    let mut message = response
        .error_message
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "(the broker sent no message)".to_owned());
    // Kafka's broker usually repeats the challenge as its error message: say it once.
    if let Some(challenge) = challenge.filter(|c| !message.contains(c)) {
        message.push_str("; the broker's error challenge: ");
        message.push_str(challenge);
    }
    UpstreamError::Refused {
        host: host.to_owned(),
        mechanism: sasl.name(),
        code: response.error_code,
        message,
    }
}

/// The TLS failure in words, naming the certificate problem and the fix.
fn describe_tls_error(host: &str, err: &io::Error) -> String {
    use rustls::{CertificateError, Error};
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
    match inner {
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            "the broker's certificate is signed by an unknown issuer; if the cluster uses a private CA, pass its PEM with --upstream-ca-file".to_owned()
        }
        Some(Error::InvalidCertificate(CertificateError::NotValidForName))
        | Some(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
            format!(
                "the broker's certificate is not valid for the name `{host}`; connect by the name the cluster advertises (map it with --resolve {host}=IP instead of dialling an IP)"
            )
        }
        Some(Error::InvalidCertificate(CertificateError::Expired))
        | Some(Error::InvalidCertificate(CertificateError::ExpiredContext { .. })) => {
            "the broker's certificate has expired".to_owned()
        }
        Some(Error::InvalidCertificate(other)) => {
            format!("the broker's certificate was refused: {other:?}")
        }
        Some(Error::InvalidMessage(_)) | Some(Error::InappropriateMessage { .. }) => format!(
            "the broker did not answer with TLS ({err}); if this is a plaintext test broker, use --upstream-tls=false"
        ),
        _ => err.to_string(),
    }
}

/// Reads the next `u32` big-endian size of a buffer (used by tests).
#[cfg(test)]
fn size_of(frame: &[u8]) -> u32 {
    use bytes::Buf as _;
    (&frame[..4]).get_u32()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;

    fn token() -> KafkaToken {
        let principal = Principal::new("app@p.iam.gserviceaccount.com").unwrap();
        KafkaToken::encode("ya29.secret", &principal, 2_000_000_000, 1_999_996_400)
    }

    #[test]
    fn initial_responses_are_rfc_7628_and_rfc_4616() {
        let token = token();
        let oauth = SaslMechanism::OauthBearer.auth_bytes(&token);
        assert_eq!(
            oauth,
            Bytes::from(format!("n,,\x01auth=Bearer {}\x01\x01", token.expose()))
        );
        let plain = SaslMechanism::Plain.auth_bytes(&token);
        assert_eq!(
            plain,
            Bytes::from_static(b"\0app@p.iam.gserviceaccount.com\0ya29.secret")
        );
    }

    #[test]
    fn requests_are_framed_with_the_proxy_client_id() {
        let frame = encode_request(&ApiVersionsRequest::default(), 0, 7);
        // size, key 18, version 0, correlation 7, client id "gcp-kafka-auth-handler".
        let mut expected = vec![0, 0, 0, 32, 0, 18, 0, 0, 0, 0, 0, 7, 0, 22];
        expected.extend_from_slice(b"gcp-kafka-auth-handler");
        assert_eq!(&frame[..], &expected[..]);
        assert_eq!(size_of(&frame) as usize, frame.len() - 4);
    }
}
