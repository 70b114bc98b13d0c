//! EAGLE-3 speculation (vLLM's `eagle3` method): a draft head reads the served model's hidden
//! states and proposes each draft token greedily, one pass per token, batched over sequences.
//!
//! The head at position p reads the served model's hidden states of p and the token at p + 1,
//! so it follows the served model: each step's positions whose input tokens stand (a prompt
//! chunk, a decode token, a verified draft's accepted part) are kept with their hidden states
//! ([`EagleState::push`]) until the head is fed them in one pass ([`Eagle3Drafter::catch_up`]):
//! when the sequence drafts, or once [`CATCH_UP_ROWS`] have gathered (a prompt chunk at once).
//! A sequence the gate keeps from drafting thus costs one batched pass every few dozen steps,
//! not one pass a step, and the head's output vocabulary is scored only when it drafts. The
//! last caught-up position's output is the sequence's seed: its logits give the first draft
//! token; each further token is one more pass fed the head's own output
//! ([`Eagle3Drafter::propose`]).
//!
//! The head's KV cache has the pool's block geometry and is addressed through the sequences'
//! own block tables, like a draft model's ([`super::draft_model`]). A block reused from the
//! prefix cache holds the head's KV of the request that wrote it; a draft read from it can only
//! be less likely to be accepted, never change an output.

use crate::batch::{BatchInput, SequenceChunk};
use crate::error::Result;
use crate::model::eagle3::Eagle3Head;
use crate::model::{AttentionBackend, KvCache};
use candle_core::Tensor;

/// Standing positions a sequence gathers before the head is fed them without a draft asking.
pub const CATCH_UP_ROWS: usize = 32;

/// The head and its cache.
pub struct Eagle3Drafter {
    head: Eagle3Head,
    cache: KvCache,
    backend: AttentionBackend,
}

/// What a sequence keeps for its head: positions not fed to it yet, and the output of the last
/// one fed.
#[derive(Debug, Default)]
pub struct EagleState {
    /// First position not fed yet.
    start: usize,
    /// The served model's hidden states of the positions from `start`, in order.
    pending: Vec<Tensor>,
    rows: usize,
    /// The head's output at the position before the pending token (`[1, hidden]`), when it is
    /// caught up that far.
    seed: Option<Tensor>,
}

impl EagleState {
    /// Keeps the standing positions from `start` whose hidden states are `aux`
    /// (`[rows, 3 × hidden]`). Positions that do not continue the kept ones (a preempted
    /// sequence computing again) start afresh.
    pub fn push(&mut self, start: usize, aux: Tensor) {
        let rows = aux.dims().first().copied().unwrap_or(0);
        if rows == 0 {
            return;
        }
        if self.rows > 0 && self.start + self.rows != start {
            self.pending.clear();
            self.rows = 0;
        }
        if self.rows == 0 {
            self.start = start;
        }
        self.pending.push(aux);
        self.rows += rows;
        self.seed = None;
    }

    /// Positions waiting for the head.
    pub fn pending_rows(&self) -> usize {
        self.rows
    }

    /// Whether the head can draft for the sequence (its seed, or positions that make one).
    pub fn can_draft(&self) -> bool {
        self.seed.is_some() || self.rows > 0
    }
}

/// One sequence's share of a catch-up.
pub struct CatchUp<'a> {
    /// The sequence's tokens.
    pub tokens: &'a [u32],
    pub block_table: &'a [u32],
    pub state: &'a mut EagleState,
}

/// One sequence's share of a proposal.
pub struct EagleJob<'a> {
    pub state: &'a EagleState,
    /// The sequence's length (its last token pending).
    pub len: usize,
    /// Covers position `len + k - 3`.
    pub block_table: &'a [u32],
    /// Draft tokens wanted (at least 1).
    pub k: usize,
}

/// The served model's input embeddings of some ids (the head's when it has none of its own).
pub type Embed<'a> = &'a dyn Fn(&Tensor) -> Result<Tensor>;

impl Eagle3Drafter {
    pub fn new(head: Eagle3Head, cache: KvCache, backend: AttentionBackend) -> Self {
        Self {
            head,
            cache,
            backend,
        }
    }

    pub fn head(&self) -> &Eagle3Head {
        &self.head
    }

    /// Feeds the head every job's pending positions in one pass; a job caught up through the
    /// position before its pending token gets its seed.
    pub fn catch_up(&self, jobs: &mut [CatchUp<'_>], embed: Embed<'_>) -> Result<()> {
        let mut batch = BatchInput::default();
        let mut hidden = Vec::new();
        let mut seeded = Vec::new();
        for (i, job) in jobs.iter_mut().enumerate() {
            let state = &mut *job.state;
            if state.rows == 0 {
                continue;
            }
            let end = state.start + state.rows;
            // Each position's next token.
            batch
                .token_ids
                .extend_from_slice(&job.tokens[state.start + 1..=end]);
            let seeds = end + 1 == job.tokens.len();
            batch.chunks.push(SequenceChunk {
                num_query_tokens: state.rows,
                context_len: end,
                block_table: job.block_table.to_vec(),
                logits_tokens: usize::from(seeds),
            });
            hidden.append(&mut state.pending);
            state.start = end;
            state.rows = 0;
            if seeds {
                seeded.push(i);
            }
        }
        if batch.chunks.is_empty() {
            return Ok(());
        }
        let hidden = self.head.fuse(&Tensor::cat(&hidden, 0)?)?;
        let out = self.pass(&batch, &hidden, embed)?;
        for (row, &i) in seeded.iter().enumerate() {
            jobs[i].state.seed = Some(out.narrow(0, row, 1)?);
        }
        Ok(())
    }

    /// Drafts `k` tokens for each job from its seed: the seed's token, then one pass per
    /// further token. Jobs must be caught up ([`Self::catch_up`]); one without a seed drafts
    /// nothing.
    pub fn propose(&self, jobs: &[EagleJob<'_>], embed: Embed<'_>) -> Result<Vec<Vec<u32>>> {
        let mut drafts: Vec<Vec<u32>> = jobs.iter().map(|_| Vec::new()).collect();
        let seeded: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].state.seed.is_some())
            .collect();
        if seeded.is_empty() {
            return Ok(drafts);
        }
        let seeds: Vec<&Tensor> = seeded
            .iter()
            .filter_map(|&i| jobs[i].state.seed.as_ref())
            .collect();
        let mut hidden = Tensor::cat(&seeds, 0)?;
        let mut tokens = self.head.draft_tokens(&hidden)?;
        let mut active = seeded;
        loop {
            for (&i, &token) in active.iter().zip(&tokens) {
                drafts[i].push(token);
            }
            let still: Vec<usize> = (0..active.len())
                .filter(|&a| drafts[active[a]].len() < jobs[active[a]].k)
                .collect();
            if still.is_empty() {
                return Ok(drafts);
            }
            let mut batch = BatchInput::default();
            for &a in &still {
                let i = active[a];
                // Draft token j (1-based) came from position len - 3 + j; the next goes after.
                let position = jobs[i].len - 2 + drafts[i].len();
                batch.token_ids.push(tokens[a]);
                batch.chunks.push(SequenceChunk {
                    num_query_tokens: 1,
                    context_len: position + 1,
                    block_table: jobs[i].block_table.to_vec(),
                    logits_tokens: 1,
                });
            }
            let picked: Vec<u32> = still.iter().map(|&a| a as u32).collect();
            let picked = Tensor::new(picked.as_slice(), hidden.device())?;
            hidden = self.pass(&batch, &hidden.index_select(&picked, 0)?, embed)?;
            tokens = self.head.draft_tokens(&hidden)?;
            active = still.iter().map(|&a| active[a]).collect();
        }
    }

    /// One pass; the head's output at each row that asks for it.
    fn pass(&self, batch: &BatchInput, hidden: &Tensor, embed: Embed<'_>) -> Result<Tensor> {
        let ids = Tensor::new(batch.token_ids.as_slice(), self.head.device())?;
        let embeds = match self.head.embed(&ids)? {
            Some(own) => own,
            None => embed(&ids)?,
        };
        self.head
            .forward(batch, &embeds, hidden, &self.cache, self.backend)
    }
}
