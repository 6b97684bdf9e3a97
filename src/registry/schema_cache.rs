//! The in-memory cache of `GET /schemas/ids/N` answers.
//!
//! A schema id names one schema forever (the registry never reuses or edits one), so its
//! answer can be kept without expiry: a fleet of consumers decoding the same ids then costs
//! one Google round trip per id, not one per consumer start. The cache is bounded by entries
//! and by bytes, and forgets the oldest entries first (ids arrive roughly in registration
//! order, and a consumer asks for the ids it meets again and again, so recency of insertion
//! is a fair stand-in for use).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use http::HeaderValue;

/// One cached answer: a 200 body and its `Content-Type`.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// Answers by request path and query (the query selects a format or a subject, so it is
/// part of the key), oldest forgotten first.
#[derive(Debug)]
pub(crate) struct SchemaCache {
    max_entries: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Cached>,
    order: VecDeque<String>,
    bytes: usize,
}

impl SchemaCache {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            max_entries,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent before it can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, key: &str) -> Option<Cached> {
        self.lock().entries.get(key).cloned()
    }

    /// The largest body worth caching (a bigger one would push out everything else).
    pub(crate) fn max_body(&self) -> usize {
        self.max_bytes / 4
    }

    /// Keeps `value`, forgetting the oldest entries until both bounds hold. A body larger
    /// than [`max_body`](Self::max_body) is not kept.
    pub(crate) fn insert(&self, key: String, value: Cached) {
        if self.max_entries == 0 || value.body.len() > self.max_body() {
            return;
        }
        let mut inner = self.lock();
        if inner.entries.contains_key(&key) {
            return;
        }
        while !inner.order.is_empty()
            && (inner.entries.len() >= self.max_entries
                || inner.bytes + value.body.len() > self.max_bytes)
        {
            if let Some(oldest) = inner.order.pop_front()
                && let Some(gone) = inner.entries.remove(&oldest)
            {
                inner.bytes -= gone.body.len();
            }
        }
        inner.bytes += value.body.len();
        inner.order.push_back(key.clone());
        inner.entries.insert(key, value);
    }

    /// Entries and bytes held.
    #[cfg(test)]
    pub(crate) fn size(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(body: &'static str) -> Cached {
        Cached {
            content_type: None,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn the_oldest_entries_go_first_when_either_bound_is_reached() {
        let cache = SchemaCache::new(2, 40);
        cache.insert("/schemas/ids/1".into(), cached("aaaa"));
        cache.insert("/schemas/ids/2".into(), cached("bbbb"));
        cache.insert("/schemas/ids/3".into(), cached("cccc"));
        assert!(cache.get("/schemas/ids/1").is_none());
        assert_eq!(cache.get("/schemas/ids/3").unwrap().body, "cccc");
        assert_eq!(cache.size(), (2, 8));
        // 10 bytes is the largest body kept (a quarter of 40); two of them and the 4-byte
        // entry before do not fit in 40 bytes with a third.
        cache.insert("/schemas/ids/4".into(), cached("dddddddddd"));
        assert_eq!(cache.size(), (2, 14));
        cache.insert("/schemas/ids/5".into(), cached("eeeeeeeeeee"));
        assert!(cache.get("/schemas/ids/5").is_none(), "over max_body");
        assert_eq!(cache.size(), (2, 14));
    }

    #[test]
    fn a_cache_of_zero_entries_keeps_nothing() {
        let cache = SchemaCache::new(0, 1 << 20);
        cache.insert("/schemas/ids/1".into(), cached("a"));
        assert_eq!(cache.size(), (0, 0));
    }
}
