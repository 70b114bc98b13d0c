//! The candle op around the CPU attention kernels that read the paged cache ([`CacheKernel`]):
//! shape checks, and the pairings of query and cache dtypes the CPU serves, each dispatched to
//! the kernel's generic body.

use super::vector::CacheElement;
use crate::kernels::Element;
use candle_core::{CpuStorage, Layout, Shape, bail};

/// An attention kernel over the paged cache, for every pairing of query and cache dtypes the
/// CPU serves: `q` `[tokens, heads, d]` against `k`, `v` `[slots, kv_heads, d]`.
pub(super) trait CacheKernel {
    const NAME: &'static str;

    /// The query tokens this kernel was planned for (`None`: any number).
    fn tokens(&self) -> Option<usize>;

    fn run<T: Element, C: CacheElement>(
        &self,
        q: &[T],
        k: &[C],
        v: &[C],
        heads: usize,
        kv_heads: usize,
        d: usize,
    ) -> Vec<T>;
}

/// The candle op around a [`CacheKernel`].
pub(super) struct CacheOp<'a, K>(pub &'a K);

impl<K: CacheKernel> candle_core::CustomOp3 for CacheOp<'_, K> {
    fn name(&self) -> &'static str {
        K::NAME
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
        let name = K::NAME;
        let kernel = self.0;
        let (t, heads, d) = q_l.shape().dims3()?;
        let (_, kv_heads, kd) = k_l.shape().dims3()?;
        if kd != d || heads % kv_heads != 0 || kernel.tokens().is_some_and(|n| n != t) {
            bail!(
                "{name}: q {:?} does not fit cache {:?}",
                q_l.shape(),
                k_l.shape()
            )
        }
        let (Some((q0, q1)), Some((k0, _)), Some((v0, _))) = (
            q_l.contiguous_offsets(),
            k_l.contiguous_offsets(),
            v_l.contiguous_offsets(),
        ) else {
            bail!("{name} needs contiguous tensors")
        };
        // Each dtype over its own cache; f32 activations over a 16-bit or fp8 (e4m3) cache
        // (`--kv-cache-dtype`).
        let storage = crate::kernels::match_dtype_pair!(
            (q, k, v),
            [
                (F32, F32),
                (F16, F16),
                (BF16, BF16),
                (F32, BF16),
                (F32, F16),
                (F32, F8E4M3),
            ],
            |q, k, v| kernel.run(&q[q0..q1], &k[k0..], &v[v0..], heads, kv_heads, d),
            bail!(
                "{name}: k and v must share q's dtype (f32/f16/bf16), or be 16-bit or fp8 beside \
                 f32 queries"
            ),
        );
        Ok((storage, q_l.shape().clone()))
    }
}
