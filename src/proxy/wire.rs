//! What travels on a broker connection the proxy opens: its own requests (their correlation
//! ids, encoding, the answers' decoding), the one frame read, and why a connection could not
//! be opened and authenticated. Used by `sasl` (the conversation), `upstream` (connect,
//! authenticate, the readiness probe's Metadata) and `connection` (re-authentication).

use std::io;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};

use super::frame;
use crate::TokenError;

/// A broker byte stream: TLS or (test brokers only) plain TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What to do about a broker host that did not resolve or connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamHint {
    /// The process ran out of file descriptors.
    #[error(
        "the proxy is out of file descriptors (each client uses two): raise its limit (ulimit -n, LimitNOFILE=) or lower ProxyBuilder::with_max_connections"
    )]
    OutOfDescriptors,
    /// The host refused the connection.
    #[error(
        "the host answered but nothing listens on that port: check the bootstrap address and port (Managed Kafka's is 9092)"
    )]
    NothingListens,
    /// The connection timed out or the network is unreachable.
    #[error(
        "Managed Kafka brokers are reachable only from the cluster's VPC (use a VPN, bastion or Private Service Connect endpoint, or ProxyBuilder::with_forward_proxy), and the port is 9092"
    )]
    OutsideVpc,
    /// The forward proxy could not connect.
    #[error("check that the forward proxy can reach the broker")]
    ForwardProxy,
    /// The name did not resolve.
    #[error("check the name, or map it to an IP with ProxyBuilder::with_resolve")]
    CheckName,
}

/// Why a TLS handshake with a broker failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsProblem {
    /// The certificate's issuer is not among the trusted roots.
    #[error(
        "the broker's certificate is signed by an unknown issuer; if the cluster uses a private CA, give its PEM with ProxyBuilder::with_upstream_ca_file or with_upstream_ca_pem"
    )]
    UnknownIssuer,
    /// The certificate does not name the host dialled.
    #[error(
        "the broker's certificate is not valid for the name `{host}`; connect by the name the cluster advertises (map it to an IP with ProxyBuilder::with_resolve instead of dialling an IP)"
    )]
    NotValidForName {
        /// The name verified against.
        host: String,
    },
    /// The broker did not speak TLS.
    #[error(
        "the broker did not answer with TLS ({0}); if this is a plaintext test broker, turn TLS off with ProxyBuilder::with_upstream_tls(false)"
    )]
    NotTls(String),
    /// Any other failure, in words.
    #[error("{0}")]
    Other(String),
}

/// Why a broker connection could not be opened and authenticated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// DNS found nothing (or failed).
    #[error("cannot resolve broker host {host}: {detail}; {hint}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's complaint.
        detail: String,
        /// What to do about it, for this kind of failure.
        hint: UpstreamHint,
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
        hint: UpstreamHint,
    },
    /// The TLS handshake failed (certificate problems are named).
    #[error("TLS handshake with broker {host} failed: {problem}")]
    Tls {
        /// The host verified against.
        host: String,
        /// What went wrong, with the fix.
        problem: TlsProblem,
    },
    /// No token: the credentials cannot produce one.
    #[error("no Kafka token to authenticate with: {0}")]
    Token(#[from] TokenError),
    /// The broker does not offer the mechanism.
    #[error(
        "broker {host} does not enable SASL mechanism {mechanism} (it offers: {offered}); choose one with ProxyBuilder::with_sasl"
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

/// A broker's answer that does not decode as the response the proxy asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The response header does not decode.
    #[error("bad response header: {detail}")]
    Header {
        /// The decoder's complaint.
        detail: String,
    },
    /// The response body does not decode as the request's response.
    #[error("bad {} response: {detail}", api_name(*.api_key))]
    Body {
        /// The request's API key.
        api_key: i16,
        /// The decoder's complaint.
        detail: String,
    },
}

/// An API key as the decode errors name it.
fn api_name(api_key: i16) -> String {
    format!("{:?}", ApiKey::try_from(api_key))
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
) -> Result<(i32, R::Response), DecodeError> {
    let mut buf = frame.slice(frame::SIZE_LEN..);
    let header =
        ResponseHeader::decode(&mut buf, R::Response::header_version(version)).map_err(|e| {
            DecodeError::Header {
                detail: format!("{e:#}"),
            }
        })?;
    let body = R::Response::decode(&mut buf, version).map_err(|e| DecodeError::Body {
        api_key: R::KEY,
        detail: format!("{e:#}"),
    })?;
    Ok((header.correlation_id, body))
}

/// Fails unless a response's correlation id is the request's.
pub(crate) fn check_id(got: i32, sent: i32) -> Result<(), String> {
    if got == sent {
        Ok(())
    } else {
        Err(format!("answered correlation id {got} to request {sent}"))
    }
}

/// Reads one whole frame (size prefix included) from a broker; `body_len` turns the size
/// prefix into the body's length, or refuses it.
pub(crate) async fn read_frame(
    stream: &mut (impl AsyncRead + Unpin),
    body_len: impl FnOnce([u8; 4]) -> io::Result<usize>,
) -> io::Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await?;
    let len = body_len(size)?;
    let mut out = BytesMut::with_capacity(4 + len);
    out.extend_from_slice(&size);
    out.resize(4 + len, 0);
    stream.read_exact(&mut out[4..]).await?;
    Ok(out.freeze())
}

/// The body length of a set-up answer (ApiVersions, SASL) at most `max_frame` bytes.
pub(crate) fn set_up_answer_len(size: [u8; 4], max_frame: usize) -> io::Result<usize> {
    frame::complete_frame_len(&size, max_frame)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(u32::from_be_bytes(size) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf as _;
    use kafka_protocol::messages::ApiVersionsRequest;

    #[test]
    fn requests_are_framed_with_the_proxy_client_id() {
        let frame = encode_request(&ApiVersionsRequest::default(), 0, 7);
        // size, key 18, version 0, correlation 7, client id "gcp-kafka-auth-handler".
        let mut expected = vec![0, 0, 0, 32, 0, 18, 0, 0, 0, 0, 0, 7, 0, 22];
        expected.extend_from_slice(b"gcp-kafka-auth-handler");
        assert_eq!(&frame[..], &expected[..]);
        assert_eq!((&frame[..4]).get_u32() as usize, frame.len() - 4);
    }
}
