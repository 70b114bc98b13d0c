//! KV-cache write by slot mapping: row `i` of `src` (`[T, kv_heads, head_dim]`) goes to row
//! `slots[i]` of the cache (`[num_slots, kv_heads, head_dim]`). `slots` is a range of the step's
//! packed plan tensor ([`super::plan::AttentionPlan::ranges`]`.slots`), passed as the third input.
//!
//! CUDA: `tl_write_kv_w{16,8,4,2}` (kernels/kv_cache.cu), one CTA per row, copying words of the
//! widest size that divides the row and both offsets. CPU twin: [`WriteKv::cpu_fwd`].

use candle_core::{CpuStorage, Layout, Result, Tensor, bail};
use std::ops::Range;

pub struct WriteKv {
    /// Where the slots are in the plan tensor.
    pub slots: Range<usize>,
}

impl WriteKv {
    /// Writes `src` into `cache` at the slots `meta[slots]`.
    pub fn apply(cache: &Tensor, src: &Tensor, meta: &Tensor, slots: Range<usize>) -> Result<()> {
        cache.inplace_op3(&src.contiguous()?, meta, &WriteKv { slots })
    }

    /// Checks shapes; returns (rows to write, elements per row).
    pub(crate) fn geometry(
        &self,
        dst_l: &Layout,
        src_l: &Layout,
        meta_l: &Layout,
    ) -> Result<(usize, usize)> {
        if !dst_l.is_contiguous() || !src_l.is_contiguous() || !meta_l.is_contiguous() {
            bail!("write-kv needs contiguous tensors")
        }
        let dims = dst_l.shape().dims();
        if dims.is_empty() || dims[0] == 0 {
            bail!("write-kv: empty cache {:?}", dst_l.shape())
        }
        let row = dst_l.shape().elem_count() / dims[0];
        let n = src_l.shape().elem_count();
        if row == 0 || !n.is_multiple_of(row) || n / row != self.slots.len() {
            bail!(
                "write-kv: source {:?} does not fit {} slots of cache {:?}",
                src_l.shape(),
                self.slots.len(),
                dst_l.shape()
            )
        }
        if self.slots.end > meta_l.shape().elem_count() {
            bail!("write-kv: slot range {:?} outside the plan", self.slots)
        }
        Ok((self.slots.len(), row))
    }
}

impl candle_core::InplaceOp3 for WriteKv {
    fn name(&self) -> &'static str {
        "tl-write-kv"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        src_l: &Layout,
        meta: &CpuStorage,
        meta_l: &Layout,
    ) -> Result<()> {
        fn copy<T: Copy>(dst: &mut [T], src: &[T], slots: &[u32], row: usize) -> Result<()> {
            let capacity = dst.len() / row;
            for (i, &slot) in slots.iter().enumerate() {
                let slot = slot as usize;
                if slot >= capacity {
                    bail!("write-kv: slot {slot} outside the cache of {capacity}")
                }
                dst[slot * row..][..row].copy_from_slice(&src[i * row..][..row]);
            }
            Ok(())
        }
        let (rows, row) = self.geometry(dst_l, src_l, meta_l)?;
        let CpuStorage::U32(meta) = meta else {
            bail!("write-kv: the plan must be u32")
        };
        let slots = &meta[meta_l.start_offset()..][self.slots.clone()];
        let (d0, s0) = (dst_l.start_offset(), src_l.start_offset());
        let d_len = dst_l.shape().elem_count();
        match (dst, src) {
            (CpuStorage::F32(d), CpuStorage::F32(s)) => {
                copy(&mut d[d0..d0 + d_len], &s[s0..s0 + rows * row], slots, row)
            }
            (CpuStorage::F16(d), CpuStorage::F16(s)) => {
                copy(&mut d[d0..d0 + d_len], &s[s0..s0 + rows * row], slots, row)
            }
            (CpuStorage::BF16(d), CpuStorage::BF16(s)) => {
                copy(&mut d[d0..d0 + d_len], &s[s0..s0 + rows * row], slots, row)
            }
            // Restoring an fp8 cache's block from an offload tier: bytes as they were stored.
            (CpuStorage::F8E4M3(d), CpuStorage::F8E4M3(s)) => {
                copy(&mut d[d0..d0 + d_len], &s[s0..s0 + rows * row], slots, row)
            }
            _ => bail!("write-kv: cache and source must share one of f32/f16/bf16/fp8"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dst: &mut candle_core::CudaStorage,
        dst_l: &Layout,
        src: &candle_core::CudaStorage,
        src_l: &Layout,
        meta: &candle_core::CudaStorage,
        meta_l: &Layout,
    ) -> Result<()> {
        let (rows, row) = self.geometry(dst_l, src_l, meta_l)?;
        let launch = super::cuda::KvWriteLaunch {
            rows,
            row,
            slots: &self.slots,
        };
        super::cuda::write_kv(launch, dst, dst_l, src, src_l, meta, meta_l)
    }
}
