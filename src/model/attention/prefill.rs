//! Prompt attention on the CPU: a chunk's query tokens attend causally to their sequence's
//! cached keys, read through the block table a block of keys at a time with an online softmax
//! ([`super::key_block`]), so nothing grows with the context but the keys themselves: no
//! gathered copy of the context, no `[heads, queries, context]` score matrix. Work is split into
//! tasks of (KV head, run of query tokens); a task reads only the keys up to its last token.
//!
//! The cache may be narrower than f32 (`--kv-cache-dtype`): each block of keys and values is
//! widened once per task and then serves all of the task's query rows. An fp8 cache's scales go
//! into the queries (keys) and the output (values).

use super::cache_op::CacheKernel;
use super::key_block::{KEY_BLOCK, ROW_LANES, RowState};
use super::vector::CacheElement;
use crate::batch::slot_of;
use crate::kernels::{Element, Widen};
use crate::model::kv_cache::KvScales;
use rayon::prelude::*;

/// Query tokens per task: the keys a task widens serve `TOKENS_PER_TASK × group` rows.
const TOKENS_PER_TASK: usize = 32;

/// The query tokens of one prefill chunk.
pub struct PagedPrefill<'a> {
    pub block_size: usize,
    pub block_table: &'a [u32],
    /// The position of the chunk's first query token.
    pub first_position: usize,
    pub scale: f32,
    pub kv_scales: KvScales,
}

impl CacheKernel for PagedPrefill<'_> {
    const NAME: &'static str = "paged-prefill-cpu";

    fn tokens(&self) -> Option<usize> {
        None
    }

    /// `q`: `[tokens, heads, d]`; `k`, `v`: the cache, `[slots, kv_heads, d]`. Returns the
    /// attention output in `q`'s layout.
    fn run<T: Element, C: CacheElement>(
        &self,
        q: &[T],
        k: &[C],
        v: &[C],
        heads: usize,
        kv_heads: usize,
        d: usize,
    ) -> Vec<T> {
        let tokens = q.len() / (heads * d).max(1);
        let group = heads / kv_heads;
        let runs = tokens.div_ceil(TOKENS_PER_TASK);
        // Latest runs first: they see the most keys, so the long tasks start early.
        let results: Vec<(usize, usize, Vec<f32>)> = (0..runs * kv_heads)
            .into_par_iter()
            .map(|task| {
                let (run, h) = (runs - 1 - task / kv_heads, task % kv_heads);
                let first = run * TOKENS_PER_TASK;
                let count = TOKENS_PER_TASK.min(tokens - first);
                let out = self.task(q, k, v, (heads, kv_heads, d), h, first, count);
                (run, h, out)
            })
            .collect();
        let mut out = vec![T::zero(); q.len()];
        for (run, h, rows) in results {
            // Row `t · group + g` is token `run · TOKENS_PER_TASK + t`, head `h · group + g`.
            for (r, row) in rows.chunks_exact(d).enumerate() {
                let (t, g) = (run * TOKENS_PER_TASK + r / group, r % group);
                let at = (t * heads + h * group + g) * d;
                out[at..at + d]
                    .iter_mut()
                    .zip(row)
                    .for_each(|(o, x)| *o = T::narrow(*x));
            }
        }
        out
    }
}

impl PagedPrefill<'_> {
    /// KV head `h` for query tokens `first..first + count`: `[count · group, d]` f32.
    #[allow(clippy::too_many_arguments)]
    fn task<T: Element, C: Widen>(
        &self,
        q: &[T],
        k: &[C],
        v: &[C],
        (heads, kv_heads, d): (usize, usize, usize),
        h: usize,
        first: usize,
        count: usize,
    ) -> Vec<f32> {
        let group = heads / kv_heads;
        let rows = count * group;
        let mut state = RowState::new(rows.next_multiple_of(ROW_LANES), d);
        let padded = state.rows;
        // Base-2 scores (see `RowState::queries`).
        let query_scale = self.scale * self.kv_scales.k * std::f32::consts::LOG2_E;
        for t in 0..count {
            let position = (self.first_position + first + t) as f32;
            for g in 0..group {
                let r = t * group + g;
                let src = &q[((first + t) * heads + h * group + g) * d..][..d];
                for (x, value) in src.iter().enumerate() {
                    state.queries[x * padded + r] = value.widen() * query_scale;
                }
                state.positions[r] = position;
            }
        }
        // Padding rows: no query, the last row's position (their keys are all real ones).
        let last = self.first_position + first + count - 1;
        state.positions[rows..].fill(last as f32);

        let mut keys = vec![0f32; KEY_BLOCK * d];
        let mut values = vec![0f32; KEY_BLOCK * d];
        for start in (0..=last).step_by(KEY_BLOCK) {
            let n = KEY_BLOCK.min(last + 1 - start);
            for j in 0..n {
                let slot = slot_of(self.block_table, start + j, self.block_size) as usize;
                let at = (slot * kv_heads + h) * d;
                widen_into(&mut keys[j * d..][..d], &k[at..at + d]);
                widen_into(&mut values[j * d..][..d], &v[at..at + d]);
            }
            state.add_block(start, &keys[..n * d], &values[..n * d]);
        }

        let mut out = vec![0f32; rows * d];
        for r in 0..rows {
            let inv = self.kv_scales.v / state.sum[r];
            for x in 0..d {
                out[r * d + x] = state.out[x * padded + r] * inv;
            }
        }
        out
    }
}

fn widen_into<C: Widen>(dst: &mut [f32], src: &[C]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = s.widen());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Element;
    use float8::F8E4M3;
    use half::f16;

    const D: usize = 64;
    const BLOCK: usize = 16;

    /// Deterministic values in about [-2, 2].
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// A cache of `positions` keys for `kv_heads`, its blocks in a scrambled order.
    fn cache<C: Element>(positions: usize, kv_heads: usize, seed: u64) -> (Vec<u32>, Vec<C>) {
        let blocks = positions.div_ceil(BLOCK);
        let table: Vec<u32> = (0..blocks as u32)
            .map(|b| (b * 7 + 3) % blocks as u32)
            .collect();
        let data = values(blocks * BLOCK * kv_heads * D, seed)
            .into_iter()
            .map(C::narrow)
            .collect();
        (table, data)
    }

    /// Causal attention of each query token in f64 over the widened cache.
    #[allow(clippy::too_many_arguments)]
    fn reference<C: Element>(
        q: &[f32],
        k: &[C],
        v: &[C],
        table: &[u32],
        first_position: usize,
        heads: usize,
        kv_heads: usize,
        scale: f64,
        kv: KvScales,
    ) -> Vec<f64> {
        let tokens = q.len() / (heads * D);
        let group = heads / kv_heads;
        let mut out = vec![0f64; q.len()];
        for t in 0..tokens {
            let visible = first_position + t + 1;
            for hq in 0..heads {
                let h = hq / group;
                let row = |cache: &[C], p: usize| {
                    let at = (slot_of(table, p, BLOCK) as usize * kv_heads + h) * D;
                    cache[at..at + D]
                        .iter()
                        .map(|x| x.widen() as f64)
                        .collect::<Vec<_>>()
                };
                let qs = &q[(t * heads + hq) * D..][..D];
                let scores: Vec<f64> = (0..visible)
                    .map(|p| {
                        let key = row(k, p);
                        qs.iter().zip(&key).map(|(a, b)| *a as f64 * b).sum::<f64>()
                            * scale
                            * kv.k as f64
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = weights.iter().sum();
                for (p, w) in weights.iter().enumerate() {
                    let value = row(v, p);
                    for x in 0..D {
                        out[(t * heads + hq) * D + x] += w / sum * value[x] * kv.v as f64;
                    }
                }
            }
        }
        out
    }

    fn check<C: Element + CacheElement>(
        heads: usize,
        kv_heads: usize,
        kv: KvScales,
        tolerance: f64,
    ) {
        for (tokens, first_position) in [(1, 0), (5, 0), (33, 0), (70, 0), (40, 95), (130, 17)] {
            let context = first_position + tokens;
            let (table, k) = cache::<C>(context, kv_heads, 1);
            let (_, v) = cache::<C>(context, kv_heads, 2);
            let q = values(tokens * heads * D, 3);
            let op = PagedPrefill {
                block_size: BLOCK,
                block_table: &table,
                first_position,
                scale: 0.125,
                kv_scales: kv,
            };
            let got = op.run(&q, &k, &v, heads, kv_heads, D);
            let want = reference(
                &q,
                &k,
                &v,
                &table,
                first_position,
                heads,
                kv_heads,
                0.125,
                kv,
            );
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= tolerance * w.abs().max(1.0),
                    "{tokens} tokens from {first_position}, element {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn matches_the_f64_attention_for_every_cache_type() {
        check::<f32>(4, 2, KvScales::UNIT, 2e-6);
        check::<f32>(6, 1, KvScales::UNIT, 2e-6);
        check::<f16>(4, 4, KvScales::UNIT, 2e-6);
        check::<half::bf16>(8, 2, KvScales::UNIT, 2e-6);
        check::<F8E4M3>(4, 2, KvScales { k: 0.5, v: 2.0 }, 2e-6);
    }

    /// A prompt's rows come out bit for bit the same however it is cut into chunks.
    #[test]
    fn a_row_does_not_depend_on_how_the_prompt_was_cut() {
        let (heads, kv_heads, tokens) = (4, 2, 150);
        let (table, k) = cache::<f16>(tokens, kv_heads, 4);
        let (_, v) = cache::<f16>(tokens, kv_heads, 5);
        let q = values(tokens * heads * D, 6);
        let run = |first: usize, len: usize| {
            PagedPrefill {
                block_size: BLOCK,
                block_table: &table,
                first_position: first,
                scale: 0.125,
                kv_scales: KvScales::UNIT,
            }
            .run(
                &q[first * heads * D..(first + len) * heads * D],
                &k,
                &v,
                heads,
                kv_heads,
                D,
            )
        };
        let whole = run(0, tokens);
        for cuts in [vec![37, 150], vec![1, 2, 65, 100, 150], vec![64, 128, 150]] {
            let mut pieces = Vec::new();
            let mut from = 0;
            for to in cuts {
                pieces.extend(run(from, to - from));
                from = to;
            }
            assert!(
                whole
                    .iter()
                    .zip(&pieces)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "cut outputs differ"
            );
        }
    }
}
