//! Why the proxy is not ready, and why [`Proxy::check`](super::Proxy::check) failed: typed,
//! each variant carrying what went wrong, with messages in library terms (builder methods,
//! not command-line flags; the binary maps them to its flags).

use super::addresses::PortError;
use super::nodes::BindError;
use super::wire::UpstreamError;
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
    #[error("{0}")]
    Metadata(String),
    /// The Metadata answer lists no brokers.
    #[error(
        "the bootstrap server's Metadata lists no brokers; the cluster is starting or being deleted"
    )]
    NoBrokers,
    /// A broker's local listener could not be set up.
    #[error(transparent)]
    Listener(#[from] BindError),
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
