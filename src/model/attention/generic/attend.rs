//! One dense attention problem over K/V already in the paged cache: `b` sequences with `mq`
//! query rows each attend to `mk` key positions, gathered through the block tables. Matmuls and
//! softmax are candle ops that exist on every device; scores are f32.
//!
//! Temporaries of one call: the gathered K (then V), `b·kv_heads·mk·head_dim` elements in the
//! compute dtype, and the scores, `b·heads·mq·mk` f32 (two alive at a time). Nothing is padded
//! across sequences but the keys of a decode group ([`super::tiling`] keeps them within budget).
//!
//! The cache may be narrower than the compute dtype (`--kv-cache-dtype`): the gather reads it in
//! its own bytes and widens the gathered rows; an fp8 cache's scales are folded into the scores
//! and the output.

use crate::batch::{SequenceChunk, slot_of};
use crate::error::Result;
use crate::model::kv_cache::LayerKv;
use candle_core::{DType, Device, Tensor};
use std::cell::OnceCell;

pub struct GenericAttend {
    sequences: usize,
    queries: usize,
    keys: usize,
    /// `[b, 1, mk]` u32: the cache slot of every key position (padding repeats position 0).
    slots: Tensor,
    /// `[b * kv_heads * mk]` u32: rows of the cache viewed as `[slots * kv_heads, head_dim]`, in
    /// (sequence, kv head, key) order, so that the gather lands in the matmul's layout. Made on
    /// the device at the first call, when the number of KV heads is known.
    key_rows: OnceCell<Tensor>,
    /// `None` when every query row sees all `mk` keys.
    mask: Option<Visibility>,
}

/// Which keys each query row sees: key `j` is visible to row `r` iff `j <= last[r]`.
struct Visibility {
    /// `[b, 1, mq, 1]` u32.
    last: Tensor,
    /// `[1, 1, 1, mk]` u32: `0..mk`.
    positions: Tensor,
}

/// Added to a hidden key's score: `exp` of it (less the row's maximum) is exactly 0, as for
/// `-inf`, while `0 · HIDDEN` stays 0 where `0 · -inf` would be NaN.
const HIDDEN: f64 = f32::MIN as f64;

impl Visibility {
    /// `[b, 1, mq, mk]` f32: 0 where the key is visible, [`HIDDEN`] where not. Made per call
    /// (a `heads`-th of the scores' size), so a step keeps no mask alive between layers.
    fn bias(&self) -> Result<Tensor> {
        Ok(self
            .positions
            .broadcast_gt(&self.last)?
            .to_dtype(DType::F32)?
            .affine(HIDDEN, 0.0)?)
    }
}

impl GenericAttend {
    /// One decode token of each chunk (`num_query_tokens == 1`), keys padded to the longest.
    pub fn decodes(chunks: &[&SequenceChunk], block_size: usize, device: &Device) -> Result<Self> {
        let b = chunks.len();
        let mk = chunks.iter().map(|c| c.context_len).max().unwrap_or(1);
        let mut slots = Vec::with_capacity(b * mk);
        for c in chunks {
            slots.extend((0..c.context_len).map(|p| slot_of(&c.block_table, p, block_size)));
            let pad = slot_of(&c.block_table, 0, block_size);
            slots.extend(std::iter::repeat_n(pad, mk - c.context_len));
        }
        let last: Vec<u32> = chunks.iter().map(|c| c.context_len as u32 - 1).collect();
        let padded = chunks.iter().any(|c| c.context_len < mk);
        Self::new(slots, (b, 1, mk), padded.then_some(last), device)
    }

    /// Query rows `start..start + len` of a chunk, attending causally to the keys up to the
    /// tile's last row.
    pub fn tile(
        chunk: &SequenceChunk,
        start: usize,
        len: usize,
        block_size: usize,
        device: &Device,
    ) -> Result<Self> {
        let first = chunk.first_position() + start;
        let mk = first + len;
        let slots = (0..mk)
            .map(|p| slot_of(&chunk.block_table, p, block_size))
            .collect();
        let last: Vec<u32> = (first..mk).map(|p| p as u32).collect();
        Self::new(slots, (1, len, mk), (len > 1).then_some(last), device)
    }

    fn new(
        slots: Vec<u32>,
        (b, mq, mk): (usize, usize, usize),
        last: Option<Vec<u32>>,
        device: &Device,
    ) -> Result<Self> {
        let mask = match last {
            Some(last) => Some(Visibility {
                last: Tensor::from_vec(last, (b, 1, mq, 1), device)?,
                positions: Tensor::arange(0u32, mk as u32, device)?.reshape((1, 1, 1, mk))?,
            }),
            None => None,
        };
        Ok(Self {
            sequences: b,
            queries: mq,
            keys: mk,
            slots: Tensor::from_vec(slots, (b, 1, mk), device)?,
            key_rows: OnceCell::new(),
            mask,
        })
    }

    /// Query rows this problem takes (`b · mq`).
    pub fn rows(&self) -> usize {
        self.sequences * self.queries
    }

    fn key_rows(&self, kv_heads: usize) -> Result<&Tensor> {
        if let Some(rows) = self.key_rows.get() {
            return Ok(rows);
        }
        let heads = Tensor::arange(0u32, kv_heads as u32, self.slots.device())?
            .reshape((1, kv_heads, 1))?;
        let rows = self
            .slots
            .affine(kv_heads as f64, 0.0)?
            .broadcast_add(&heads)?
            .flatten_all()?;
        Ok(self.key_rows.get_or_init(|| rows))
    }

    /// `q`: `[b · mq, heads, head_dim]`, sequence-major → `[b · mq, heads · head_dim]`.
    pub fn forward(&self, q: &Tensor, cache: &LayerKv, scale: f64) -> Result<Tensor> {
        let (_, heads, head_dim) = q.dims3()?;
        let (slots, kv_heads, _) = cache.k.dims3()?;
        let group = heads / kv_heads;
        let (b, mq, mk) = (self.sequences, self.queries, self.keys);
        // The queries' dtype: a narrower cache is widened to it as it is gathered.
        let work = q.dtype();
        let key_rows = self.key_rows(kv_heads)?;
        let gather = |cache: &Tensor| -> Result<Tensor> {
            Ok(cache
                .reshape((slots * kv_heads, head_dim))?
                .index_select(key_rows, 0)?
                .reshape((b, kv_heads, mk, head_dim))?
                .to_dtype(work)?)
        };

        // [b, mq, kv_heads, group, d] -> [b, kv_heads, group · mq, d]: query heads sharing a
        // KV head are stacked so one batched matmul serves the whole group. One query row per
        // sequence is already in that order.
        // Each step replaces the previous tensor, so at most two score matrices are alive.
        let mut scores = {
            let q = if mq == 1 {
                q.reshape((b, kv_heads, group, head_dim))?
            } else {
                q.reshape((b, mq, kv_heads, group, head_dim))?
                    .permute((0, 2, 3, 1, 4))?
                    .contiguous()?
            }
            .reshape((b, kv_heads, group * mq, head_dim))?;
            let k = gather(&cache.k)?;
            q.matmul(&k.t()?)?.to_dtype(DType::F32)?
        };
        // An fp8 cache's keys are read × their scale: folded into the score's.
        scores = scores.affine(scale * cache.scales.k as f64, 0.0)?;
        if let Some(mask) = &self.mask {
            // One additive bias over `[b, kv_heads · group, mq, mk]` (a binary op whose inner
            // `mq · mk` run is contiguous) instead of a three-input strided select.
            scores = scores
                .reshape((b, kv_heads * group, mq, mk))?
                .broadcast_add(&mask.bias()?)?;
        }
        scores = candle_nn::ops::softmax_last_dim(&scores)?;
        let probs = scores
            .to_dtype(work)?
            .reshape((b, kv_heads, group * mq, mk))?;
        drop(scores);
        let out = {
            let v = gather(&cache.v)?;
            let out = probs.matmul(&v)?; // [b, kv_heads, group · mq, d]
            // An fp8 cache's values are read × their scale: applied once to the weighted sum.
            if cache.scales.v == 1.0 {
                out
            } else {
                out.affine(cache.scales.v as f64, 0.0)?
            }
        };
        drop(probs);
        let out = if mq == 1 {
            out.reshape((b, heads * head_dim))?
        } else {
            out.reshape((b, kv_heads, group, mq, head_dim))?
                .permute((0, 3, 1, 2, 4))?
                .contiguous()?
                .reshape((b * mq, heads * head_dim))?
        };
        Ok(out)
    }
}
