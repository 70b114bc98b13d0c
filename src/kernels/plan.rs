//! The index arrays the attention kernels read, built once per step on the host from a
//! [`BatchInput`] and shared by every layer. The CUDA kernels and their CPU twins consume the very
//! same arrays (one packed `u32` buffer, one host→device copy per step), so everything here is
//! tested on the CPU.
//!
//! Work split:
//! - **paged** (`tl_paged_attention_*`): one item per query token in [`AttentionPlan::work_tokens`]
//!   (decode tokens, short chunks, and every token where the tensor-core path does not apply),
//!   fanned out over KV heads, head chunks of ≤ [`MAX_GROUP`] query heads, and key partitions of
//!   [`AttentionPlan::partition_size`] keys.
//! - **prefill** (`tl_prefill_attention_*`): chunks of at least [`PREFILL_MIN_QUERY`] tokens, as
//!   tiles of [`PREFILL_TILE_ROWS`] rows, a row being one (token, query head of the GQA group).

use crate::batch::{BatchInput, slot_of};
use std::ops::Range;

/// Query heads one paged CTA serves (they share its KV head).
pub const MAX_GROUP: usize = 8;
/// Query rows (token × head) per tensor-core prefill CTA.
pub const PREFILL_TILE_ROWS: usize = 64;
/// Keys per shared-memory block in the prefill kernel (and its twin's online-softmax step).
pub const PREFILL_TILE_KEYS: usize = 64;
/// Chunks with at least this many query tokens take the tensor-core prefill kernel (when it
/// applies); shorter ones are cheaper per token on the paged kernel, which splits long contexts.
pub const PREFILL_MIN_QUERY: usize = 16;
/// Key-partition sizes the paged kernel may use, largest first.
pub const PARTITION_SIZES: [usize; 4] = [512, 256, 128, 64];
/// Paged CTAs wanted before a smaller partition is tried: two per SM of an H100 (132 SMs). A
/// constant, not the device's count, so the CPU twin splits exactly like the GPU.
pub const TARGET_CTAS: usize = 264;

/// Attention geometry of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadShape {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl HeadShape {
    pub fn group(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Head chunks per KV head in the paged kernel.
    pub fn head_chunks(&self) -> usize {
        self.group().div_ceil(MAX_GROUP)
    }
}

/// Where each array lives in [`AttentionPlan::packed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRanges {
    /// `[T]` cache slot each token's K/V is written to.
    pub slots: Range<usize>,
    /// `[S * max_blocks]` block tables, row-major, padded with 0.
    pub block_tables: Range<usize>,
    /// `[T]` sequence (chunk index) of each token.
    pub token_seq: Range<usize>,
    /// `[T]` positions each token attends to: its position + 1 (causal).
    pub token_visible: Range<usize>,
    /// `[W]` tokens the paged kernel computes.
    pub work_tokens: Range<usize>,
    /// `[S]` flat index of each chunk's first token.
    pub seq_q_start: Range<usize>,
    /// `[S]` query tokens of each chunk.
    pub seq_q_len: Range<usize>,
    /// `[S]` context length of each chunk (cached prefix + this chunk).
    pub seq_ctx_len: Range<usize>,
    /// `[tiles]` chunk of each prefill tile.
    pub tile_seq: Range<usize>,
    /// `[tiles]` first row (token × group + head) of each prefill tile within its chunk.
    pub tile_row0: Range<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionPlan {
    pub shape: HeadShape,
    pub block_size: usize,
    pub num_tokens: usize,
    pub num_seqs: usize,
    /// Row length of the packed block tables (the most blocks any chunk needs).
    pub max_blocks: usize,
    pub partition_size: usize,
    /// Most partitions any work token has; 1 means no merge step.
    pub max_partitions: usize,
    pub packed: Vec<u32>,
    pub ranges: PlanRanges,
}

impl AttentionPlan {
    /// `tensor_core_prefill`: whether the prefill kernel exists for this dtype and head_dim
    /// (see [`super::prefill_supported`]); if not, every token goes to the paged kernel.
    pub fn new(
        batch: &BatchInput,
        block_size: usize,
        shape: HeadShape,
        tensor_core_prefill: bool,
    ) -> Self {
        let n = batch.chunks.len();
        let offsets = batch.query_offsets();
        let max_blocks = batch
            .chunks
            .iter()
            .map(|c| c.context_len.div_ceil(block_size))
            .max()
            .unwrap_or(0)
            .max(1);
        let group = shape.group();

        let mut tables = vec![0u32; n * max_blocks];
        let mut token_seq = Vec::with_capacity(batch.num_tokens());
        let mut token_visible = Vec::with_capacity(batch.num_tokens());
        let mut work_tokens = Vec::new();
        let (mut tile_seq, mut tile_row0) = (Vec::new(), Vec::new());
        for (s, chunk) in batch.chunks.iter().enumerate() {
            let needed = chunk.context_len.div_ceil(block_size);
            tables[s * max_blocks..][..needed].copy_from_slice(&chunk.block_table[..needed]);
            let first = chunk.first_position();
            for pos in first..chunk.context_len {
                token_seq.push(s as u32);
                token_visible.push(pos as u32 + 1);
            }
            if tensor_core_prefill && chunk.num_query_tokens >= PREFILL_MIN_QUERY {
                let rows = chunk.num_query_tokens * group;
                for row0 in (0..rows).step_by(PREFILL_TILE_ROWS) {
                    tile_seq.push(s as u32);
                    tile_row0.push(row0 as u32);
                }
            } else {
                work_tokens.extend((offsets[s]..offsets[s + 1]).map(|t| t as u32));
            }
        }

        let max_visible = work_tokens
            .iter()
            .map(|&t| token_visible[t as usize] as usize)
            .max()
            .unwrap_or(0);
        let partition_size = choose_partition(work_tokens.len(), max_visible, shape);
        let max_partitions = max_visible.div_ceil(partition_size).max(1);

        let mut packed = Vec::new();
        let mut push = |xs: &[u32]| {
            let start = packed.len();
            packed.extend_from_slice(xs);
            start..packed.len()
        };
        let ranges = PlanRanges {
            slots: push(&batch.slot_mapping(block_size)),
            block_tables: push(&tables),
            token_seq: push(&token_seq),
            token_visible: push(&token_visible),
            work_tokens: push(&work_tokens),
            seq_q_start: push(&offsets[..n].iter().map(|&o| o as u32).collect::<Vec<_>>()),
            seq_q_len: push(
                &batch
                    .chunks
                    .iter()
                    .map(|c| c.num_query_tokens as u32)
                    .collect::<Vec<_>>(),
            ),
            seq_ctx_len: push(
                &batch
                    .chunks
                    .iter()
                    .map(|c| c.context_len as u32)
                    .collect::<Vec<_>>(),
            ),
            tile_seq: push(&tile_seq),
            tile_row0: push(&tile_row0),
        };
        Self {
            shape,
            block_size,
            num_tokens: batch.num_tokens(),
            num_seqs: n,
            max_blocks,
            partition_size,
            max_partitions,
            packed,
            ranges,
        }
    }

    fn get(&self, r: &Range<usize>) -> &[u32] {
        &self.packed[r.clone()]
    }

    pub fn slots(&self) -> &[u32] {
        self.get(&self.ranges.slots)
    }
    pub fn block_tables(&self) -> &[u32] {
        self.get(&self.ranges.block_tables)
    }
    pub fn token_seq(&self) -> &[u32] {
        self.get(&self.ranges.token_seq)
    }
    pub fn token_visible(&self) -> &[u32] {
        self.get(&self.ranges.token_visible)
    }
    pub fn work_tokens(&self) -> &[u32] {
        self.get(&self.ranges.work_tokens)
    }
    pub fn seq_q_start(&self) -> &[u32] {
        self.get(&self.ranges.seq_q_start)
    }
    pub fn seq_q_len(&self) -> &[u32] {
        self.get(&self.ranges.seq_q_len)
    }
    pub fn seq_ctx_len(&self) -> &[u32] {
        self.get(&self.ranges.seq_ctx_len)
    }
    pub fn tile_seq(&self) -> &[u32] {
        self.get(&self.ranges.tile_seq)
    }
    pub fn tile_row0(&self) -> &[u32] {
        self.get(&self.ranges.tile_row0)
    }

    pub fn num_tiles(&self) -> usize {
        self.ranges.tile_seq.len()
    }

    /// The block table of sequence `s`, as the kernels see it.
    pub fn table(&self, s: usize) -> &[u32] {
        &self.block_tables()[s * self.max_blocks..][..self.max_blocks]
    }

    /// The cache slot of `pos` in sequence `s` (the kernels' `tl_slot_of`).
    pub fn slot(&self, s: usize, pos: usize) -> usize {
        slot_of(self.table(s), pos, self.block_size) as usize
    }

    /// Partitions token `t` is split into by the paged kernel.
    pub fn partitions_of(&self, t: usize) -> usize {
        (self.token_visible()[t] as usize).div_ceil(self.partition_size)
    }

    /// Grid of the paged kernel: (work tokens, kv heads × head chunks, max partitions).
    pub fn paged_grid(&self) -> (usize, usize, usize) {
        (
            self.ranges.work_tokens.len(),
            self.shape.num_kv_heads * self.shape.head_chunks(),
            self.max_partitions,
        )
    }

    /// Dynamic shared memory of the paged kernel, in bytes (see kernels/attention.cu).
    pub fn paged_shared_bytes(&self) -> usize {
        paged_shared_bytes(self.partition_size, self.shape.head_dim)
    }
}

/// Shared memory of one paged CTA: stats, then the larger of the score rows and the cross-warp sums.
pub fn paged_shared_bytes(partition_size: usize, head_dim: usize) -> usize {
    const WARPS: usize = 4;
    4 * (2 * MAX_GROUP + (MAX_GROUP * partition_size).max(WARPS * MAX_GROUP * head_dim))
}

/// The largest partition that still gives [`TARGET_CTAS`] paged CTAs, else the smallest.
fn choose_partition(work: usize, max_visible: usize, shape: HeadShape) -> usize {
    let per_token = shape.num_kv_heads * shape.head_chunks();
    for &p in &PARTITION_SIZES {
        if work * per_token * max_visible.div_ceil(p) >= TARGET_CTAS {
            return p;
        }
    }
    *PARTITION_SIZES.last().unwrap()
}
