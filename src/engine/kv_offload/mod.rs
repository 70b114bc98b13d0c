//! Offload tiers for blocks the prefix cache evicts: host memory (`--kv-offloading-size`) and
//! disk (`--kv-offload-dir`). An evicted block goes down instead of vanishing; a later prompt
//! whose prefix continues into blocks a tier holds gets them restored into the pool (and so
//! into its prefix-cache hit) instead of computing them again.
//!
//! The host tier, when there is one, takes evicted blocks first and passes what it pushes out
//! to the disk tier; without it blocks go straight to disk. Blocks are named by their
//! [`BlockDigest`] and stored in the checked [`format`]; a copy that fails a check is deleted
//! and its tokens are computed again.

pub mod disk;
pub mod format;
pub mod host;
pub mod lru;
pub mod offloader;
pub mod restore_cost;

use std::path::PathBuf;

use crate::engine::block_digest::{BlockDigest, BlockLink};
use crate::error::{Error, Result};
use disk::DiskTier;
use format::{BlockLayout, decode, encode};
use host::HostTier;

/// The tiers' flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvOffloadConfig {
    /// Bytes of host memory for evicted blocks (`--kv-offloading-size`; 0: no host tier).
    pub host_bytes: usize,
    /// `--kv-offload-dir`: where the disk tier keeps its files (`None`: no disk tier).
    pub dir: Option<PathBuf>,
    /// `--kv-offload-dir-size`: the disk tier's bound.
    pub dir_bytes: usize,
    /// What the KV depends on besides the tokens: the model's files and the flags that change
    /// its numbers (dtype, quantization). The pool's layout is added by the engine.
    pub model_identity: BlockDigest,
}

impl KvOffloadConfig {
    pub fn enabled(&self) -> bool {
        self.host_bytes > 0 || self.dir.is_some()
    }
}

/// Counters for `/metrics` and the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierCounters {
    pub stored: u64,
    pub restored: u64,
    /// Copies that failed a check (deleted, recomputed).
    pub rejected: u64,
    pub write_errors: u64,
}

pub struct KvTiers {
    layout: BlockLayout,
    namespace: BlockDigest,
    host: Option<HostTier>,
    disk: Option<DiskTier>,
    counters: TierCounters,
}

impl KvTiers {
    pub fn open(config: &KvOffloadConfig, layout: BlockLayout) -> Result<Self> {
        let namespace = namespace(&config.model_identity, &layout);
        let disk = match &config.dir {
            Some(dir) => Some(
                DiskTier::open(dir, &namespace, config.dir_bytes, layout.stored_bytes()).map_err(
                    |e| Error::config(format!("--kv-offload-dir {}: {e}", dir.display())),
                )?,
            ),
            None => None,
        };
        let host = (config.host_bytes > 0).then(|| HostTier::new(config.host_bytes));
        if let Some(disk) = &disk {
            tracing::info!(
                dir = %disk.dir().display(),
                blocks = disk.len(),
                bytes = disk.used_bytes(),
                "KV disk tier opened"
            );
        }
        Ok(Self {
            layout,
            namespace,
            host,
            disk,
            counters: TierCounters::default(),
        })
    }

    /// The pool's namespace: chains rooted in it name blocks these tiers may hold.
    pub fn namespace(&self) -> &BlockDigest {
        &self.namespace
    }

    pub fn counters(&self) -> TierCounters {
        self.counters
    }

    pub fn holds(&self, digest: &BlockDigest) -> bool {
        self.host.as_ref().is_some_and(|h| h.contains(digest))
            || self.disk.as_ref().is_some_and(|d| d.contains(digest))
    }

    /// Takes an evicted block's KV.
    pub fn store(&mut self, link: &BlockLink, tokens: &[u32], payload: &[u8]) {
        if self.holds(&link.digest) {
            return;
        }
        let stored = encode(&self.layout, link, tokens, payload);
        self.counters.stored += 1;
        let to_disk = match &mut self.host {
            Some(host) => host.put(link.digest, stored),
            None => vec![(link.digest, stored)],
        };
        if let Some(disk) = &mut self.disk {
            for (digest, stored) in to_disk {
                if let Err(e) = disk.put(digest, &stored) {
                    self.counters.write_errors += 1;
                    tracing::warn!(error = %e, "KV disk tier: a block was not written");
                }
            }
        }
    }

    /// Whether blocks outlive the process here (a disk tier).
    pub fn persists(&self) -> bool {
        self.disk.is_some()
    }

    /// Moves what the host tier holds to disk (at shutdown: host memory does not outlive the
    /// process).
    pub fn spill_host(&mut self) {
        let (Some(host), Some(disk)) = (&mut self.host, &mut self.disk) else {
            return;
        };
        for (digest, stored) in host.drain() {
            if let Err(e) = disk.put(digest, &stored) {
                self.counters.write_errors += 1;
                tracing::warn!(error = %e, "KV disk tier: a block was not written");
            }
        }
    }

    /// The KV of the block `link` holding `tokens`, if a tier has an intact copy of it. A
    /// copy that fails its checks is deleted.
    pub fn load(&mut self, link: &BlockLink, tokens: &[u32]) -> Option<Vec<u8>> {
        let from_host = self
            .host
            .as_mut()
            .and_then(|host| host.get(&link.digest).map(<[u8]>::to_vec));
        let stored = match from_host {
            Some(stored) => stored,
            None => self.disk.as_mut()?.get(&link.digest)?,
        };
        match decode(&stored, &self.layout, link, tokens) {
            Ok(payload) => {
                self.counters.restored += 1;
                Some(payload.to_vec())
            }
            Err(why) => {
                self.reject(link, &why);
                None
            }
        }
    }

    fn reject(&mut self, link: &BlockLink, why: &format::Rejected) {
        self.counters.rejected += 1;
        tracing::warn!(block = ?link.digest, ?why, "KV offload: a stored block failed its checks; recomputing it");
        if let Some(host) = &mut self.host {
            host.remove(&link.digest);
        }
        if let Some(disk) = &mut self.disk {
            disk.remove(&link.digest);
        }
    }
}

/// The model's identity and the pool's layout, as one digest (a tier's subdirectory).
fn namespace(model_identity: &BlockDigest, layout: &BlockLayout) -> BlockDigest {
    let words: Vec<u8> = layout
        .words()
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    BlockDigest::of_parts([
        b"tealight-kv-namespace-v1".as_slice(),
        &model_identity.0,
        &words,
    ])
}

/// The layout of a pool's blocks.
pub fn layout_of(cache: &crate::model::KvCache) -> BlockLayout {
    let (_, kv_heads, head_dim) = cache.slot_shape();
    let dtype = cache.dtype();
    let code = match dtype {
        candle_core::DType::F32 => 1,
        candle_core::DType::F16 => 2,
        candle_core::DType::BF16 => 3,
        candle_core::DType::F8E4M3 => 4,
        _ => 0xff,
    };
    BlockLayout {
        layers: cache.num_layers() as u32,
        kv_heads: kv_heads as u32,
        head_dim: head_dim as u32,
        block_size: cache.block_size() as u32,
        element: (code << 8) | dtype.size_in_bytes() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use format::tests::{block, layout};

    fn config(host_bytes: usize, dir: Option<PathBuf>) -> KvOffloadConfig {
        KvOffloadConfig {
            host_bytes,
            dir,
            dir_bytes: 1 << 20,
            model_identity: BlockDigest([1; 32]),
        }
    }

    #[test]
    fn host_overflow_goes_to_disk_and_both_restore() {
        let root = disk::tests::tempdir("tiers");
        let one = layout().stored_bytes();
        let mut tiers = KvTiers::open(&config(one, Some(root.clone())), layout()).unwrap();
        let (a, ta, pa) = block(1);
        let (b, tb, pb) = block(2);
        tiers.store(&a, &ta, &pa);
        tiers.store(&b, &tb, &pb); // pushes a to disk
        assert!(tiers.holds(&a.digest) && tiers.holds(&b.digest));
        assert_eq!(tiers.load(&a, &ta), Some(pa.clone()));
        assert_eq!(tiers.load(&b, &tb), Some(pb));
        assert_eq!(tiers.counters().restored, 2);
        // A different model (or layout) opens a different directory.
        let mut other = config(0, Some(root.clone()));
        other.model_identity = BlockDigest([2; 32]);
        let mut elsewhere = KvTiers::open(&other, layout()).unwrap();
        assert_eq!(elsewhere.load(&a, &ta), None);
        // The same model after a restart finds the disk copy.
        let mut again = KvTiers::open(&config(0, Some(root.clone())), layout()).unwrap();
        assert_eq!(again.load(&a, &ta), Some(pa));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_damaged_file_is_deleted_and_missed() {
        let root = disk::tests::tempdir("tiers-damaged");
        let mut tiers = KvTiers::open(&config(0, Some(root.clone())), layout()).unwrap();
        let (a, ta, pa) = block(1);
        tiers.store(&a, &ta, &pa);
        let dir = root.join(tiers.namespace().hex());
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        assert_eq!(tiers.load(&a, &ta), None);
        assert_eq!(tiers.counters().rejected, 1);
        assert!(!file.exists());
        assert!(!tiers.holds(&a.digest));
        std::fs::remove_dir_all(root).unwrap();
    }
}
