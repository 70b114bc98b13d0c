//! The host-memory tier: evicted blocks kept in RAM up to `--kv-offloading-size`.
//!
//! Beside a GPU pool it holds what the device evicted, a PCIe copy away. Beside a CPU pool it
//! adds memory the pool was not given (the pool itself is host memory).

use super::lru::LruIndex;
use crate::engine::block_digest::BlockDigest;

pub struct HostTier {
    blocks: LruIndex<Vec<u8>>,
}

impl HostTier {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            blocks: LruIndex::new(max_bytes),
        }
    }

    pub fn contains(&self, key: &BlockDigest) -> bool {
        self.blocks.contains(key)
    }

    /// Keeps a stored block; returns those pushed out (for the tier below).
    pub fn put(&mut self, key: BlockDigest, stored: Vec<u8>) -> Vec<(BlockDigest, Vec<u8>)> {
        let bytes = stored.len();
        self.blocks.insert(key, stored, bytes)
    }

    pub fn get(&mut self, key: &BlockDigest) -> Option<&[u8]> {
        self.blocks.touch(key).map(Vec::as_slice)
    }

    /// Takes every block out, least recently used first.
    pub fn drain(&mut self) -> Vec<(BlockDigest, Vec<u8>)> {
        std::iter::from_fn(|| self.blocks.pop_oldest()).collect()
    }

    pub fn remove(&mut self, key: &BlockDigest) {
        self.blocks.remove(key);
    }

    pub fn used_bytes(&self) -> usize {
        self.blocks.used_bytes()
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}
