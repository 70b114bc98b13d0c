//! Continuous batching: each step picks which sequences run and how many tokens each feeds,
//! under a token budget and a sequence cap, the way vLLM's scheduler does.
//!
//! Order of business every step: running sequences first (decodes, and the next chunk of prompts
//! still prefilling), oldest first; then waiting sequences in arrival order (FIFO, no
//! overtaking). When the KV pool cannot give a running sequence its next block, the newest
//! running sequence is preempted: its blocks are freed and it goes back to the front of the
//! queue, to be recomputed later (its generated tokens are kept).

use super::block_manager::{BlockId, BlockManager};
use crate::batch::{BatchInput, SequenceChunk};
use std::collections::VecDeque;
use std::sync::Arc;

/// The scheduling view of a sequence: its tokens and where its KV lives.
#[derive(Debug, Clone)]
pub struct SequenceCore {
    pub id: u64,
    /// Prompt followed by every generated token.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Leading tokens whose KV is in the cache.
    pub num_computed: usize,
    pub block_table: Vec<BlockId>,
    pub block_hashes: Vec<u64>,
    /// Prompt tokens served by the prefix cache at the last admission.
    pub cached_tokens: usize,
    pub preemptions: u32,
    /// Prefix-cache blocks are shared only between sequences with the same salt.
    pub cache_salt: Option<Arc<str>>,
    /// Speculated continuation of `tokens`, fed after the pending token and checked by this
    /// step's logits; never part of `tokens` (see [`Scheduler::settle_draft`]).
    pub draft: Vec<u32>,
    /// Leading tokens whose KV in a draft model's cache is valid (never more than
    /// `num_computed`, once a step has settled).
    pub draft_computed: usize,
}

impl SequenceCore {
    pub fn new(id: u64, prompt: Vec<u32>) -> Self {
        Self {
            id,
            prompt_len: prompt.len(),
            tokens: prompt,
            num_computed: 0,
            block_table: Vec::new(),
            block_hashes: Vec::new(),
            cached_tokens: 0,
            preemptions: 0,
            cache_salt: None,
            draft: Vec::new(),
            draft_computed: 0,
        }
    }

    pub fn output_len(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// Tokens still to be fed before the next token can be sampled.
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.num_computed
    }
}

/// A sequence plus whatever the engine keeps beside it (sampler, detokenizer, channel).
pub struct Entry<T> {
    pub core: SequenceCore,
    pub data: T,
}

#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
}

/// One sequence's work in a step: feed `num_tokens` tokens starting at `num_computed`, then
/// `draft_tokens` tokens of its draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledChunk {
    /// Index into `Scheduler::running` after `schedule` returns.
    pub index: usize,
    pub num_tokens: usize,
    pub draft_tokens: usize,
}

#[derive(Debug, Default)]
pub struct StepStats {
    pub preempted: usize,
    pub prefix_queries: usize,
    pub prefix_hit_tokens: usize,
    pub prefix_query_tokens: usize,
}

/// What one step runs, as [`Scheduler::schedule`] decided it.
#[derive(Debug, Default)]
pub struct StepPlan {
    /// In running order (ascending indices).
    pub chunks: Vec<ScheduledChunk>,
    /// Indices into the running list of the sequences admitted from the queue this step
    /// (fresh or re-admitted after a preemption).
    pub admitted: Vec<usize>,
    pub stats: StepStats,
}

impl StepPlan {
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// Occupancy, for gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupancy {
    pub running: usize,
    pub waiting: usize,
    /// The waiting sequences that ran before and were preempted.
    pub preempted_waiting: usize,
    pub blocks_used: usize,
    pub blocks_total: usize,
}

pub struct Scheduler<T> {
    cfg: SchedulerConfig,
    blocks: BlockManager,
    waiting: VecDeque<Entry<T>>,
    running: Vec<Entry<T>>,
}

impl<T> Scheduler<T> {
    pub fn new(cfg: SchedulerConfig, blocks: BlockManager) -> Self {
        Self {
            cfg,
            blocks,
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    pub fn add(&mut self, entry: Entry<T>) {
        self.waiting.push_back(entry);
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Decides the next step: which sequences run and how many tokens each feeds.
    pub fn schedule(&mut self) -> StepPlan {
        self.schedule_with(|_| false)
    }

    /// [`Self::schedule`], skipping the sequences `parked` names (their clients stopped
    /// reading): they keep their place and their KV, but feed nothing. Under pressure (no
    /// blocks or no sequence slot for the next waiting sequence, or a running sequence short of
    /// blocks) parked sequences are preempted first, so they never hold up the others.
    pub fn schedule_with(&mut self, parked: impl Fn(&T) -> bool) -> StepPlan {
        let mut budget = self.cfg.max_num_batched_tokens;
        let mut plan = StepPlan::default();

        // Running sequences, oldest first. Decodes take one token; unfinished prefills take what
        // the budget leaves. A sequence that cannot get its blocks preempts a parked sequence,
        // else the newest.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            if parked(&self.running[i].data) {
                i += 1;
                continue;
            }
            let core = &mut self.running[i].core;
            let want = core.pending().min(budget);
            // A draft rides only on the last pending token, in what the budget leaves.
            let mut drafted = match want == core.pending() {
                true => core.draft.len().min(budget - want),
                false => 0,
            };
            core.draft.truncate(drafted);
            loop {
                let entry = &mut self.running[i];
                let target = entry.core.num_computed + want + drafted;
                if self.blocks.grow(&mut entry.core.block_table, target) {
                    plan.chunks.push(ScheduledChunk {
                        index: i,
                        num_tokens: want,
                        draft_tokens: drafted,
                    });
                    budget -= want + drafted;
                    i += 1;
                    break;
                }
                // A draft never costs another sequence its place: without room, it is dropped.
                if drafted > 0 {
                    drafted = 0;
                    entry.core.draft.clear();
                    continue;
                }
                let victim = self
                    .newest_parked(&parked)
                    .unwrap_or(self.running.len() - 1);
                self.evict(victim, &mut plan);
                if victim == i {
                    break;
                }
                if victim < i {
                    i -= 1;
                }
            }
        }

        // Waiting sequences in arrival order (parked ones skipped), while there is budget and
        // room.
        let mut w = 0;
        while budget > 0 && w < self.waiting.len() {
            if parked(&self.waiting[w].data) {
                w += 1;
                continue;
            }
            if self.running.len() >= self.cfg.max_num_seqs {
                if self.evict_parked(&parked, &mut plan) {
                    w += 1;
                    continue;
                }
                break;
            }
            let core = &self.waiting[w].core;
            let salt = core.cache_salt.as_deref();
            let hit_blocks = self.blocks.lookup(salt, &core.tokens).len();
            let cached = hit_blocks * self.blocks.block_size();
            let want = (core.tokens.len() - cached).min(budget);
            // Keep a sliver of the pool free for running decodes so admission does not thrash.
            let watermark = (self.blocks.num_blocks() / 100)
                .max(1)
                .min(self.blocks.num_free());
            let fresh = self
                .blocks
                .blocks_for(cached + want)
                .saturating_sub(hit_blocks);
            let short = fresh + watermark > self.blocks.num_free() && !self.running.is_empty();
            let alloc = if short {
                None
            } else {
                self.blocks.allocate(salt, &core.tokens, cached + want)
            };
            let Some(alloc) = alloc else {
                if self.evict_parked(&parked, &mut plan) {
                    w += 1;
                    continue;
                }
                break;
            };
            let Some(mut entry) = self.waiting.remove(w) else {
                break;
            };
            let stats = &mut plan.stats;
            stats.prefix_queries += 1;
            stats.prefix_query_tokens += entry.core.tokens.len();
            stats.prefix_hit_tokens += alloc.cached_tokens;
            entry.core.num_computed = alloc.cached_tokens;
            entry.core.cached_tokens = alloc.cached_tokens;
            entry.core.block_table = alloc.blocks;
            let want = entry.core.pending().min(budget);
            plan.chunks.push(ScheduledChunk {
                index: self.running.len(),
                num_tokens: want,
                draft_tokens: 0,
            });
            budget -= want;
            plan.admitted.push(self.running.len());
            self.running.push(entry);
        }
        plan
    }

    /// Gives running sequence `index` blocks for `tokens` tokens if the pool has them free,
    /// preempting nothing (a draft model writes its KV ahead of the step).
    pub fn reserve(&mut self, index: usize, tokens: usize) -> bool {
        let entry = &mut self.running[index];
        self.blocks.grow(&mut entry.core.block_table, tokens)
    }

    /// The running sequence at `index`, to change.
    pub fn running_entry_mut(&mut self, index: usize) -> &mut Entry<T> {
        &mut self.running[index]
    }

    /// The pool (for the offload tiers and the KV event stream).
    pub fn blocks_mut(&mut self) -> &mut BlockManager {
        &mut self.blocks
    }

    /// The salt and tokens of the waiting sequence admission considers next (the first not
    /// `parked`), if a sequence slot is free for it.
    pub fn next_admission(
        &self,
        parked: impl Fn(&T) -> bool,
    ) -> Option<(Option<Arc<str>>, Vec<u32>)> {
        if self.running.len() >= self.cfg.max_num_seqs {
            return None;
        }
        let next = self.waiting.iter().find(|e| !parked(&e.data))?;
        Some((next.core.cache_salt.clone(), next.core.tokens.clone()))
    }

    /// The newest running sequence that `parked` names.
    fn newest_parked(&self, parked: &impl Fn(&T) -> bool) -> Option<usize> {
        self.running.iter().rposition(|e| parked(&e.data))
    }

    /// Preempts the newest parked running sequence, if any (it goes to the head of the queue).
    fn evict_parked(&mut self, parked: &impl Fn(&T) -> bool, plan: &mut StepPlan) -> bool {
        match self.newest_parked(parked) {
            Some(victim) => {
                self.evict(victim, plan);
                true
            }
            None => false,
        }
    }

    /// Preempts `running[victim]` mid-schedule: drops its chunk and renumbers the later ones.
    fn evict(&mut self, victim: usize, plan: &mut StepPlan) {
        self.preempt(victim);
        plan.stats.preempted += 1;
        plan.chunks.retain(|c| c.index != victim);
        for c in plan.chunks.iter_mut().filter(|c| c.index > victim) {
            c.index -= 1;
        }
        plan.admitted.retain(|&a| a != victim);
        for a in plan.admitted.iter_mut().filter(|a| **a > victim) {
            *a -= 1;
        }
    }

    /// Frees a running sequence's blocks and puts it back at the head of the queue.
    fn preempt(&mut self, index: usize) {
        let mut entry = self.running.remove(index);
        self.blocks.free(&entry.core.block_table);
        entry.core.block_table.clear();
        entry.core.block_hashes.clear();
        entry.core.num_computed = 0;
        entry.core.draft.clear();
        entry.core.preemptions += 1;
        self.waiting.push_front(entry);
    }

    /// The step's flat batch: each chunk's tokens and where its KV lives.
    pub fn batch_input(&self, chunks: &[ScheduledChunk]) -> BatchInput {
        let mut batch = BatchInput::default();
        for chunk in chunks {
            let core = &self.running[chunk.index].core;
            let start = core.num_computed;
            let end = start + chunk.num_tokens;
            let draft = &core.draft[..chunk.draft_tokens];
            batch.token_ids.extend_from_slice(&core.tokens[start..end]);
            batch.token_ids.extend_from_slice(draft);
            let ends_input = end == core.tokens.len();
            batch.chunks.push(SequenceChunk {
                num_query_tokens: chunk.num_tokens + draft.len(),
                context_len: end + draft.len(),
                block_table: core.block_table.clone(),
                logits_tokens: if ends_input { 1 + draft.len() } else { 0 },
            });
        }
        batch
    }

    /// After the forward pass: records the computed tokens and registers newly full blocks for
    /// reuse. Returns how many of the step's tokens were prompt tokens.
    pub fn commit(&mut self, chunks: &[ScheduledChunk]) -> usize {
        let mut prompt_tokens = 0;
        for chunk in chunks {
            let core = &mut self.running[chunk.index].core;
            if core.num_computed < core.prompt_len {
                prompt_tokens += chunk.num_tokens;
            }
            core.num_computed += chunk.num_tokens;
            self.register_computed(chunk.index);
        }
        prompt_tokens
    }

    /// Registers the full blocks of running sequence `index`'s computed tokens for reuse.
    fn register_computed(&mut self, index: usize) {
        let core = &mut self.running[index].core;
        self.blocks.register_full_blocks(
            &core.block_table,
            core.cache_salt.as_ref(),
            &core.tokens,
            core.num_computed,
            &mut core.block_hashes,
        );
    }

    /// After a step's verification: the first `accepted` tokens of `core`'s draft were
    /// confirmed (they are now the tokens after the verified position), so their KV, written
    /// by the step, counts as computed and full blocks are registered for reuse. The rest of
    /// the draft's KV lies past `num_computed`: the next step overwrites it, and no block
    /// holding it is registered before then.
    pub fn settle_draft(&mut self, index: usize, accepted: usize) {
        let core = &mut self.running[index].core;
        core.draft.clear();
        if accepted == 0 {
            return;
        }
        core.num_computed += accepted;
        debug_assert!(core.num_computed <= core.tokens.len());
        self.register_computed(index);
    }

    /// After [`Self::commit`]: the sequences of the step whose next token is to be sampled
    /// (every input token computed), in running order — the rows of the step's logits.
    pub fn rows_to_sample(&mut self, chunks: &[ScheduledChunk]) -> Vec<&mut Entry<T>> {
        let mut scheduled = chunks.iter().map(|c| c.index).peekable();
        self.running
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| scheduled.next_if_eq(i).is_some())
            .map(|(_, e)| e)
            .filter(|e| e.core.pending() == 0)
            .collect()
    }

    /// The running sequence at `index` (a step's chunk's).
    pub fn running_at(&self, index: usize) -> &Entry<T> {
        &self.running[index]
    }

    /// The running sequences at `indices` (e.g. [`StepPlan::admitted`], or a step's chunks).
    pub fn running_at_mut(&mut self, indices: &[usize]) -> impl Iterator<Item = &mut Entry<T>> {
        self.running
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| indices.contains(i))
            .map(|(_, e)| e)
    }

    /// The ids of the sequences `chunks` feed.
    pub fn ids_of(&self, chunks: &[ScheduledChunk]) -> Vec<u64> {
        chunks
            .iter()
            .map(|c| self.running[c.index].core.id)
            .collect()
    }

    /// Every running sequence, oldest first.
    pub fn running_mut(&mut self) -> impl Iterator<Item = &mut Entry<T>> {
        self.running.iter_mut()
    }

    /// Every sequence, running then waiting.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<T>> {
        self.running.iter().chain(self.waiting.iter())
    }

    /// Every waiting sequence, in queue order.
    pub fn waiting_mut(&mut self) -> impl Iterator<Item = &mut Entry<T>> {
        self.waiting.iter_mut()
    }

    /// Empties the waiting queue.
    pub fn drain_waiting(&mut self) -> impl Iterator<Item = Entry<T>> + '_ {
        self.waiting.drain(..)
    }

    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            running: self.running.len(),
            waiting: self.waiting.len(),
            preempted_waiting: self
                .waiting
                .iter()
                .filter(|e| e.core.preemptions > 0)
                .count(),
            blocks_used: self.blocks.num_used(),
            blocks_total: self.blocks.num_blocks(),
        }
    }

    /// Removes finished (or cancelled) running sequences, freeing their blocks.
    pub fn retire(&mut self, mut finished: impl FnMut(&Entry<T>) -> bool) -> Vec<Entry<T>> {
        let mut done = Vec::new();
        let mut kept = Vec::with_capacity(self.running.len());
        for entry in self.running.drain(..) {
            if finished(&entry) {
                self.blocks.free(&entry.core.block_table);
                done.push(entry);
            } else {
                kept.push(entry);
            }
        }
        self.running = kept;
        done
    }

    /// Removes waiting sequences matching `cancelled` (their receivers were dropped).
    pub fn drop_waiting(&mut self, mut cancelled: impl FnMut(&Entry<T>) -> bool) -> usize {
        let before = self.waiting.len();
        self.waiting.retain(|e| !cancelled(e));
        before - self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(blocks: usize, bs: usize, seqs: usize, tokens: usize) -> Scheduler<()> {
        Scheduler::new(
            SchedulerConfig {
                max_num_seqs: seqs,
                max_num_batched_tokens: tokens,
            },
            BlockManager::new(blocks, bs, true),
        )
    }

    fn entry(id: u64, len: usize) -> Entry<()> {
        Entry {
            core: SequenceCore::new(id, (0..len as u32).map(|t| t + id as u32 * 1000).collect()),
            data: (),
        }
    }

    /// Runs a step: commits every chunk and appends a token to sequences that finished prefill.
    fn step(s: &mut Scheduler<()>) -> Vec<(u64, usize)> {
        let chunks = s.schedule().chunks;
        s.commit(&chunks);
        let mut out = Vec::new();
        for c in &chunks {
            let core = &mut s.running[c.index].core;
            out.push((core.id, c.num_tokens));
            if core.pending() == 0 {
                core.tokens.push(7);
            }
        }
        out
    }

    #[test]
    fn long_prompt_is_chunked_and_decodes_keep_flowing() {
        let mut s = sched(64, 4, 8, 10);
        s.add(entry(1, 3));
        assert_eq!(step(&mut s), vec![(1, 3)]);
        s.add(entry(2, 25));
        // Decode of 1 comes first, then 9 tokens of the long prompt.
        assert_eq!(step(&mut s), vec![(1, 1), (2, 9)]);
        assert_eq!(step(&mut s), vec![(1, 1), (2, 9)]);
        assert_eq!(step(&mut s), vec![(1, 1), (2, 7)]);
        assert_eq!(step(&mut s), vec![(1, 1), (2, 1)]);
    }

    #[test]
    fn fifo_admission_respects_the_sequence_cap() {
        let mut s = sched(64, 4, 2, 100);
        for id in 1..=3 {
            s.add(entry(id, 4));
        }
        assert_eq!(step(&mut s), vec![(1, 4), (2, 4)]);
        assert_eq!(s.waiting.front().map(|e| e.core.id), Some(3));
    }

    #[test]
    fn preempts_the_newest_when_blocks_run_out_and_recovers() {
        // 5 blocks of 2 tokens; two 3-token prompts take 2 blocks each.
        let mut s = sched(5, 2, 4, 100);
        s.add(entry(1, 3));
        s.add(entry(2, 3));
        assert_eq!(step(&mut s), vec![(1, 3), (2, 3)]);
        assert_eq!(step(&mut s), vec![(1, 1), (2, 1)]);
        // Both need a third block; only one is left, so the newest (2) is preempted.
        assert_eq!(step(&mut s), vec![(1, 1)]);
        let preempted = &s.waiting[0].core;
        assert_eq!(
            (preempted.id, preempted.num_computed, preempted.tokens.len()),
            (2, 0, 5)
        );
        s.retire(|e| e.core.id == 1);
        // Re-admitted: its full blocks are still in the prefix cache, so only the tail is recomputed.
        let StepPlan { chunks, stats, .. } = s.schedule();
        assert_eq!(
            chunks,
            vec![ScheduledChunk {
                index: 0,
                num_tokens: 1,
                draft_tokens: 0,
            }]
        );
        assert_eq!(stats.prefix_hit_tokens, 4);
        s.blocks.check_invariants().unwrap();
    }

    #[test]
    fn prefix_cache_hit_skips_computed_tokens() {
        let mut s = sched(32, 4, 4, 100);
        s.add(entry(1, 10));
        step(&mut s);
        let mut e = entry(2, 0);
        e.core = SequenceCore::new(
            2,
            s.running[0].core.tokens[..9]
                .iter()
                .copied()
                .chain([55, 56])
                .collect(),
        );
        s.add(e);
        let StepPlan { chunks, stats, .. } = s.schedule();
        assert_eq!(stats.prefix_hit_tokens, 8);
        assert_eq!(chunks[1].num_tokens, 3);
    }
}
