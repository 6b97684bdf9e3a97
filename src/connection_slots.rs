//! The connections a server holds, for its accept loop to choose one to close when a new
//! client arrives at the connection limit. Shared by the token endpoint's HTTP server and the
//! Kafka proxy's listeners: in both, an idle connection costs a slot while doing nothing, and
//! one local process holding every slot with idle connections must not lock everyone out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The connections being served, for the accept loop to choose one to close when a new client
/// arrives at the connection limit.
///
/// Idle keep-alive connections (and connections that never sent a request) cost a slot while
/// doing nothing: one local process holding every slot with them would make every other
/// client wait for the idle timeout. So at the limit, the connection that has been idle
/// longest (no request in flight, oldest last activity) is closed for each new one. A
/// connection with a request in flight is never chosen; those are bounded by the request
/// deadline instead.
pub(crate) struct Connections {
    epoch: std::time::Instant,
    next_id: AtomicU64,
    slots: std::sync::Mutex<std::collections::HashMap<u64, Arc<ConnectionSlot>>>,
    /// When "connection limit reached" was last logged (ms since `epoch`), so an attack logs
    /// a line a minute, not one per connection.
    last_warning_ms: AtomicU64,
}

/// What the accept loop knows of one connection.
pub(crate) struct ConnectionSlot {
    pub id: u64,
    epoch: std::time::Instant,
    /// Requests being answered (0 or 1 on HTTP/1.1 without pipelining).
    pub in_flight: AtomicUsize,
    /// Accepted, or a request last started or finished, in ms since `epoch`.
    last_active_ms: AtomicU64,
    /// Set once chosen, so the next eviction picks another.
    evicting: AtomicBool,
    /// Woken to close the connection.
    pub evict: tokio::sync::Notify,
    /// Woken when the last request in flight is answered (the proxy waits for it before a
    /// re-authentication).
    #[cfg(feature = "proxy")]
    pub drained: tokio::sync::Notify,
}

/// Counts a request in flight on its connection until dropped (also when the request's
/// future is dropped unfinished).
pub(crate) struct RequestInFlight(Arc<ConnectionSlot>);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionSlot {
    pub fn touch(&self) {
        self.last_active_ms
            .store(millis_since(self.epoch), Ordering::Release);
    }

    pub fn begin_request(self: &Arc<Self>) -> RequestInFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        RequestInFlight(self.clone())
    }
}

fn millis_since(epoch: std::time::Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// At the limit with every connection busy, how often to look again for one turned idle.
pub(crate) const MAKE_ROOM_RETRY: Duration = Duration::from_millis(100);

/// Log "connection limit reached" at most this often.
const LIMIT_WARNING_INTERVAL_MS: u64 = 60_000;

impl Connections {
    pub fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            next_id: AtomicU64::new(0),
            slots: std::sync::Mutex::new(std::collections::HashMap::new()),
            last_warning_ms: AtomicU64::new(u64::MAX),
        }
    }

    pub fn register(&self) -> Arc<ConnectionSlot> {
        let slot = Arc::new(ConnectionSlot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(millis_since(self.epoch)),
            evicting: AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
            #[cfg(feature = "proxy")]
            drained: tokio::sync::Notify::new(),
        });
        self.lock().insert(slot.id, slot.clone());
        slot
    }

    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<ConnectionSlot>>> {
        // A panic while holding this lock leaves the map consistent (single inserts/removes).
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tells the connection idle longest to close, and says whether there was one; logs
    /// (rate-limited) that the limit was reached. Does nothing when every connection has a
    /// request in flight.
    pub fn make_room(&self, max_connections: usize) -> bool {
        let now = millis_since(self.epoch);
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if (last == u64::MAX || now.saturating_sub(last) >= LIMIT_WARNING_INTERVAL_MS)
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max_connections,
                "connection limit reached; closing the longest-idle connections to make room for new ones (logged at most once a minute)"
            );
        }
        let chosen = self
            .lock()
            .values()
            .filter(|slot| {
                slot.in_flight.load(Ordering::Acquire) == 0
                    && !slot.evicting.load(Ordering::Relaxed)
            })
            .min_by_key(|slot| slot.last_active_ms.load(Ordering::Acquire))
            .cloned();
        match chosen {
            Some(slot) => {
                slot.evicting.store(true, Ordering::Relaxed);
                // notify_one keeps the wake-up if the task is not waiting yet.
                slot.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// What only the proxy's connections use.
#[cfg(feature = "proxy")]
impl ConnectionSlot {
    /// Waits until no request is in flight.
    pub async fn wait_drained(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }

    /// Milliseconds since this connection was last active (accepted, or a request started
    /// or finished).
    pub fn idle_ms(&self) -> u64 {
        millis_since(self.epoch).saturating_sub(self.last_active_ms.load(Ordering::Acquire))
    }
}
