//! What one client, and all of them together, can make the proxy hold.
//!
//! The proxy never holds a request whole: it reads a request's header (at most
//! [`Limits::connection_buffer`] bytes), decides from it, and streams the body to the broker
//! as it arrives, through the same buffer. Responses it does not rewrite stream the same way
//! (cut-through, in chunks of at most that buffer). Only responses it decodes to rewrite
//! broker addresses (Metadata, FindCoordinator, DescribeCluster, DescribeConfigs,
//! ApiVersions, KIP-951 / KIP-932 node endpoints) and its own SASL answers are held whole;
//! each is at most [`Limits::max_rewritten_response`] bytes, and all of them together are
//! charged [`DECODE_FACTOR`] times their size against one process-wide budget of
//! [`Limits::max_buffered_bytes`]. A response that would exceed the budget waits for room
//! instead (the broker's bytes stay in the kernel's socket buffer); a client that does not
//! read a rewritten answer within [`REWRITTEN_WRITE_TIMEOUT`] is disconnected, so the budget
//! cannot be held by a client that stopped reading.
//!
//! Hence the bound on resident memory, whatever clients and brokers send:
//!
//! ```text
//! RSS ≤ floor + max_connections × (2 × connection_buffer + PER_CONNECTION_OVERHEAD)
//!             + max_buffered_bytes
//! ```
//!
//! with `floor` the idle process (runtime, TLS roots, token cache: measured in
//! `docs/security.md`) and [`PER_CONNECTION_OVERHEAD`] the fixed cost of a connection pair
//! (two sockets, the TLS session's record buffers, the task, the in-flight queue of at most
//! [`Limits::max_in_flight`] small entries).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A rewritten response is charged this many times its size: the frame itself, the decoded
/// message (kafka-protocol's structs, a little larger than the wire form) and the re-encoded
/// frame exist at once.
pub const DECODE_FACTOR: usize = 3;

/// Fixed memory of one client connection and its broker connection apart from the two
/// buffers: rustls' record buffers (up to 16 KiB received plus the 64 KiB of plaintext it
/// accepts for sending), the task and the sockets' bookkeeping.
pub const PER_CONNECTION_OVERHEAD: usize = 96 * 1024;

/// How long a client may take to read a response the proxy rewrote (and holds whole).
pub const REWRITTEN_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default per-direction buffer of one connection.
pub const DEFAULT_CONNECTION_BUFFER: usize = 64 * 1024;
/// Default budget for responses held whole, all connections together.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;
/// Default size limit of one rewritten response: a Metadata answer for some 250,000
/// partitions.
pub const DEFAULT_MAX_REWRITTEN_RESPONSE: usize = 16 * 1024 * 1024;
/// Default requests in flight per connection: more than Kafka's own clients pipeline
/// (kafka-clients and librdkafka producers keep at most 5 for idempotence), so it never
/// slows them, yet one connection cannot queue thousands.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Default time a new connection has to send its first complete request header.
pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle timeout: Kafka's own `connections.max.idle.ms` (10 minutes).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// After a client stops sending (half-close, refusal), how long the answers to its requests
/// in flight may take to be delivered: kafka-clients' default `request.timeout.ms`.
pub const DRAIN_AFTER_CLIENT_STOPPED: Duration = Duration::from_secs(30);

/// The limits in force; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Client connections served at once, over all listeners.
    pub max_connections: usize,
    /// Bytes of each direction's buffer on one connection (also the largest request header
    /// accepted, and the chunk in which bodies are forwarded).
    pub connection_buffer: usize,
    /// Bytes of responses held whole for rewriting, all connections together (each charged
    /// [`DECODE_FACTOR`] times its size).
    pub max_buffered_bytes: usize,
    /// Largest response the proxy decodes and rewrites.
    pub max_rewritten_response: usize,
    /// Requests in flight on one connection before the proxy stops reading from it.
    pub max_in_flight: usize,
    /// Time a new connection has to send its first request header.
    pub first_request_timeout: Duration,
    /// A connection with nothing in flight and no byte either way for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            connection_buffer: DEFAULT_CONNECTION_BUFFER,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            max_rewritten_response: DEFAULT_MAX_REWRITTEN_RESPONSE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            first_request_timeout: DEFAULT_FIRST_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl Limits {
    /// The bound on resident memory above the idle floor, in bytes (see the module
    /// documentation).
    pub fn memory_bound_above_floor(&self) -> usize {
        self.max_connections
            .saturating_mul(2 * self.connection_buffer + PER_CONNECTION_OVERHEAD)
            .saturating_add(self.max_buffered_bytes)
    }
}

/// The process-wide budget for responses held whole.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    permits: Arc<Semaphore>,
    total: usize,
}

/// Why a response cannot be held.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BudgetError {
    #[error(
        "the broker's {what} answer is {size} bytes, more than the {limit}-byte limit on a response the proxy rewrites (raise the max rewritten response bytes: ProxyBuilder::with_max_rewritten_response_bytes)"
    )]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
}

impl Budget {
    pub fn new(total: usize) -> Self {
        // tokio's semaphore holds at most usize::MAX >> 3 permits; a budget is far below.
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Waits until `size` bytes (times [`DECODE_FACTOR`]) fit, then holds them until the
    /// permit is dropped. A response larger than the whole budget is charged the whole
    /// budget, so it waits for every other held response but is never refused for it.
    pub async fn hold(&self, size: usize) -> OwnedSemaphorePermit {
        let charge = size
            .saturating_mul(DECODE_FACTOR)
            .clamp(1, self.total)
            .min(u32::MAX as usize) as u32;
        self.permits
            .clone()
            .acquire_many_owned(charge)
            .await
            .expect("the budget's semaphore is never closed")
    }

    /// Bytes currently held (charged), for the metrics.
    pub fn in_use(&self) -> usize {
        self.total - self.permits.available_permits().min(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_bound_is_the_formula() {
        let limits = Limits {
            max_connections: 20,
            connection_buffer: 64 * 1024,
            max_buffered_bytes: 8 << 20,
            ..Limits::default()
        };
        assert_eq!(
            limits.memory_bound_above_floor(),
            20 * (128 * 1024 + 96 * 1024) + (8 << 20)
        );
    }

    #[tokio::test]
    async fn the_budget_makes_a_second_holder_wait_and_charges_the_decode_factor() {
        let budget = Budget::new(3000);
        let first = budget.hold(600).await;
        assert_eq!(budget.in_use(), 1800);
        let second = budget.clone();
        let waiting = tokio::spawn(async move { second.hold(600).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(budget.in_use(), 1800);
        drop(second);
        assert_eq!(budget.in_use(), 0);
        // Larger than the whole budget: charged the whole budget, not refused.
        let big = budget.hold(1 << 30).await;
        assert_eq!(budget.in_use(), 3000);
        drop(big);
    }
}
