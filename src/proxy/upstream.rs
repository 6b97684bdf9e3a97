//! Connections to the brokers: TCP (through the `--resolve` map), TLS with hostname
//! verification, then ApiVersions and the SASL conversation (`sasl`) before any client byte
//! is forwarded; and the readiness probe's Metadata round trip on such a connection. All of
//! the proxy's broker I/O outside a client connection's forwarding is here.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest, MetadataResponse};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::errors::MetadataError;
use super::metrics::{AuthOutcome, ProxyMetrics};
use super::rewrite::BrokerAddress;
use super::sasl::{self, Conversation, Exchange, OwnRequest, SaslMechanism, SaslVersions};
use super::wire::{
    self, Io, Sequence, TlsProblem, UpstreamError, UpstreamHint, check_id, decode_response,
    encode_request, read_frame,
};
use crate::{KafkaToken, KafkaTokenProvider};

/// Metadata version of the start-up probe (Kafka 2.4 and later, every Managed Kafka version).
const PROBE_METADATA_VERSION: i16 = 9;

/// What authentication established on a broker connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Session {
    /// The broker's `session_lifetime_ms` (0: no expiry, no re-authentication needed).
    pub lifetime_ms: i64,
    /// The SaslHandshake / SaslAuthenticate versions to use again when re-authenticating.
    pub sasl: SaslVersions,
}

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

/// The broker dialer every connection and the bootstrap probe open broker connections with:
/// how to reach and authenticate to brokers, the provider whose tokens authenticate them, the
/// bootstrap servers, and the metrics each attempt's outcome is counted in.
pub(crate) struct Dialer {
    pub upstream: Upstream,
    pub provider: KafkaTokenProvider,
    pub bootstrap: Vec<(String, u16)>,
    pub metrics: Arc<ProxyMetrics>,
}

impl Dialer {
    /// [`Upstream::open`] with this dialer's provider and metrics.
    pub async fn open(
        &self,
        host: &str,
        port: u16,
        seq: &mut Sequence,
    ) -> Result<(Box<dyn Io>, Session), UpstreamError> {
        self.upstream
            .open(&self.provider, &self.metrics, host, port, seq)
            .await
    }
}

pub(super) fn out_of_descriptors(err: &io::Error) -> bool {
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
fn connect_hint(err: Option<&io::Error>) -> UpstreamHint {
    match err {
        Some(e) if out_of_descriptors(e) => UpstreamHint::OutOfDescriptors,
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => UpstreamHint::NothingListens,
        _ => UpstreamHint::OutsideVpc,
    }
}

/// The fix for a failed name resolution.
fn resolve_hint(err: Option<&io::Error>) -> UpstreamHint {
    match err {
        Some(e) if out_of_descriptors(e) => UpstreamHint::OutOfDescriptors,
        _ => UpstreamHint::CheckName,
    }
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
                hint: UpstreamHint::ForwardProxy,
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
                        hint: resolve_hint(Some(&e)),
                    });
                }
            },
        };
        if addrs.is_empty() {
            return Err(UpstreamError::Resolve {
                host: host.to_owned(),
                detail: "no addresses".to_owned(),
                hint: resolve_hint(None),
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
            problem: TlsProblem::Other(format!("`{host}` is not a valid TLS server name: {e}")),
        })?;
        match tokio::time::timeout(self.connect_timeout, tls.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(e)) => Err(UpstreamError::Tls {
                host: host.to_owned(),
                problem: describe_tls_error(host, &e),
            }),
            Err(_) => Err(UpstreamError::Tls {
                host: host.to_owned(),
                problem: TlsProblem::Other(format!(
                    "no answer within {:?}; is this the broker's TLS port?",
                    self.connect_timeout
                )),
            }),
        }
    }
}

impl Upstream {
    /// One broker connection: TCP, TLS, ApiVersions and SASL, within the connect timeout
    /// twice over (the connect and the authentication each have their own). Every outcome
    /// is counted in `metrics`.
    pub async fn open(
        &self,
        provider: &KafkaTokenProvider,
        metrics: &ProxyMetrics,
        host: &str,
        port: u16,
        seq: &mut Sequence,
    ) -> Result<(Box<dyn Io>, Session), UpstreamError> {
        let result = async {
            let mut stream = self.connect(host, port).await?;
            let token = provider.token().await?;
            let timeout = self.connect_timeout;
            match tokio::time::timeout(timeout, self.authenticate(&mut stream, host, seq, &token))
                .await
            {
                Ok(session) => Ok((stream, session?)),
                Err(_) => Err(UpstreamError::Io {
                    host: host.to_owned(),
                    during: "authentication",
                    detail: format!("no answer within {timeout:?}"),
                }),
            }
        }
        .await;
        match result {
            Ok((stream, session)) => {
                metrics.auth(false, AuthOutcome::Ok);
                tracing::debug!(broker = %host, session_lifetime_ms = session.lifetime_ms, "authenticated");
                Ok((stream, session))
            }
            Err(e) => {
                // Every failure counts, the token's too: "failed" is what an operator alerts on.
                let outcome = if matches!(e, UpstreamError::Refused { .. }) {
                    AuthOutcome::Refused
                } else {
                    AuthOutcome::Failed
                };
                metrics.auth(false, outcome);
                Err(e)
            }
        }
    }

    /// ApiVersions v0, then the SASL conversation (SaslHandshake v1, SaslAuthenticate v1+)
    /// on a fresh connection.
    pub async fn authenticate(
        &self,
        stream: &mut Box<dyn Io>,
        host: &str,
        seq: &mut Sequence,
        token: &KafkaToken,
    ) -> Result<Session, UpstreamError> {
        let protocol = |detail: String| UpstreamError::Protocol {
            host: host.to_owned(),
            detail,
        };
        let mut socket = Socket {
            stream,
            host,
            max_frame: self.max_frame,
        };
        // ApiVersions v0 is understood by every broker and is enough to pick the SASL versions.
        let id = seq.next_id();
        let request = OwnRequest {
            id,
            frame: encode_request(&ApiVersionsRequest::default(), 0, id),
            during: "ApiVersions",
        };
        let frame = socket.exchange(&request).await?;
        let (got, versions) =
            decode_response::<ApiVersionsRequest>(frame, 0).map_err(|e| protocol(e.to_string()))?;
        check_id(got, id).map_err(protocol)?;
        let range = |key: ApiKey| {
            versions
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .map(|k| (k.min_version, k.max_version))
        };
        let handshake = match range(ApiKey::SaslHandshake) {
            Some((_, max)) if max >= 1 => 1,
            other => {
                return Err(protocol(format!(
                    "it does not offer SaslHandshake v1 (offers {other:?}); is this a Kafka 1.0+ SASL listener?"
                )));
            }
        };
        let authenticate = match range(ApiKey::SaslAuthenticate) {
            Some((_, max)) if max >= 1 => max.min(2),
            other => {
                return Err(protocol(format!(
                    "it does not offer SaslAuthenticate v1+ (offers {other:?}), so session lifetimes cannot be known"
                )));
            }
        };
        let versions = SaslVersions {
            handshake,
            authenticate,
        };
        let conversation = Conversation::new(self.sasl, host, versions, token);
        let lifetime_ms = sasl::converse(&mut socket, conversation, seq).await?;
        Ok(Session {
            lifetime_ms,
            sasl: versions,
        })
    }
}

/// A fresh broker connection as an [`Exchange`]: write one request, read one answer.
struct Socket<'a> {
    stream: &'a mut Box<dyn Io>,
    host: &'a str,
    /// Set-up answers (ApiVersions, SASL) are small; never hold more for them.
    max_frame: usize,
}

impl Exchange for Socket<'_> {
    type Error = UpstreamError;

    async fn exchange(&mut self, request: &OwnRequest) -> Result<Bytes, UpstreamError> {
        let max_frame = self.max_frame;
        let io = async {
            self.stream.write_all(&request.frame).await?;
            self.stream.flush().await?;
            read_frame(self.stream, |size| wire::set_up_answer_len(size, max_frame)).await
        };
        io.await.map_err(|e| UpstreamError::Io {
            host: self.host.to_owned(),
            during: request.during,
            detail: e.to_string(),
        })
    }
}

/// The readiness probe's round trip on an authenticated connection to bootstrap server
/// `host:port`: Metadata with no topics, answered within `max_answer` bytes. `Err` says
/// why, naming the server.
pub(crate) async fn probe_metadata(
    stream: &mut Box<dyn Io>,
    host: &str,
    port: u16,
    seq: &mut Sequence,
    max_answer: usize,
) -> Result<Vec<BrokerAddress>, MetadataError> {
    let id = seq.next_id();
    let request = encode_request(
        &MetadataRequest::default().with_topics(Some(Vec::new())),
        PROBE_METADATA_VERSION,
        id,
    );
    let mut too_large = None;
    let answer = async {
        stream.write_all(&request).await?;
        read_frame(stream, |size| {
            let len = u32::from_be_bytes(size) as usize;
            if len > max_answer {
                too_large = Some(len);
                return Err(io::Error::other(format!("a {len}-byte Metadata answer")));
            }
            Ok(len)
        })
        .await
    }
    .await;
    let frame = answer.map_err(|error| match too_large {
        Some(size) => MetadataError::TooLarge {
            host: host.to_owned(),
            port,
            size,
            limit: max_answer,
        },
        None => MetadataError::Exchange {
            host: host.to_owned(),
            port,
            error: Arc::new(error),
        },
    })?;
    let (_, metadata): (i32, MetadataResponse) =
        decode_response::<MetadataRequest>(frame, PROBE_METADATA_VERSION).map_err(|error| {
            MetadataError::Decode {
                host: host.to_owned(),
                port,
                error,
            }
        })?;
    Ok(metadata
        .brokers
        .iter()
        .map(|b| BrokerAddress {
            node_id: b.node_id.0,
            host: b.host.as_str().to_owned(),
            port: u16::try_from(b.port).unwrap_or(0),
        })
        .collect())
}

/// The TLS failure in words, naming the certificate problem and the fix.
fn describe_tls_error(host: &str, err: &io::Error) -> TlsProblem {
    use rustls::{CertificateError, Error};
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
    match inner {
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            TlsProblem::UnknownIssuer
        }
        Some(Error::InvalidCertificate(CertificateError::NotValidForName))
        | Some(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
            TlsProblem::NotValidForName {
                host: host.to_owned(),
            }
        }
        Some(Error::InvalidCertificate(CertificateError::Expired))
        | Some(Error::InvalidCertificate(CertificateError::ExpiredContext { .. })) => {
            TlsProblem::Other("the broker's certificate has expired".to_owned())
        }
        Some(Error::InvalidCertificate(other)) => {
            TlsProblem::Other(format!("the broker's certificate was refused: {other:?}"))
        }
        Some(Error::InvalidMessage(_)) | Some(Error::InappropriateMessage { .. }) => {
            TlsProblem::NotTls(err.to_string())
        }
        _ => TlsProblem::Other(err.to_string()),
    }
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
}
