//! Finished responses kept in memory for `GET /v1/responses/{id}` and `previous_response_id`.
//!
//! Bounded three ways, oldest first out: at most `max_entries` responses, none older than
//! `max_age`, and at most `max_bytes` of them (measured as their JSON size). Nothing is
//! written to disk, so a restart forgets them all; a client chaining onto a forgotten id gets a
//! 404, as OpenAI answers for an unknown id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::types::ResponseObject;

/// A stored response and the conversation it ends: the items of its input (including what it
/// chained onto) followed by its output, ready to be the history of a follow-up.
#[derive(Debug)]
pub struct StoredResponse {
    pub response: ResponseObject,
    pub conversation: Vec<Value>,
}

#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    pub max_entries: usize,
    pub max_age: Duration,
    pub max_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_entries: 1024,
            max_age: Duration::from_secs(60 * 60),
            max_bytes: 256 << 20,
        }
    }
}

struct Entry {
    stored: Arc<StoredResponse>,
    at: Instant,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Ids in insertion order (so also in age order).
    order: VecDeque<String>,
    bytes: usize,
}

pub struct ResponseStore {
    limits: StoreLimits,
    inner: Mutex<Inner>,
}

impl ResponseStore {
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    pub fn insert(&self, stored: StoredResponse) {
        self.insert_at(stored, Instant::now());
    }

    pub fn get(&self, id: &str) -> Option<Arc<StoredResponse>> {
        self.get_at(id, Instant::now())
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_at(&self, stored: StoredResponse, now: Instant) {
        let bytes = json_size(&stored);
        if bytes > self.limits.max_bytes || self.limits.max_entries == 0 {
            return;
        }
        let id = stored.response.id.clone();
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(&id) {
            inner.bytes -= old.bytes;
            inner.order.retain(|i| i != &id);
        }
        inner.bytes += bytes;
        inner.order.push_back(id.clone());
        inner.entries.insert(
            id,
            Entry {
                stored: Arc::new(stored),
                at: now,
                bytes,
            },
        );
        self.evict(&mut inner, now);
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Arc<StoredResponse>> {
        let mut inner = self.lock();
        self.evict(&mut inner, now);
        inner.entries.get(id).map(|e| e.stored.clone())
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some(oldest) = inner.order.front() {
            let entry = &inner.entries[oldest];
            let expired = now.saturating_duration_since(entry.at) > self.limits.max_age;
            let over = inner.entries.len() > self.limits.max_entries
                || inner.bytes > self.limits.max_bytes;
            if !(expired || over) {
                break;
            }
            if let Some(id) = inner.order.pop_front()
                && let Some(e) = inner.entries.remove(&id)
            {
                inner.bytes -= e.bytes;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the store, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn json_size(stored: &StoredResponse) -> usize {
    let response = serde_json::to_string(&stored.response).map_or(0, |s| s.len());
    let conversation: usize = stored
        .conversation
        .iter()
        .map(|v| serde_json::to_string(v).map_or(0, |s| s.len()))
        .sum();
    response + conversation
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(id: &str, filler: usize) -> StoredResponse {
        StoredResponse {
            response: ResponseObject::in_progress(id.into(), "m".into(), 0),
            conversation: vec![json!({"role": "user", "content": "x".repeat(filler)})],
        }
    }

    #[test]
    fn count_age_and_size_bound_the_store() {
        let limits = StoreLimits {
            max_entries: 2,
            max_age: Duration::from_secs(10),
            max_bytes: 10_000,
        };
        let store = ResponseStore::new(limits);
        let t0 = Instant::now();
        store.insert_at(stored("a", 0), t0);
        store.insert_at(stored("b", 0), t0);
        store.insert_at(stored("c", 0), t0 + Duration::from_secs(5));
        assert!(store.get_at("a", t0).is_none(), "count: the oldest goes");
        assert!(store.get_at("b", t0 + Duration::from_secs(9)).is_some());
        assert!(
            store.get_at("b", t0 + Duration::from_secs(11)).is_none(),
            "age"
        );
        assert!(store.get_at("c", t0 + Duration::from_secs(11)).is_some());
        assert_eq!(store.len(), 1);

        store.insert_at(stored("big", 6_000), t0 + Duration::from_secs(12));
        store.insert_at(stored("big2", 6_000), t0 + Duration::from_secs(12));
        assert!(
            store.get_at("big", t0 + Duration::from_secs(12)).is_none(),
            "size"
        );
        assert!(store.get_at("big2", t0 + Duration::from_secs(12)).is_some());
        store.insert_at(stored("huge", 20_000), t0 + Duration::from_secs(12));
        assert!(
            store.get_at("huge", t0 + Duration::from_secs(12)).is_none(),
            "too big to keep"
        );
        assert!(store.get_at("big2", t0 + Duration::from_secs(12)).is_some());
    }
}
