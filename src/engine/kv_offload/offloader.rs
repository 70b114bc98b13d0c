//! The engine's side of the tiers: saves the KV of blocks the pool evicts before a forward pass
//! can overwrite it, and restores into the pool the blocks a tier holds that continue the next
//! admission's prefix-cache hit, so admission finds them as hits.

use std::sync::Arc;
use std::time::Instant;

use super::KvTiers;
use super::restore_cost::RestoreCost;
use crate::engine::block_digest::BlockLink;
use crate::engine::block_manager::BlockId;
use crate::engine::metrics::EngineMetrics;
use crate::engine::pool_events::PoolEvent;
use crate::engine::scheduler::Scheduler;
use crate::model::KvCache;

pub struct Offloader {
    tiers: KvTiers,
    cost: RestoreCost,
    metrics: Arc<EngineMetrics>,
    /// The tiers' rejection count already on `/metrics`.
    rejected_reported: u64,
}

/// Blocks reserved in the pool for a restore, with what each must hold.
pub struct Restore {
    blocks: Vec<BlockId>,
    links: Vec<BlockLink>,
    chunks: Vec<Vec<u32>>,
}

impl Offloader {
    pub fn new(tiers: KvTiers, metrics: Arc<EngineMetrics>) -> Self {
        Self {
            tiers,
            cost: RestoreCost::default(),
            metrics,
            rejected_reported: 0,
        }
    }

    pub fn tiers(&self) -> &KvTiers {
        &self.tiers
    }

    /// A step computed `prompt_tokens` prompt tokens in `took`.
    pub fn observe_prefill(&mut self, prompt_tokens: usize, took: std::time::Duration) {
        self.cost.observe_prefill(prompt_tokens, took);
    }

    /// Saves the KV of the evicted blocks among `events` (still intact in `cache`).
    pub fn save_evicted(&mut self, events: &[PoolEvent], cache: &KvCache) {
        for event in events {
            let PoolEvent::Evicted {
                block,
                link,
                tokens,
            } = event
            else {
                continue;
            };
            if self.tiers.holds(&link.digest) {
                continue;
            }
            match cache.read_block(*block) {
                Ok(payload) => {
                    self.tiers.store(link, tokens, &payload);
                    self.metrics.kv_offload_stored.inc();
                }
                Err(e) => tracing::warn!(error = %e, "KV offload: an evicted block was not read"),
            }
        }
    }

    /// Saves every block the pool holds registered, and what the host tier holds, to disk:
    /// a restarted server then finds the whole prefix cache, not only what was evicted.
    pub fn persist(&mut self, pool: &crate::engine::block_manager::BlockManager, cache: &KvCache) {
        if !self.tiers.persists() {
            return;
        }
        let started = Instant::now();
        let events: Vec<PoolEvent> = pool
            .registered()
            .into_iter()
            .map(|(block, link, tokens)| PoolEvent::Evicted {
                block,
                link,
                tokens,
            })
            .collect();
        self.save_evicted(&events, cache);
        self.tiers.spill_host();
        tracing::info!(
            blocks = events.len(),
            ms = started.elapsed().as_millis() as u64,
            "KV disk tier: the prefix cache is saved"
        );
    }

    /// Reserves pool blocks for the tier-held blocks that continue the prefix-cache hit of the
    /// next sequence admission will consider, when restoring pays. The caller saves what the
    /// reservation evicted, then calls [`Self::fill`].
    pub fn plan<T>(
        &mut self,
        scheduler: &mut Scheduler<T>,
        parked: impl Fn(&T) -> bool,
    ) -> Option<Restore> {
        if !self.cost.restore_pays() {
            return None;
        }
        let (salt, tokens) = scheduler.next_admission(parked)?;
        let blocks = scheduler.blocks_mut();
        let hits = blocks.lookup(salt.as_deref(), &tokens);
        // Leave the slack admission keeps for running decodes.
        let slack = blocks.num_blocks() / 100 + 1;
        let room = blocks.num_free().saturating_sub(slack);
        // Hashed only as far as a tier holds the chain (and the pool has room for it).
        let mut links: Vec<BlockLink> = blocks
            .links_after(salt.as_deref(), &tokens, &hits)
            .take(room)
            .take_while(|l| self.tiers.holds(&l.digest))
            .collect();
        if links.is_empty() {
            return None;
        }
        let reserved = blocks.reserve_restored(salt.as_ref(), &tokens, &hits, &links);
        links.truncate(reserved.len());
        let bs = blocks.block_size();
        let chunks = (0..reserved.len())
            .map(|i| tokens[(hits.len() + i) * bs..][..bs].to_vec())
            .collect();
        Some(Restore {
            links,
            blocks: reserved,
            chunks,
        })
    }

    /// Fills the reserved blocks from the tiers, in chain order, up to the first block no
    /// tier can supply intact; the pool keeps those filled.
    pub fn fill<T>(&mut self, restore: Restore, scheduler: &mut Scheduler<T>, cache: &KvCache) {
        let started = Instant::now();
        let mut filled = 0;
        for ((&block, link), chunk) in restore
            .blocks
            .iter()
            .zip(&restore.links)
            .zip(&restore.chunks)
        {
            let Some(payload) = self.tiers.load(link, chunk) else {
                break;
            };
            if let Err(e) = cache.write_block(block, &payload) {
                tracing::warn!(error = %e, "KV offload: a block was not restored");
                break;
            }
            filled += 1;
        }
        let rejected = self.tiers.counters().rejected;
        self.metrics
            .kv_offload_rejected
            .inc_by(rejected - self.rejected_reported);
        self.rejected_reported = rejected;
        scheduler
            .blocks_mut()
            .finish_restored(&restore.blocks, filled);
        self.metrics.kv_offload_restored.inc_by(filled as u64);
        let tokens = filled * cache.block_size();
        self.cost.observe_restore(tokens, started.elapsed());
        if filled > 0 {
            tracing::debug!(
                blocks = filled,
                ms = started.elapsed().as_millis() as u64,
                "KV offload: restored a prefix"
            );
        }
    }
}
