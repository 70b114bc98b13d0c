//! Attention on the CPU, in two parts chosen per chunk:
//! - decode tokens (one query per sequence, or each token of a chunk verifying a draft):
//!   paged attention reading K/V straight from the cache
//!   through the block tables (no gather copies), one task per (token, kv head) on rayon. This is
//!   also the CPU twin of a CUDA paged-decode kernel: same inputs, same index math
//!   (`batch::slot_of`).
//! - prefill chunks: each chunk's query tokens over its cached keys, a block of keys at a time
//!   with an online softmax ([`PagedPrefill`]): no gathered context, no score matrix.

use super::cache_op::{CacheKernel, CacheOp};
use super::prefill::PagedPrefill;
use super::vector::{self, CacheElement};
use crate::batch::{BatchInput, slot_of};
use crate::error::Result;
use crate::kernels::Element;
use crate::model::kv_cache::{KvScales, LayerKv};
use candle_core::{CpuStorage, DType, Device, Layout, Tensor, bail};
use rayon::prelude::*;

/// Whether a chunk verifies a speculative draft (logits for every token it feeds). Such a chunk
/// goes through the paged decode path one query at a time: gathering and widening its whole
/// context for a dense tile cost 1.6× a decode step for one draft token, and each of its
/// tokens then computes exactly as it would decoding alone. Prompt chunks stay on the tiles,
/// whatever their length, so a prompt's numbers do not depend on how it was cut.
fn is_verify(chunk: &crate::batch::SequenceChunk) -> bool {
    chunk.logits_tokens > 1 && chunk.logits_tokens == chunk.num_query_tokens
}

/// One query token's view of its sequence: where its sequence's blocks are, and how many
/// cached positions it may attend to (causal: up to and including its own).
#[derive(Debug, Clone)]
struct QueryContext {
    sequence: usize,
    visible: usize,
}

/// The decode tokens of a step.
struct DecodeQueries {
    /// Rows of the flat query holding decode tokens.
    rows: Tensor,
    queries: Vec<QueryContext>,
}

/// The query rows of one prefill chunk.
struct PrefillRows {
    first_row: usize,
    len: usize,
    sequence: usize,
    /// The position of its first token.
    first_position: usize,
}

pub struct CpuMetadata {
    block_size: usize,
    slots: Vec<u32>,
    block_tables: Vec<Vec<u32>>,
    decode: Option<DecodeQueries>,
    prefills: Vec<PrefillRows>,
    /// Maps output rows (decodes first, then prefills) back to token order; `None` if equal.
    order: Option<Tensor>,
}

impl CpuMetadata {
    pub fn new(batch: &BatchInput, block_size: usize) -> Result<Self> {
        let device = Device::Cpu;
        let offsets = batch.query_offsets();
        let mut decode_rows = Vec::new();
        let mut queries = Vec::new();
        let mut prefills = Vec::new();
        for (s, chunk) in batch.chunks.iter().enumerate() {
            if chunk.num_query_tokens == 1 || is_verify(chunk) {
                // Each token attends to the cache up to its own position, which the step
                // writes before attention runs.
                let first = chunk.first_position();
                for i in 0..chunk.num_query_tokens {
                    decode_rows.push((offsets[s] + i) as u32);
                    queries.push(QueryContext {
                        sequence: s,
                        visible: first + i + 1,
                    });
                }
                continue;
            }
            prefills.push(PrefillRows {
                first_row: offsets[s],
                len: chunk.num_query_tokens,
                sequence: s,
                first_position: chunk.first_position(),
            });
        }
        let mut produced: Vec<u32> = decode_rows.clone();
        for t in &prefills {
            produced.extend((t.first_row..t.first_row + t.len).map(|r| r as u32));
        }
        let order = super::token_order(&produced, &device)?;
        let decode = if decode_rows.is_empty() {
            None
        } else {
            Some(DecodeQueries {
                rows: Tensor::new(decode_rows, &device)?,
                queries,
            })
        };
        Ok(Self {
            block_size,
            slots: batch.slot_mapping(block_size),
            block_tables: batch.chunks.iter().map(|c| c.block_table.clone()).collect(),
            decode,
            prefills,
            order,
        })
    }

    pub fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &LayerKv,
        scale: f64,
    ) -> Result<Tensor> {
        let write = |scale| WriteSlots {
            slots: &self.slots,
            scale,
        };
        cache
            .k
            .inplace_op2(&k.contiguous()?, &write(cache.scales.k))?;
        cache
            .v
            .inplace_op2(&v.contiguous()?, &write(cache.scales.v))?;
        let (_, heads, d) = q.dims3()?;
        let mut pieces = Vec::with_capacity(self.prefills.len() + 1);
        if let Some(decode) = &self.decode {
            let op = PagedDecode {
                block_size: self.block_size,
                block_tables: &self.block_tables,
                queries: &decode.queries,
                scale: scale as f32,
                kv_scales: cache.scales,
            };
            let dq = q.index_select(&decode.rows, 0)?.contiguous()?;
            let out = dq.apply_op3_no_bwd(&cache.k, &cache.v, &CacheOp(&op))?;
            pieces.push(out.reshape((decode.queries.len(), heads * d))?);
        }
        for rows in &self.prefills {
            let op = PagedPrefill {
                block_size: self.block_size,
                block_table: &self.block_tables[rows.sequence],
                first_position: rows.first_position,
                scale: scale as f32,
                kv_scales: cache.scales,
            };
            let chunk_q = q.narrow(0, rows.first_row, rows.len)?.contiguous()?;
            let out = chunk_q.apply_op3_no_bwd(&cache.k, &cache.v, &CacheOp(&op))?;
            pieces.push(out.reshape((rows.len, heads * d))?);
        }
        super::in_token_order(pieces, self.order.as_ref())
    }
}

/// Copies row `i` of the source (`[T, kv_heads, head_dim]`) into cache slot `slots[i]`.
struct WriteSlots<'a> {
    slots: &'a [u32],
    /// What an fp8 cache stores values divided by (vLLM's `k_scale`/`v_scale`); 1 elsewhere.
    scale: f32,
}

impl candle_core::InplaceOp2 for WriteSlots<'_> {
    fn name(&self) -> &'static str {
        "write-kv-slots"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        src_l: &Layout,
    ) -> candle_core::Result<()> {
        fn copy<T: Copy>(dst: &mut [T], src: &[T], slots: &[u32], row: usize) {
            for (i, &slot) in slots.iter().enumerate() {
                let slot = slot as usize;
                dst[slot * row..(slot + 1) * row].copy_from_slice(&src[i * row..(i + 1) * row]);
            }
        }
        /// f32 rows divided by `scale` and rounded into a narrower cache (`--kv-cache-dtype`;
        /// x / 1 is x, so a 16-bit cache is rounded from the values themselves).
        fn narrow<T: Element>(dst: &mut [T], src: &[f32], slots: &[u32], row: usize, scale: f32) {
            for (i, &slot) in slots.iter().enumerate() {
                let slot = slot as usize;
                dst[slot * row..(slot + 1) * row]
                    .iter_mut()
                    .zip(&src[i * row..(i + 1) * row])
                    .for_each(|(d, &s)| *d = T::narrow(s / scale));
            }
        }
        let (Some((d0, _)), Some((s0, _))) =
            (dst_l.contiguous_offsets(), src_l.contiguous_offsets())
        else {
            bail!("write-kv-slots needs contiguous tensors")
        };
        let row = dst_l.shape().elem_count() / dst_l.shape().dims()[0];
        if src_l.shape().elem_count() != self.slots.len() * row {
            bail!(
                "write-kv-slots: {} rows for {} slots",
                src_l.shape().elem_count() / row.max(1),
                self.slots.len()
            )
        }
        match (dst, src) {
            (CpuStorage::F32(d), CpuStorage::F32(s)) => {
                copy(&mut d[d0..], &s[s0..], self.slots, row)
            }
            (CpuStorage::F16(d), CpuStorage::F16(s)) => {
                copy(&mut d[d0..], &s[s0..], self.slots, row)
            }
            (CpuStorage::BF16(d), CpuStorage::BF16(s)) => {
                copy(&mut d[d0..], &s[s0..], self.slots, row)
            }
            (CpuStorage::F16(d), CpuStorage::F32(s)) => {
                narrow(&mut d[d0..], &s[s0..], self.slots, row, self.scale)
            }
            (CpuStorage::BF16(d), CpuStorage::F32(s)) => {
                narrow(&mut d[d0..], &s[s0..], self.slots, row, self.scale)
            }
            (CpuStorage::F8E4M3(d), CpuStorage::F32(s)) => {
                narrow(&mut d[d0..], &s[s0..], self.slots, row, self.scale)
            }
            _ => bail!(
                "write-kv-slots: the cache must have the source's dtype (f32/f16/bf16), or be \
                 16-bit or fp8 beside f32"
            ),
        }
        Ok(())
    }
}

/// Paged attention of one query token per sequence over its cached context.
struct PagedDecode<'a> {
    block_size: usize,
    block_tables: &'a [Vec<u32>],
    queries: &'a [QueryContext],
    scale: f32,
    kv_scales: KvScales,
}

/// The multipliers the decode loops fold into as few places as they can: the cache's scales
/// (fp8) and its lanes' factor ([`CacheElement`]) go into one multiply per score and one per
/// output element, and the powers of two into the query and the probabilities, exactly.
/// Each is 1 for an f32/f16/bf16 cache but the score's (the attention scale), and the loops
/// skip a multiply by 1.
struct Folds {
    query: f32,
    score: f32,
    probability: f32,
    output: f32,
}

impl Folds {
    fn new<C: CacheElement>(scale: f32, kv: KvScales) -> Self {
        Self {
            query: C::INPUT_FACTOR,
            score: scale * kv.k * C::output_factor(),
            probability: C::INPUT_FACTOR,
            output: kv.v * C::output_factor(),
        }
    }
}

/// `xs` × `by`, untouched when `by` is 1.
fn scale_in_place(xs: &mut [f32], by: f32) {
    if by != 1.0 {
        xs.iter_mut().for_each(|x| *x *= by);
    }
}

impl CacheKernel for PagedDecode<'_> {
    const NAME: &'static str = "paged-attention-cpu";

    fn tokens(&self) -> Option<usize> {
        Some(self.queries.len())
    }

    /// Queries (and the output) of type `T`; the cache of type `C`, widened to f32 in
    /// registers as the vector loops read it.
    fn run<T: Element, C: CacheElement>(
        &self,
        q: &[T],
        k: &[C],
        v: &[C],
        heads: usize,
        kv_heads: usize,
        d: usize,
    ) -> Vec<T> {
        let group = heads / kv_heads;
        let folds = Folds::new::<C>(self.scale, self.kv_scales);
        let mut out = vec![T::zero(); self.queries.len() * heads * d];
        out.par_chunks_mut(group * d)
            .enumerate()
            .for_each(|(item, out)| {
                let (t, h) = (item / kv_heads, item % kv_heads);
                let ctx = &self.queries[t];
                let table = &self.block_tables[ctx.sequence];
                let visible = ctx.visible;
                let mut qs: Vec<f32> = q[(t * heads + h * group) * d..][..group * d]
                    .iter()
                    .map(|x| x.widen())
                    .collect();
                scale_in_place(&mut qs, folds.query);
                // Where each visible position's row of this kv head starts, looked up once for
                // both passes.
                let starts: Vec<usize> = (0..visible)
                    .map(|j| (slot_of(table, j, self.block_size) as usize * kv_heads + h) * d)
                    .collect();
                let key = |j: usize| &k[starts[j]..starts[j] + d];
                let value = |j: usize| &v[starts[j]..starts[j] + d];
                let mut scores = vec![0f32; group * visible];
                for j in 0..visible {
                    if j + vector::PREFETCH_AHEAD < visible {
                        vector::prefetch(key(j + vector::PREFETCH_AHEAD));
                    }
                    let row = key(j);
                    for g in 0..group {
                        scores[g * visible + j] = vector::dot(&qs[g * d..][..d], row) * folds.score;
                    }
                }
                for g in 0..group {
                    softmax_in_place(&mut scores[g * visible..][..visible]);
                }
                scale_in_place(&mut scores, folds.probability);
                let mut acc = vec![0f32; group * d];
                for g in 0..group {
                    vector::weighted_sum(
                        &mut acc[g * d..][..d],
                        &scores[g * visible..][..visible],
                        value,
                    );
                }
                scale_in_place(&mut acc, folds.output);
                out.iter_mut()
                    .zip(&acc)
                    .for_each(|(o, a)| *o = T::narrow(*a));
            });
        out
    }
}

fn softmax_in_place(s: &mut [f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in s.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    s.iter_mut().for_each(|x| *x *= inv);
}

/// The dtypes this backend handles.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}
