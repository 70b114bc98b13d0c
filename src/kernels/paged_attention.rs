//! Causal varlen attention over the paged KV cache, as one candle op: `q` `[T, heads, head_dim]`
//! against the layer's cache → `[T, heads, head_dim]`. The cache may be stored narrower than the
//! activations (f16/bf16, or fp8 e4m3 with the layer's scales): [`super::kernel_name`] lists the
//! pairs. The step's [`AttentionPlan`] decides which
//! tokens the paged kernel computes and which prefill tiles the tensor-core kernel computes; every
//! token is written by exactly one of them.
//!
//! CUDA (kernels/attention.cu): `tl_paged_attention_*` (+ `tl_paged_reduce_*` when a token's keys
//! span several partitions) and `tl_prefill_attention_*`. CPU twins: [`twin_paged`] and
//! [`twin_prefill`], the same algorithms step for step: per-partition softmax then the
//! flash-decoding merge; per-64-key-block online softmax with q, K, V and the probabilities
//! rounded to the tensor cores' operand type ([`super::mma_dtype`]) before the products.

use super::plan::{AttentionPlan, HeadShape, MAX_GROUP, PREFILL_TILE_KEYS, PREFILL_TILE_ROWS};
use super::{Element, Widen};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

pub struct PagedAttention<'a> {
    pub plan: &'a AttentionPlan,
    /// The plan's packed arrays on the op's device (`plan.packed`, u32).
    pub meta: &'a Tensor,
    /// The softmax scale times the cache's `k_scale` (what a stored key is read multiplied by).
    pub scale: f32,
    /// The cache's `v_scale`: the output is multiplied by it (1 but for an fp8 cache).
    pub v_scale: f32,
    /// Fill the output with NaN before the kernels run, so a row no kernel wrote shows up.
    pub poison: bool,
}

impl PagedAttention<'_> {
    /// `q`: `[T, heads, head_dim]`; caches `[slots, kv_heads, head_dim]`, of one dtype that
    /// [`super::kernel_name`] pairs with q's.
    pub fn forward(&self, q: &Tensor, k_cache: &Tensor, v_cache: &Tensor) -> Result<Tensor> {
        q.contiguous()?.apply_op3_no_bwd(k_cache, v_cache, self)
    }

    /// Checks the operands against the plan.
    pub(crate) fn check(&self, q_l: &Layout, k_l: &Layout, v_l: &Layout) -> Result<()> {
        let HeadShape {
            num_heads,
            num_kv_heads,
            head_dim,
        } = self.plan.shape;
        let (t, h, d) = q_l.shape().dims3()?;
        let (_, kvh, kd) = k_l.shape().dims3()?;
        if (t, h, d) != (self.plan.num_tokens, num_heads, head_dim)
            || (kvh, kd) != (num_kv_heads, head_dim)
            || k_l.shape() != v_l.shape()
            || num_heads % num_kv_heads != 0
        {
            bail!(
                "paged-attention: q {:?} / cache {:?} do not match the plan ({} tokens, {:?})",
                q_l.shape(),
                k_l.shape(),
                self.plan.num_tokens,
                self.plan.shape
            )
        }
        if !q_l.is_contiguous() || !k_l.is_contiguous() || !v_l.is_contiguous() {
            bail!("paged-attention needs contiguous tensors")
        }
        Ok(())
    }

    /// The twin over one pair of element types.
    fn twin<T: Element, C: Element>(&self, q: &[T], k: &[C], v: &[C]) -> Vec<T> {
        twin(self.plan, self.scale, self.v_scale, q, k, v)
    }
}

impl candle_core::CustomOp3 for PagedAttention<'_> {
    fn name(&self) -> &'static str {
        "tl-paged-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_l: &Layout,
        k: &CpuStorage,
        k_l: &Layout,
        v: &CpuStorage,
        v_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        self.check(q_l, k_l, v_l)?;
        fn part<'s, E>(x: &'s [E], l: &Layout) -> &'s [E] {
            &x[l.start_offset()..][..l.shape().elem_count()]
        }
        // The pairs the kernels are built for (`super::kernel_name`).
        let storage = super::match_dtype_pair!(
            (q, k, v),
            [
                (F32, F32),
                (F32, F16),
                (F32, BF16),
                (F32, F8E4M3),
                (F16, F16),
                (F16, BF16),
                (F16, F8E4M3),
                (BF16, BF16),
                (BF16, F16),
                (BF16, F8E4M3),
            ],
            |q, k, v| self.twin(part(q, q_l), part(k, k_l), part(v, v_l)),
            bail!(
                "paged-attention: no kernels for {:?} activations over a {:?}/{:?} cache",
                q.dtype(),
                k.dtype(),
                v.dtype()
            ),
        );
        Ok((storage, q_l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        q_l: &Layout,
        k: &candle_core::CudaStorage,
        k_l: &Layout,
        v: &candle_core::CudaStorage,
        v_l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.check(q_l, k_l, v_l)?;
        let launch = super::cuda::AttentionLaunch {
            plan: self.plan,
            meta: self.meta,
            scale: self.scale,
            v_scale: self.v_scale,
            poison: self.poison,
        };
        let storage = super::cuda::paged_attention(&launch, q, q_l, k, k_l, v, v_l)?;
        Ok((storage, q_l.shape().clone()))
    }
}

/// One computed output row: `(token * heads + head, values)`.
type Row = (usize, Vec<f32>);

/// The CPU twin of the whole op: activations `T` (q, out) over a cache of `C`; `scale` includes
/// the cache's k_scale, and the output is multiplied by `v_scale`. Rows no kernel would write
/// stay NaN.
pub fn twin<T: Element, C: Element>(
    plan: &AttentionPlan,
    scale: f32,
    v_scale: f32,
    q: &[T],
    k: &[C],
    v: &[C],
) -> Vec<T> {
    let d = plan.shape.head_dim;
    let mut out = vec![T::narrow(f32::NAN); plan.num_tokens * plan.shape.num_heads * d];
    let rows = twin_paged(plan, scale, q, k, v)
        .into_iter()
        .chain(twin_prefill(plan, scale, q, k, v));
    for (row, values) in rows {
        for (o, x) in out[row * d..][..d].iter_mut().zip(values) {
            *o = T::narrow(x * v_scale);
        }
    }
    out
}

fn dot<C: Widen>(q: &[f32], k: &[C]) -> f32 {
    q.iter().zip(k).map(|(a, b)| a * b.widen()).sum()
}

fn widen<T: Widen>(x: &[T]) -> Vec<f32> {
    x.iter().map(|e| e.widen()).collect()
}

/// Rounding to the tensor cores' operand type of the prefill kernel (f32 where none applies).
fn operand_rounding(dtype: candle_core::DType) -> fn(f32) -> f32 {
    match dtype {
        candle_core::DType::F16 => <half::f16 as Element>::round,
        candle_core::DType::BF16 => <half::bf16 as Element>::round,
        _ => |x| x,
    }
}

/// Twin of `tl_paged_attention_*` + `tl_paged_reduce_*`: for each (work token, kv head, head
/// chunk) and each of the token's partitions, the softmax of the partition (max, sum of
/// exponentials, unnormalised P·V); then either the single partition normalised (when the whole
/// step has one partition per token) or the flash-decoding merge of all of them.
pub fn twin_paged<T: Element, C: Element>(
    plan: &AttentionPlan,
    scale: f32,
    q: &[T],
    k: &[C],
    v: &[C],
) -> Vec<Row> {
    let HeadShape {
        num_heads,
        num_kv_heads,
        head_dim: d,
    } = plan.shape;
    let group = plan.shape.group();
    let chunks = plan.shape.head_chunks();
    let items: Vec<(usize, usize, usize)> = (0..plan.work_tokens().len())
        .flat_map(|w| (0..num_kv_heads).flat_map(move |h| (0..chunks).map(move |c| (w, h, c))))
        .collect();
    items
        .par_iter()
        .flat_map_iter(|&(w, h, c)| {
            let t = plan.work_tokens()[w] as usize;
            let seq = plan.token_seq()[t] as usize;
            let visible = plan.token_visible()[t] as usize;
            let g0 = c * MAX_GROUP;
            let gn = MAX_GROUP.min(group - g0);
            let parts = plan.partitions_of(t);
            let p_size = plan.partition_size;
            (0..gn).map(move |g| {
                let row = t * num_heads + h * group + g0 + g;
                let qv = widen(&q[row * d..][..d]);
                // (max, sum of exponentials, unnormalised sum) per partition
                let partials: Vec<(f32, f32, Vec<f32>)> = (0..parts)
                    .map(|p| {
                        let start = p * p_size;
                        let n = p_size.min(visible - start);
                        let scores: Vec<f32> = (start..start + n)
                            .map(|pos| {
                                let slot = plan.slot(seq, pos);
                                dot(&qv, &k[(slot * num_kv_heads + h) * d..][..d]) * scale
                            })
                            .collect();
                        let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                        let l: f32 = e.iter().sum();
                        let mut acc = vec![0f32; d];
                        for (j, pos) in (start..start + n).enumerate() {
                            let slot = plan.slot(seq, pos);
                            let vr = &v[(slot * num_kv_heads + h) * d..][..d];
                            for (a, x) in acc.iter_mut().zip(vr) {
                                *a += e[j] * x.widen();
                            }
                        }
                        (m, l, acc)
                    })
                    .collect();
                let values = if plan.max_partitions == 1 {
                    let (_, l, acc) = &partials[0];
                    acc.iter().map(|a| a / l).collect()
                } else {
                    let m_max = partials
                        .iter()
                        .map(|p| p.0)
                        .fold(f32::NEG_INFINITY, f32::max);
                    let mut l = 0f32;
                    let mut acc = vec![0f32; d];
                    for (m, pl, pacc) in &partials {
                        let wgt = (m - m_max).exp();
                        l += wgt * pl;
                        for (a, x) in acc.iter_mut().zip(pacc) {
                            *a += wgt * x;
                        }
                    }
                    acc.iter().map(|a| a / l).collect()
                };
                (row, values)
            })
        })
        .collect()
}

/// Twin of `tl_prefill_attention_*`: for each tile row (token, query head), keys in blocks of
/// [`PREFILL_TILE_KEYS`] up to the tile's last visible key, masked causally, with the online
/// softmax of the kernel. q, K, V and the probabilities are rounded to the tensor cores' operand
/// type ([`super::mma_dtype`]) before their products; the row sum uses the probabilities
/// unrounded.
pub fn twin_prefill<T: Element, C: Element>(
    plan: &AttentionPlan,
    scale: f32,
    q: &[T],
    k: &[C],
    v: &[C],
) -> Vec<Row> {
    let round = operand_rounding(super::mma_dtype(T::DTYPE, C::DTYPE));
    let HeadShape {
        num_heads,
        num_kv_heads,
        head_dim: d,
    } = plan.shape;
    let group = plan.shape.group();
    let items: Vec<(usize, usize)> = (0..plan.num_tiles())
        .flat_map(|tile| (0..num_kv_heads).map(move |h| (tile, h)))
        .collect();
    items
        .par_iter()
        .flat_map_iter(|&(tile, h)| {
            let seq = plan.tile_seq()[tile] as usize;
            let row0 = plan.tile_row0()[tile] as usize;
            let q_len = plan.seq_q_len()[seq] as usize;
            let q_start = plan.seq_q_start()[seq] as usize;
            let first_pos = plan.seq_ctx_len()[seq] as usize - q_len;
            let rows = q_len * group;
            let end = (row0 + PREFILL_TILE_ROWS).min(rows);
            let kmax = first_pos + (end - 1) / group + 1;
            (row0..end).map(move |r| {
                let (token, g) = (r / group, r % group);
                let limit = first_pos + token;
                let row = (q_start + token) * num_heads + h * group + g;
                let qv: Vec<f32> = q[row * d..][..d].iter().map(|e| round(e.widen())).collect();
                let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
                let mut acc = vec![0f32; d];
                for kb in (0..kmax).step_by(PREFILL_TILE_KEYS) {
                    let keys = kb..(kb + PREFILL_TILE_KEYS).min(kmax);
                    let s: Vec<f32> = keys
                        .clone()
                        .map(|pos| {
                            if pos <= limit {
                                let slot = plan.slot(seq, pos);
                                let kr = &k[(slot * num_kv_heads + h) * d..][..d];
                                let qk: f32 =
                                    qv.iter().zip(kr).map(|(a, b)| a * round(b.widen())).sum();
                                qk * scale
                            } else {
                                f32::NEG_INFINITY
                            }
                        })
                        .collect();
                    let mx = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let m_new = m.max(mx);
                    let base = if m_new == f32::NEG_INFINITY {
                        0.0
                    } else {
                        m_new
                    };
                    let alpha = (m - base).exp();
                    let p: Vec<f32> = s.iter().map(|x| (x - base).exp()).collect();
                    l = l * alpha + p.iter().sum::<f32>();
                    acc.iter_mut().for_each(|a| *a *= alpha);
                    for (j, pos) in keys.enumerate() {
                        if p[j] == 0.0 {
                            continue;
                        }
                        let pr = round(p[j]);
                        let slot = plan.slot(seq, pos);
                        let vr = &v[(slot * num_kv_heads + h) * d..][..d];
                        for (a, x) in acc.iter_mut().zip(vr) {
                            *a += pr * round(x.widen());
                        }
                    }
                    m = m_new;
                }
                (row, acc.iter().map(|a| a / l).collect())
            })
        })
        .collect()
}
