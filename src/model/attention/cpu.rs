//! Paged attention on the CPU: reads K/V straight from the cache through the block tables (no
//! gather copies), one task per (token, kv head) on rayon. This is also the CPU twin of a CUDA
//! paged-attention kernel: same inputs, same index math (`batch::slot_of`).

use crate::error::Result;
use crate::model::batch::{BatchInput, slot_of};
use crate::model::kv_cache::LayerKv;
use candle_core::{CpuStorage, DType, Layout, Shape, Tensor, WithDType, bail};
use half::{bf16, f16};
use rayon::prelude::*;

/// One query token's view of its sequence: where its sequence's blocks are, and how many
/// cached positions it may attend to (causal: up to and including its own).
#[derive(Debug, Clone)]
struct QueryContext {
    sequence: usize,
    visible: usize,
}

pub struct CpuMetadata {
    block_size: usize,
    slots: Vec<u32>,
    block_tables: Vec<Vec<u32>>,
    queries: Vec<QueryContext>,
}

impl CpuMetadata {
    pub fn new(batch: &BatchInput, block_size: usize) -> Self {
        let queries = batch
            .chunks
            .iter()
            .enumerate()
            .flat_map(|(s, c)| {
                (c.first_position()..c.context_len).map(move |pos| QueryContext {
                    sequence: s,
                    visible: pos + 1,
                })
            })
            .collect();
        Self {
            block_size,
            slots: batch.slot_mapping(block_size),
            block_tables: batch.chunks.iter().map(|c| c.block_table.clone()).collect(),
            queries,
        }
    }

    pub fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &LayerKv,
        scale: f64,
    ) -> Result<Tensor> {
        let write = WriteSlots { slots: &self.slots };
        cache.k.inplace_op2(&k.contiguous()?, &write)?;
        cache.v.inplace_op2(&v.contiguous()?, &write)?;
        let op = PagedAttention {
            meta: self,
            scale: scale as f32,
        };
        let (t, heads, d) = q.dims3()?;
        let out = q.contiguous()?.apply_op3_no_bwd(&cache.k, &cache.v, &op)?;
        Ok(out.reshape((t, heads * d))?)
    }
}

/// Copies row `i` of the source (`[T, kv_heads, head_dim]`) into cache slot `slots[i]`.
struct WriteSlots<'a> {
    slots: &'a [u32],
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
            _ => bail!("write-kv-slots: cache and source must share one of f32/f16/bf16"),
        }
        Ok(())
    }
}

struct PagedAttention<'a> {
    meta: &'a CpuMetadata,
    scale: f32,
}

/// Element types the kernel reads, widened to f32 for arithmetic.
trait Element: WithDType + Copy + Send + Sync {
    fn widen(self) -> f32;
    fn narrow(x: f32) -> Self;
}

impl Element for f32 {
    fn widen(self) -> f32 {
        self
    }
    fn narrow(x: f32) -> Self {
        x
    }
}

impl Element for f16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }
    fn narrow(x: f32) -> Self {
        f16::from_f32(x)
    }
}

impl Element for bf16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }
    fn narrow(x: f32) -> Self {
        bf16::from_f32(x)
    }
}

/// Dot product with eight independent accumulators so the compiler can vectorise it.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl PagedAttention<'_> {
    fn run<T: Element>(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        heads: usize,
        kv_heads: usize,
        d: usize,
    ) -> Vec<T> {
        let group = heads / kv_heads;
        let meta = self.meta;
        let mut out = vec![T::zero(); meta.queries.len() * heads * d];
        out.par_chunks_mut(group * d)
            .enumerate()
            .for_each(|(item, out)| {
                let (t, h) = (item / kv_heads, item % kv_heads);
                let ctx = &meta.queries[t];
                let table = &meta.block_tables[ctx.sequence];
                let qs: Vec<Vec<f32>> = (0..group)
                    .map(|g| {
                        q[(t * heads + h * group + g) * d..][..d]
                            .iter()
                            .map(|x| x.widen())
                            .collect()
                    })
                    .collect();
                let mut scores = vec![0f32; group * ctx.visible];
                let mut key = vec![0f32; d];
                for j in 0..ctx.visible {
                    let slot = slot_of(table, j, meta.block_size) as usize;
                    let row = &k[(slot * kv_heads + h) * d..][..d];
                    key.iter_mut()
                        .zip(row)
                        .for_each(|(dst, x)| *dst = x.widen());
                    for (g, qg) in qs.iter().enumerate() {
                        scores[g * ctx.visible + j] = dot(qg, &key) * self.scale;
                    }
                }
                let mut acc = vec![0f32; group * d];
                for g in 0..group {
                    let s = &mut scores[g * ctx.visible..][..ctx.visible];
                    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    s.iter_mut().for_each(|x| {
                        *x = (*x - max).exp();
                        sum += *x;
                    });
                    s.iter_mut().for_each(|x| *x /= sum);
                }
                for j in 0..ctx.visible {
                    let slot = slot_of(table, j, meta.block_size) as usize;
                    let row = &v[(slot * kv_heads + h) * d..][..d];
                    key.iter_mut()
                        .zip(row)
                        .for_each(|(dst, x)| *dst = x.widen());
                    for g in 0..group {
                        let p = scores[g * ctx.visible + j];
                        acc[g * d..][..d]
                            .iter_mut()
                            .zip(&key)
                            .for_each(|(a, x)| *a += p * x);
                    }
                }
                out.iter_mut()
                    .zip(&acc)
                    .for_each(|(o, a)| *o = T::narrow(*a));
            });
        out
    }
}

impl candle_core::CustomOp3 for PagedAttention<'_> {
    fn name(&self) -> &'static str {
        "paged-attention-cpu"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_l: &Layout,
        k: &CpuStorage,
        k_l: &Layout,
        v: &CpuStorage,
        v_l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (t, heads, d) = q_l.shape().dims3()?;
        let (_, kv_heads, kd) = k_l.shape().dims3()?;
        if kd != d || heads % kv_heads != 0 || t != self.meta.queries.len() {
            bail!(
                "paged-attention-cpu: q {:?} does not fit cache {:?}",
                q_l.shape(),
                k_l.shape()
            )
        }
        let (Some((q0, _)), Some((k0, _)), Some((v0, _))) = (
            q_l.contiguous_offsets(),
            k_l.contiguous_offsets(),
            v_l.contiguous_offsets(),
        ) else {
            bail!("paged-attention-cpu needs contiguous tensors")
        };
        let storage = match (q, k, v) {
            (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v)) => {
                CpuStorage::F32(self.run(&q[q0..], &k[k0..], &v[v0..], heads, kv_heads, d))
            }
            (CpuStorage::F16(q), CpuStorage::F16(k), CpuStorage::F16(v)) => {
                CpuStorage::F16(self.run(&q[q0..], &k[k0..], &v[v0..], heads, kv_heads, d))
            }
            (CpuStorage::BF16(q), CpuStorage::BF16(k), CpuStorage::BF16(v)) => {
                CpuStorage::BF16(self.run(&q[q0..], &k[k0..], &v[v0..], heads, kv_heads, d))
            }
            _ => bail!("paged-attention-cpu: q, k, v must share one of f32/f16/bf16"),
        };
        Ok((storage, q_l.shape().clone()))
    }
}

/// The dtypes this backend handles.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}
