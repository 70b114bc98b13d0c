//! EAGLE-3 speculation (vLLM's `eagle3` method): a draft head reads the served model's hidden
//! states and proposes each draft token greedily, one pass per token, batched over sequences.
//!
//! The head at position p reads the served model's hidden states of p and the token at p + 1,
//! so it can only follow the served model: after each step, the positions whose input tokens
//! stand (a prompt chunk, a decode token, a verified draft's accepted part) are fed to the head
//! with the step's hidden states, which are then dropped ([`Eagle3Drafter::catch_up`]). The
//! last of them drafts the first token of the sequence's next draft; that token and the head's
//! hidden state there are the sequence's [`Seed`]. When the gate wants k tokens, k - 1 more
//! passes feed each token back ([`Eagle3Drafter::propose`]).
//!
//! The head's KV cache has the pool's block geometry and is addressed through the sequences'
//! own block tables, like a draft model's ([`super::draft_model`]). A block reused from the
//! prefix cache holds the head's KV of the request that wrote it; a draft read from it can only
//! be less likely to be accepted, never change an output.

use crate::batch::{BatchInput, SequenceChunk};
use crate::error::Result;
use crate::model::eagle3::Eagle3Head;
use crate::model::{AttentionBackend, KvCache};
use crate::sampling::greedy_ids;
use candle_core::Tensor;

/// The head and its cache.
pub struct Eagle3Drafter {
    head: Eagle3Head,
    cache: KvCache,
    backend: AttentionBackend,
}

/// Where a sequence's next draft starts: the head's first draft token and its hidden state
/// there (`[1, hidden]`).
#[derive(Debug, Clone)]
pub struct Seed {
    pub token: u32,
    hidden: Tensor,
}

/// One sequence's rows of a step the served model ran.
pub struct CatchUp<'a> {
    /// The sequence's tokens, the step's sampled ones included.
    pub tokens: &'a [u32],
    /// Position of the sequence's first row in the step.
    pub start: usize,
    /// Its rows that stand (their next token is known), from `start`.
    pub rows: usize,
    /// Where its first row is in the step's hidden states.
    pub offset: usize,
    pub block_table: &'a [u32],
}

/// One sequence's share of a proposal.
pub struct EagleJob<'a> {
    pub seed: &'a Seed,
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

    /// Feeds the head the rows of `jobs` (their hidden states are rows of `aux`, the step's
    /// `[tokens, 3 × hidden]`); returns each job's seed when its rows reach its pending token.
    pub fn catch_up(
        &self,
        jobs: &[CatchUp<'_>],
        aux: &Tensor,
        embed: Embed<'_>,
    ) -> Result<Vec<Option<Seed>>> {
        let mut batch = BatchInput::default();
        let mut picked = Vec::new();
        let mut seeds = Vec::with_capacity(jobs.len());
        for job in jobs.iter().filter(|j| j.rows > 0) {
            let end = job.start + job.rows;
            // Each position's next token.
            batch
                .token_ids
                .extend_from_slice(&job.tokens[job.start + 1..=end]);
            picked.extend((job.offset..job.offset + job.rows).map(|r| r as u32));
            let seeds_next = end + 1 == job.tokens.len();
            batch.chunks.push(SequenceChunk {
                num_query_tokens: job.rows,
                context_len: end,
                block_table: job.block_table.to_vec(),
                logits_tokens: usize::from(seeds_next),
            });
            seeds.push(seeds_next);
        }
        if batch.chunks.is_empty() {
            return Ok(jobs.iter().map(|_| None).collect());
        }
        let picked = Tensor::new(picked.as_slice(), aux.device())?;
        let hidden = self.head.fuse(&aux.index_select(&picked, 0)?)?;
        let mut out = self.pass(&batch, &hidden, embed)?.into_iter();
        let mut seeds = seeds.into_iter();
        Ok(jobs
            .iter()
            .map(|job| match job.rows > 0 && seeds.next() == Some(true) {
                true => out.next(),
                false => None,
            })
            .collect())
    }

    /// Drafts `k` tokens for each job: its seed's token, then one pass per further token.
    pub fn propose(&self, jobs: &[EagleJob<'_>], embed: Embed<'_>) -> Result<Vec<Vec<u32>>> {
        let mut drafts: Vec<Vec<u32>> = jobs.iter().map(|j| vec![j.seed.token]).collect();
        let mut last: Vec<Seed> = jobs.iter().map(|j| j.seed.clone()).collect();
        let mut active: Vec<usize> = (0..jobs.len()).filter(|&i| jobs[i].k > 1).collect();
        while !active.is_empty() {
            let mut batch = BatchInput::default();
            let mut hidden = Vec::with_capacity(active.len());
            for &i in &active {
                // Draft token j (1-based) came from position len - 3 + j; the next goes after.
                let position = jobs[i].len - 2 + drafts[i].len();
                batch.token_ids.push(last[i].token);
                batch.chunks.push(SequenceChunk {
                    num_query_tokens: 1,
                    context_len: position + 1,
                    block_table: jobs[i].block_table.to_vec(),
                    logits_tokens: 1,
                });
                hidden.push(&last[i].hidden);
            }
            let hidden = Tensor::cat(&hidden, 0)?;
            let next = self.pass(&batch, &hidden, embed)?;
            for (&i, seed) in active.iter().zip(next) {
                drafts[i].push(seed.token);
                last[i] = seed;
            }
            active.retain(|&i| drafts[i].len() < jobs[i].k);
        }
        Ok(drafts)
    }

    /// One pass; the greedy token (the served model's id) and hidden state of each row that
    /// asks for output.
    fn pass(&self, batch: &BatchInput, hidden: &Tensor, embed: Embed<'_>) -> Result<Vec<Seed>> {
        let ids = Tensor::new(batch.token_ids.as_slice(), self.head.device())?;
        let embeds = match self.head.embed(&ids)? {
            Some(own) => own,
            None => embed(&ids)?,
        };
        let out = self
            .head
            .forward(batch, &embeds, hidden, &self.cache, self.backend)?;
        if out.logits.dim(0)? == 0 {
            return Ok(Vec::new());
        }
        let tokens = self.head.to_target(&greedy_ids(&out.logits)?);
        tokens
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                Ok(Seed {
                    token,
                    hidden: out.hidden.narrow(0, i, 1)?,
                })
            })
            .collect()
    }
}
