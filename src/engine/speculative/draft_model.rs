//! A draft model (vLLM's `draft_model` method): a smaller checkpoint with the target's
//! tokenizer proposes each draft greedily, one token per forward pass, batched over the
//! sequences that draft.
//!
//! Its KV cache has the target's block geometry and is addressed through the sequences' own
//! block tables: position p of a sequence lives in the same slot of the draft's cache as of
//! the target's, so the pool's blocks serve both and nothing is allocated per draft. A
//! sequence's `draft_computed` counts the leading tokens whose draft KV is valid; the first
//! pass of a proposal catches up from there through the pending token (a whole prompt, the
//! first time, in pieces of at most the step's token budget).

use crate::batch::{BatchInput, SequenceChunk};
use crate::error::{Error, Result};
use crate::model::{AttentionBackend, KvCache, Qwen3Model};
use crate::sampling::greedy_ids;

/// The draft model and its cache.
pub struct DraftModel {
    model: Qwen3Model,
    cache: KvCache,
    backend: AttentionBackend,
}

/// One sequence's share of a proposal.
pub struct DraftJob<'a> {
    /// The sequence's prompt and output so far (the last one pending).
    pub tokens: &'a [u32],
    /// Leading tokens whose draft KV is valid.
    pub computed: usize,
    /// Covers position `tokens.len() + k - 2` (where the last draft token but one goes).
    pub block_table: &'a [u32],
    /// Draft tokens wanted (0: only catch up).
    pub k: usize,
}

/// What a proposal did for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub draft: Vec<u32>,
    /// The job's new `computed`: its draft KV now runs this far (the draft tokens fed
    /// included; the engine keeps it only as far as they are accepted).
    pub computed: usize,
}

impl DraftModel {
    /// A draft model beside a target of `target_vocab` tokens, its cache `num_blocks` blocks
    /// of `block_size` in `kv_dtype` on the model's device.
    pub fn new(
        model: Qwen3Model,
        target_vocab: usize,
        num_blocks: usize,
        block_size: usize,
        kv_dtype: candle_core::DType,
        backend: AttentionBackend,
    ) -> Result<Self> {
        let vocab = model.config().vocab_size;
        if vocab != target_vocab {
            return Err(Error::config(format!(
                "--speculative-config: the draft model's vocabulary has {vocab} tokens, the \
                 served model's {target_vocab}: a draft model must share the tokenizer"
            )));
        }
        let cache = KvCache::new(
            model.config(),
            num_blocks,
            block_size,
            kv_dtype,
            model.device(),
        )?;
        Ok(Self {
            model,
            cache,
            backend,
        })
    }

    /// The longest context the draft model takes.
    pub fn max_positions(&self) -> usize {
        self.model.config().max_position_embeddings
    }

    /// Runs the proposal passes for `jobs`; a job's catch-up is cut to `catch_up_limit`
    /// tokens (then it drafts nothing this time).
    pub fn propose(&self, jobs: &[DraftJob<'_>], catch_up_limit: usize) -> Result<Vec<Proposal>> {
        let mut out: Vec<Proposal> = jobs
            .iter()
            .map(|j| Proposal {
                draft: Vec::new(),
                computed: j.computed,
            })
            .collect();
        // First pass: catch up through the pending token; its logits give the first draft
        // token.
        let mut batch = BatchInput::default();
        let mut drafting = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let len = job.tokens.len();
            let start = job.computed.min(len - 1);
            let end = len.min(start + catch_up_limit.max(1));
            let completes = end == len && job.k > 0;
            batch.token_ids.extend_from_slice(&job.tokens[start..end]);
            batch.chunks.push(SequenceChunk {
                num_query_tokens: end - start,
                context_len: end,
                block_table: job.block_table.to_vec(),
                logits_tokens: usize::from(completes),
            });
            out[i].computed = end;
            if completes {
                drafting.push(i);
            }
        }
        if batch.chunks.is_empty() {
            return Ok(out);
        }
        let mut next = self.greedy(&batch)?;
        // Later passes: each drafting sequence feeds its last draft token.
        loop {
            let mut still = Vec::new();
            let mut batch = BatchInput::default();
            for (&i, &token) in drafting.iter().zip(&next) {
                let job = &jobs[i];
                let proposal = &mut out[i];
                proposal.draft.push(token);
                if proposal.draft.len() == job.k {
                    continue;
                }
                // The token just proposed goes at the next position.
                let position = job.tokens.len() + proposal.draft.len() - 1;
                batch.token_ids.push(token);
                batch.chunks.push(SequenceChunk {
                    num_query_tokens: 1,
                    context_len: position + 1,
                    block_table: job.block_table.to_vec(),
                    logits_tokens: 1,
                });
                proposal.computed = position + 1;
                still.push(i);
            }
            if still.is_empty() {
                return Ok(out);
            }
            next = self.greedy(&batch)?;
            drafting = still;
        }
    }

    /// The draft model's greedy token for each chunk that asks for logits.
    fn greedy(&self, batch: &BatchInput) -> Result<Vec<u32>> {
        let logits = self.model.forward(batch, &self.cache, self.backend)?;
        if logits.dim(0)? == 0 {
            return Ok(Vec::new());
        }
        greedy_ids(&logits)
    }
}
