//! The `cuda` attention backend: tealight's own kernels ([`crate::kernels`]) — KV write by slot
//! mapping, paged attention for decode tokens (split over key partitions for long contexts), and
//! tensor-core varlen attention for prefill chunks over their cached prefix. The cache may be
//! narrower than the activations (`--kv-cache-dtype`: f16/bf16, or fp8 with the layer's scales):
//! the step's K/V are rounded to it as they are written, and the kernels widen what they read.
//!
//! Opt-in (`--attention-backend cuda`): `auto` resolves to `generic` on CUDA until
//! scripts/gpu/check.sh has shown this backend equal to `generic` and to transformers on a GPU;
//! only then should `AttentionBackend::resolve` pick it.
//!
//! On the CPU device the same ops run their CPU twins, which is how the tests exercise this
//! backend's plan and algorithms without a GPU. Head dims without kernels fall back to `generic`
//! (logged once).

use super::AttentionMetadata;
use super::generic::GenericMetadata;
use crate::batch::BatchInput;
use crate::error::Result;
use crate::kernels::kv_write::WriteKv;
use crate::kernels::paged_attention::PagedAttention;
use crate::kernels::plan::{AttentionPlan, HeadShape};
use crate::model::kv_cache::LayerKv;
use candle_core::{DType, Device, Tensor};
use std::cell::OnceCell;
use std::sync::Once;

pub struct CudaMetadata {
    batch: BatchInput,
    block_size: usize,
    device: Device,
    /// Built at the first layer, once the query shape and dtype are known; shared by all layers.
    plan: OnceCell<Box<(AttentionPlan, Tensor)>>,
    poison: bool,
}

/// The metadata of a step for the `cuda` backend, or `generic`'s where no kernel fits.
pub fn metadata(
    batch: &BatchInput,
    block_size: usize,
    kv_shape: (usize, usize),
    device: &Device,
) -> Result<AttentionMetadata> {
    let head_dim = kv_shape.1;
    if !crate::kernels::PAGED_HEAD_DIMS.contains(&head_dim) {
        static WARN: Once = Once::new();
        WARN.call_once(|| {
            tracing::warn!(
                "attention backend `cuda` has no kernels for head_dim {head_dim} (built for {:?}); \
                 using `generic`",
                crate::kernels::PAGED_HEAD_DIMS
            )
        });
        return Ok(AttentionMetadata::Generic(GenericMetadata::new(
            batch, block_size, kv_shape, device,
        )?));
    }
    Ok(AttentionMetadata::Cuda(CudaMetadata {
        batch: batch.clone(),
        block_size,
        device: device.clone(),
        plan: OnceCell::new(),
        poison: poison_outputs(),
    }))
}

/// `TEALIGHT_CUDA_POISON=1`: fill attention outputs with NaN before the kernels run.
fn poison_outputs() -> bool {
    static POISON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *POISON.get_or_init(|| {
        std::env::var("TEALIGHT_CUDA_POISON").is_ok_and(|v| !v.is_empty() && v != "0")
    })
}

impl CudaMetadata {
    fn plan(
        &self,
        shape: HeadShape,
        dtype: DType,
        cache: DType,
    ) -> Result<&(AttentionPlan, Tensor)> {
        if let Some(p) = self.plan.get() {
            return Ok(p.as_ref());
        }
        let tensor_cores = crate::kernels::prefill_supported(dtype, cache, shape.head_dim);
        let plan = AttentionPlan::new(&self.batch, self.block_size, shape, tensor_cores);
        let meta = Tensor::new(plan.packed.as_slice(), &self.device)?;
        Ok(self.plan.get_or_init(|| Box::new((plan, meta))).as_ref())
    }

    pub fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &LayerKv,
        scale: f64,
    ) -> Result<Tensor> {
        let (t, heads, head_dim) = q.dims3()?;
        let (_, kv_heads, _) = cache.k.dims3()?;
        let shape = HeadShape {
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
        };
        let (plan, meta) = self.plan(shape, q.dtype(), cache.k.dtype())?;
        let (k, v) = cache.as_stored(k, v)?;
        WriteKv::apply(&cache.k, &k, meta, plan.ranges.slots.clone())?;
        WriteKv::apply(&cache.v, &v, meta, plan.ranges.slots.clone())?;
        let op = PagedAttention {
            plan,
            meta,
            scale: scale as f32 * cache.scales.k,
            v_scale: cache.scales.v,
            poison: self.poison,
        };
        let out = op.forward(q, &cache.k, &cache.v)?;
        Ok(out.reshape((t, heads * head_dim))?)
    }
}
