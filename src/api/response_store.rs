//! Finished responses kept in memory for `GET /v1/responses/{id}`, `previous_response_id` and
//! `item_reference`.
//!
//! A response is kept as JSON text, never as parsed values (a parsed number array takes about
//! sixteen times its text): the response object exactly as GET serves it, and its conversation
//! as one JSON array, parsed again (on the blocking pool) only when a follow-up chains onto it.
//! So what the limits count is what is held: the texts, plus a fixed overhead per entry and per
//! indexed item id.
//!
//! Bounded three ways, oldest first out: at most `max_entries` responses, none older than
//! `max_age`, and at most `max_bytes` of them (`--response-store-max-entries`,
//! `--response-store-ttl`, `--response-store-max-bytes`). Nothing is written to disk, so a
//! restart forgets them all; a client chaining onto a forgotten id gets a 404, as OpenAI answers
//! for an unknown id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

/// What an entry costs beyond its texts (the maps' slots, the `Arc`, the ids held twice).
const ENTRY_OVERHEAD: usize = 256;
/// What an indexed item id costs beyond its text (its slot in the index, the response id).
const ITEM_OVERHEAD: usize = 96;

/// A stored response and the conversation it ends.
#[derive(Debug)]
pub struct StoredResponse {
    pub id: String,
    /// The response object's JSON, served as is.
    pub response: Bytes,
    /// A JSON array: the items of its input (including what it chained onto) followed by its
    /// output, reduced to what a prompt reads — the history of a follow-up.
    pub conversation: Bytes,
    /// The ids of the conversation's items that have one (for `item_reference`).
    pub item_ids: Vec<Box<str>>,
}

impl StoredResponse {
    /// The conversation's items (a parse: blocking work for a long one).
    pub fn conversation_items(&self) -> Vec<Value> {
        // Written by this server from values, so it parses; an empty history otherwise.
        serde_json::from_slice(&self.conversation).unwrap_or_default()
    }

    /// The conversation's item with this id.
    pub fn item(&self, item_id: &str) -> Option<Value> {
        self.conversation_items()
            .into_iter()
            .find(|item| item.get("id").and_then(Value::as_str) == Some(item_id))
    }

    /// The bytes the store counts for it.
    pub fn size(&self) -> usize {
        let ids: usize = self.item_ids.iter().map(|i| i.len() + ITEM_OVERHEAD).sum();
        ENTRY_OVERHEAD + self.id.len() + self.response.len() + self.conversation.len() + ids
    }
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
    /// Item id → the newest stored response holding that item.
    items: HashMap<Box<str>, String>,
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, id: &str) {
        let Some(entry) = self.entries.remove(id) else {
            return;
        };
        self.bytes -= entry.bytes;
        for item in &entry.stored.item_ids {
            if self.items.get(item).is_some_and(|owner| owner == id) {
                self.items.remove(item);
            }
        }
    }
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

    /// The stored response whose conversation holds the item with this id.
    pub fn holding_item(&self, item_id: &str) -> Option<Arc<StoredResponse>> {
        let now = Instant::now();
        let mut inner = self.lock();
        self.evict(&mut inner, now);
        let owner = inner.items.get(item_id)?;
        inner.entries.get(owner).map(|e| e.stored.clone())
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes counted now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn insert_at(&self, stored: StoredResponse, now: Instant) {
        let bytes = stored.size();
        if bytes > self.limits.max_bytes || self.limits.max_entries == 0 {
            return;
        }
        let id = stored.id.clone();
        let mut inner = self.lock();
        if inner.entries.contains_key(&id) {
            inner.remove(&id);
            inner.order.retain(|i| i != &id);
        }
        inner.bytes += bytes;
        for item in &stored.item_ids {
            inner.items.insert(item.clone(), id.clone());
        }
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
            let expired = inner
                .entries
                .get(oldest)
                .is_none_or(|entry| now.saturating_duration_since(entry.at) > self.limits.max_age);
            let over = inner.entries.len() > self.limits.max_entries
                || inner.bytes > self.limits.max_bytes;
            if !(expired || over) {
                break;
            }
            if let Some(id) = inner.order.pop_front() {
                inner.remove(&id);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the store, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(id: &str, filler: usize) -> StoredResponse {
        let item = json!({"type": "message", "id": format!("msg_{id}"), "role": "user", "content": "x".repeat(filler)});
        StoredResponse {
            id: id.into(),
            response: Bytes::from(format!("{{\"id\":\"{id}\"}}")),
            conversation: Bytes::from(json!([item]).to_string()),
            item_ids: vec![format!("msg_{id}").into()],
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
        assert!(store.bytes() <= limits.max_bytes);
    }

    #[test]
    fn the_count_is_the_text_held() {
        let store = ResponseStore::new(StoreLimits::default());
        let s = stored("a", 1000);
        let texts = s.response.len() + s.conversation.len();
        store.insert(s);
        let counted = store.bytes();
        assert!(
            counted >= texts && counted < texts + 1024,
            "{counted} vs {texts}"
        );
    }

    #[test]
    fn items_are_found_until_their_response_goes() {
        let limits = StoreLimits {
            max_entries: 1,
            ..StoreLimits::default()
        };
        let store = ResponseStore::new(limits);
        store.insert(stored("a", 3));
        let holder = store.holding_item("msg_a").expect("indexed");
        assert_eq!(holder.item("msg_a").unwrap()["content"], "xxx");
        assert!(holder.item("msg_b").is_none());
        store.insert(stored("b", 3));
        assert!(store.holding_item("msg_a").is_none(), "evicted with a");
        assert!(store.holding_item("msg_b").is_some());
    }
}
