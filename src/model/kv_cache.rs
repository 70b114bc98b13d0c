//! The paged KV cache: per layer one K and one V tensor of `num_blocks * block_size` slots, each
//! slot holding `[num_kv_heads, head_dim]`. Which block belongs to which sequence is the engine's
//! business (block tables); the cache only stores.
//!
//! An fp8 cache (`--kv-cache-dtype fp8`) stores each layer's K and V divided by a per-tensor
//! scale and reads them multiplied by it, as vLLM does with its `k_scale`/`v_scale`: 1 unless
//! set ([`KvCache::set_scales`]). The other dtypes keep their values as they are (scale 1).

use crate::error::{Error, Result};
use crate::weights::config::Qwen3Config;
use crate::weights::store::WeightStore;
use candle_core::{DType, Device, Shape, Tensor, WithDType};

pub struct KvCache {
    block_size: usize,
    num_blocks: usize,
    dtype: DType,
    layers: Vec<LayerKv>,
}

/// One layer's K and V, shaped `[num_slots, num_kv_heads, head_dim]`.
pub struct LayerKv {
    pub k: Tensor,
    pub v: Tensor,
    pub scales: KvScales,
}

impl LayerKv {
    /// K and V kept as they are (scales of 1).
    pub fn new(k: Tensor, v: Tensor) -> Self {
        Self {
            k,
            v,
            scales: KvScales::UNIT,
        }
    }

    /// A step's `k`, `v` (`[T, kv_heads, head_dim]`) as this layer stores them: divided by its
    /// scales (vLLM's stored = x / scale; only an fp8 cache has other than 1), then rounded to
    /// the cache's dtype (e4m3: to nearest even, saturated at ±448, as the `cpu` backend's write).
    pub fn as_stored(&self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let stored = |x: &Tensor, scale: f32| -> Result<Tensor> {
            let x = if scale == 1.0 {
                x.clone()
            } else {
                let scale = Tensor::new(scale, x.device())?.to_dtype(x.dtype())?;
                x.broadcast_div(&scale)?
            };
            Ok(x.to_dtype(self.k.dtype())?)
        };
        Ok((stored(k, self.scales.k)?, stored(v, self.scales.v)?))
    }
}

/// A layer's per-tensor cache scales (vLLM's `k_scale`, `v_scale`): stored = x / scale, read =
/// stored × scale. Only an fp8 cache needs other than 1, to fit ±448.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvScales {
    pub k: f32,
    pub v: f32,
}

impl KvScales {
    pub const UNIT: Self = Self { k: 1.0, v: 1.0 };
}

impl Default for KvScales {
    fn default() -> Self {
        Self::UNIT
    }
}

/// Each layer's scales as an fp8-quantized checkpoint carries them, in the names vLLM loads:
/// `model.layers.N.self_attn.{k,v}_scale` (llm-compressor), `….self_attn.{k,v}_proj.{k,v}_scale`
/// (ModelOpt), `….self_attn.{k,v}_proj.output_scale` (compressed-tensors' older layout), and
/// the deprecated `….self_attn.kv_scale` for both. A scale the checkpoint lacks is 1, as in
/// vLLM; `None` when it has none at all.
pub fn checkpoint_scales(store: &WeightStore, layers: usize) -> Result<Option<Vec<KvScales>>> {
    let mut found = false;
    let mut scales = Vec::with_capacity(layers);
    for i in 0..layers {
        let attn = format!("model.layers.{i}.self_attn");
        let mut one = |kv: char| -> Result<f32> {
            let names = [
                format!("{attn}.{kv}_scale"),
                format!("{attn}.{kv}_proj.{kv}_scale"),
                format!("{attn}.{kv}_proj.output_scale"),
                format!("{attn}.kv_scale"),
            ];
            let Some(name) = names.iter().find(|n| store.contains(n)) else {
                return Ok(1.0);
            };
            found = true;
            scalar(store, name)
        };
        let (k, v) = (one('k')?, one('v')?);
        scales.push(KvScales { k, v });
    }
    Ok(found.then_some(scales))
}

/// A one-element tensor (stored as a scalar or as `[1]`) as f32.
fn scalar(store: &WeightStore, name: &str) -> Result<f32> {
    let tensor = store
        .get_stored(name, &[])
        .or_else(|_| store.get_stored(name, &[1]))?;
    Ok(tensor
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?[0])
}

impl KvCache {
    pub fn new(
        cfg: &Qwen3Config,
        num_blocks: usize,
        block_size: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::with_layout(
            cfg.num_hidden_layers,
            (cfg.num_key_value_heads, cfg.head_dim),
            num_blocks,
            block_size,
            dtype,
            device,
        )
    }

    /// A cache of `layers` layers of `(kv_heads, head_dim)` slots (a draft head's, beside the
    /// model's).
    pub fn with_layout(
        layers: usize,
        (kv_heads, head_dim): (usize, usize),
        num_blocks: usize,
        block_size: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (num_blocks * block_size, kv_heads, head_dim);
        let layers = (0..layers)
            .map(|_| {
                Ok(LayerKv::new(
                    resident_zeros(shape, dtype, device)?,
                    resident_zeros(shape, dtype, device)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            block_size,
            num_blocks,
            dtype,
            layers,
        })
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    pub fn layer(&self, index: usize) -> &LayerKv {
        &self.layers[index]
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The cache's element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `[num_slots, num_kv_heads, head_dim]`.
    pub fn slot_shape(&self) -> (usize, usize, usize) {
        let dims = self
            .layers
            .first()
            .map(|l| l.k.dims().to_vec())
            .unwrap_or_default();
        match dims[..] {
            [slots, heads, dim] => (slots, heads, dim),
            _ => (0, 0, 0),
        }
    }

    /// Sets each layer's scales (one per layer, in order). Only an fp8 cache is scaled (the
    /// writes that copy a cache's own dtype have nothing to divide). Scales must be finite and
    /// positive: a zero or NaN scale would write NaN into every slot.
    pub fn set_scales(&mut self, scales: &[KvScales]) -> Result<()> {
        let dtype = self.layers.first().map(|l| l.k.dtype());
        if dtype.is_some_and(|d| d != DType::F8E4M3) && scales.iter().any(|&s| s != KvScales::UNIT)
        {
            return Err(Error::config(format!(
                "KV scales other than 1 need an fp8 cache, not {dtype:?}"
            )));
        }
        if scales.len() != self.layers.len() {
            return Err(Error::config(format!(
                "{} KV scales for {} layers",
                scales.len(),
                self.layers.len()
            )));
        }
        if let Some(bad) = scales
            .iter()
            .find(|s| !(s.k.is_finite() && s.k > 0.0 && s.v.is_finite() && s.v > 0.0))
        {
            return Err(Error::config(format!(
                "KV scales must be finite and positive: {bad:?}"
            )));
        }
        for (layer, &s) in self.layers.iter_mut().zip(scales) {
            layer.scales = s;
        }
        Ok(())
    }
}

/// A zero tensor whose memory is resident from the start. On the CPU, `Tensor::zeros` gets
/// fresh pages from the OS that become resident only when first written: the pool would then
/// grow into its size over hours of serving (a soak read it as an 18 % leak), and a pool larger
/// than free memory would fail mid-request instead of at start-up. The GPU allocator commits
/// on allocation.
fn resident_zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
    let shape = shape.into();
    if !device.is_cpu() {
        return Ok(Tensor::zeros(shape, dtype, device)?);
    }
    let n = shape.elem_count();
    Ok(match dtype {
        DType::F32 => Tensor::from_vec(touched_zeros::<f32>(n), shape, device)?,
        DType::BF16 => Tensor::from_vec(touched_zeros::<half::bf16>(n), shape, device)?,
        DType::F16 => Tensor::from_vec(touched_zeros::<half::f16>(n), shape, device)?,
        DType::F8E4M3 => Tensor::from_vec(touched_zeros::<float8::F8E4M3>(n), shape, device)?,
        _ => Tensor::zeros(shape, dtype, device)?,
    })
}

/// `n` zeros with one write per page, so every page is backed now. The writes are volatile:
/// zeros over zeroed memory are otherwise removed as redundant.
fn touched_zeros<T: WithDType>(n: usize) -> Vec<T> {
    const PAGE_BYTES: usize = 4096;
    let mut v = crate::kernels::huge_pages::filled(n, T::zero());
    let stride = (PAGE_BYTES / std::mem::size_of::<T>()).max(1);
    // Writes a page apart touch every page they span; the last element covers a tail page.
    for i in (0..n).step_by(stride).chain(n.checked_sub(1)) {
        // SAFETY: `i < n`, inside the vector's initialised length.
        unsafe { std::ptr::write_volatile(v.as_mut_ptr().add(i), T::zero()) };
    }
    v
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Fraction of the pages under `bytes` that are resident (mincore).
    fn resident_fraction(bytes: &[u8]) -> f64 {
        let page = 4096usize;
        let start = bytes.as_ptr() as usize / page * page;
        let len = bytes.as_ptr() as usize + bytes.len() - start;
        let mut flags = vec![0u8; len.div_ceil(page)];
        // SAFETY: the range covers the pages of a live allocation; `flags` has one byte a page.
        let rc = unsafe { libc::mincore(start as *mut libc::c_void, len, flags.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore failed");
        flags.iter().filter(|&&f| f & 1 == 1).count() as f64 / flags.len() as f64
    }

    #[test]
    fn cpu_pool_is_resident_from_the_start() {
        let n = 64 << 20; // 256 MiB of f32: served by fresh pages, never a recycled heap block
        let untouched = vec![0f32; n];
        let touched = touched_zeros::<f32>(n);
        let as_bytes = |v: &[f32]| {
            // SAFETY: any f32 slice is a valid byte slice of four times the length.
            unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 4) }
        };
        assert!(resident_fraction(as_bytes(&untouched)) < 0.1);
        assert_eq!(resident_fraction(as_bytes(&touched)), 1.0);
        assert!(touched.iter().all(|&x| x == 0.0));
    }
}
