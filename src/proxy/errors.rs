//! Why the proxy is not ready, and why [`Proxy::check`](super::Proxy::check) failed: typed,
//! each variant carrying what went wrong, with messages in library terms (builder methods,
//! not command-line flags; the binary maps them to its flags).

use std::sync::Arc;

use super::addresses::PortError;
use super::nodes::BindError;
use super::wire::{DecodeError, UpstreamError};
use crate::TokenError;

/// Why the bootstrap probe (one Metadata round trip through a bootstrap server) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// No bootstrap server is configured.
    #[error("no bootstrap server")]
    NoBootstrapServer,
    /// The last bootstrap server tried could not be connected to or authenticated with.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The bootstrap server's Metadata answer failed or did not decode.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The Metadata answer lists no brokers.
    #[error(
        "the bootstrap server's Metadata lists no brokers; the cluster is starting or being deleted"
    )]
    NoBrokers,
    /// A broker's local listener could not be set up.
    #[error(transparent)]
    Listener(#[from] BindError),
}

/// Why the bootstrap probe's Metadata round trip failed on a connection that connected and
/// authenticated; each names the bootstrap server.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Sending the request or reading the answer failed (the connection closed or broke).
    #[error("bootstrap server {host}:{port}: Metadata failed: {error}")]
    Exchange {
        /// The bootstrap server's host.
        host: String,
        /// Its port.
        port: u16,
        /// The I/O error.
        error: Arc<std::io::Error>,
    },
    /// The answer is larger than a response the proxy holds whole may be.
    #[error("bootstrap server {host}:{port}: Metadata failed: a {size}-byte Metadata answer")]
    TooLarge {
        /// The bootstrap server's host.
        host: String,
        /// Its port.
        port: u16,
        /// The answer's declared size.
        size: usize,
        /// The limit (ProxyBuilder::with_max_rewritten_response_bytes).
        limit: usize,
    },
    /// The answer does not decode as a Metadata response.
    #[error("bootstrap server {host}:{port}: {error}")]
    Decode {
        /// The bootstrap server's host.
        host: String,
        /// Its port.
        port: u16,
        /// What did not decode.
        error: DecodeError,
    },
}

/// Why [`Proxy::check`](super::Proxy::check) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The provider produced no Kafka token.
    #[error("no Kafka token from {token_source}: {error}")]
    Token {
        /// Where the provider's credentials come from.
        token_source: String,
        /// The provider's error (it never contains a secret).
        error: TokenError,
    },
    /// The bootstrap probe failed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// A broker's node id has no local port.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Why the proxy is not ready, from [`Proxy::readiness`](super::Proxy::readiness).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// The provider has not cached a Kafka token yet.
    #[error("no Kafka token cached yet from {token_source}")]
    NoToken {
        /// Where the provider's credentials come from.
        token_source: String,
    },
    /// The first bootstrap probe has not finished.
    #[error("the bootstrap Metadata round trip has not finished yet")]
    ProbePending,
    /// The last bootstrap probe failed.
    #[error(transparent)]
    Probe(ProbeError),
    /// A client's broker connection failed to open (since the last success).
    #[error("a client's broker connection failed: {0}")]
    ClientConnection(UpstreamError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_failures_name_the_server_and_keep_their_texts() {
        let exchange = ProbeError::from(MetadataError::Exchange {
            host: "b".to_owned(),
            port: 9092,
            error: Arc::new(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "early eof",
            )),
        });
        assert_eq!(
            exchange.to_string(),
            "bootstrap server b:9092: Metadata failed: early eof"
        );
        let large = MetadataError::TooLarge {
            host: "b".to_owned(),
            port: 9092,
            size: 70_000_000,
            limit: 1 << 20,
        };
        assert_eq!(
            large.to_string(),
            "bootstrap server b:9092: Metadata failed: a 70000000-byte Metadata answer"
        );
        let decode = MetadataError::Decode {
            host: "b".to_owned(),
            port: 9092,
            error: DecodeError::Body {
                api_key: 3,
                detail: "not enough bytes".to_owned(),
            },
        };
        assert_eq!(
            decode.to_string(),
            "bootstrap server b:9092: bad Ok(Metadata) response: not enough bytes"
        );
    }
}
