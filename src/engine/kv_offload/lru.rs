//! A byte-bounded least-recently-used index of stored blocks, shared by the host and disk tiers.

use std::collections::{BTreeMap, HashMap};

use crate::engine::block_digest::BlockDigest;

struct Slot<V> {
    value: V,
    bytes: usize,
    tick: u64,
}

pub struct LruIndex<V> {
    max_bytes: usize,
    used: usize,
    tick: u64,
    entries: HashMap<BlockDigest, Slot<V>>,
    order: BTreeMap<u64, BlockDigest>,
}

impl<V> LruIndex<V> {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub fn used_bytes(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: &BlockDigest) -> bool {
        self.entries.contains_key(key)
    }

    /// Whether an entry of `bytes` can ever fit.
    pub fn fits(&self, bytes: usize) -> bool {
        bytes <= self.max_bytes
    }

    /// Inserts (or replaces) `key` as the most recently used entry and returns the entries
    /// pushed out to stay within the bound, least recently used first. An entry larger than
    /// the whole bound is not kept (it comes back as pushed out).
    pub fn insert(&mut self, key: BlockDigest, value: V, bytes: usize) -> Vec<(BlockDigest, V)> {
        let mut out = Vec::new();
        if let Some(old) = self.remove(&key) {
            drop(old);
        }
        if !self.fits(bytes) {
            out.push((key, value));
            return out;
        }
        while self.used + bytes > self.max_bytes {
            match self.pop_oldest() {
                Some(evicted) => out.push(evicted),
                None => break,
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key);
        self.entries.insert(
            key,
            Slot {
                value,
                bytes,
                tick: self.tick,
            },
        );
        self.used += bytes;
        out
    }

    /// The entry, marked most recently used.
    pub fn touch(&mut self, key: &BlockDigest) -> Option<&V> {
        let slot = self.entries.get_mut(key)?;
        self.order.remove(&slot.tick);
        self.tick += 1;
        slot.tick = self.tick;
        self.order.insert(self.tick, *key);
        Some(&slot.value)
    }

    pub fn remove(&mut self, key: &BlockDigest) -> Option<V> {
        let slot = self.entries.remove(key)?;
        self.order.remove(&slot.tick);
        self.used -= slot.bytes;
        Some(slot.value)
    }

    pub fn pop_oldest(&mut self) -> Option<(BlockDigest, V)> {
        let (_, key) = self.order.pop_first()?;
        let slot = self.entries.remove(&key)?;
        self.used -= slot.bytes;
        Some((key, slot.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> BlockDigest {
        BlockDigest([i; 32])
    }

    #[test]
    fn least_recently_used_goes_first_and_the_bound_holds() {
        let mut lru = LruIndex::new(30);
        assert!(lru.insert(key(1), 1, 10).is_empty());
        assert!(lru.insert(key(2), 2, 10).is_empty());
        assert!(lru.insert(key(3), 3, 10).is_empty());
        assert_eq!(lru.touch(&key(1)), Some(&1));
        let out = lru.insert(key(4), 4, 15);
        assert_eq!(
            out.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [key(2), key(3)]
        );
        assert_eq!(lru.used_bytes(), 25);
        assert!(lru.contains(&key(1)) && lru.contains(&key(4)));
        let too_big = lru.insert(key(5), 5, 31);
        assert_eq!(too_big.len(), 1);
        assert!(!lru.contains(&key(5)));
        assert_eq!(lru.remove(&key(1)), Some(1));
        assert_eq!(lru.used_bytes(), 15);
        assert_eq!(lru.len(), 1);
    }
}
