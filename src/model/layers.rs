//! Small building blocks of the Qwen3 decoder: RMSNorm, rotary tables, and dense projections.

use crate::error::{Error, Result};
use crate::kernels::cpu_linear::{PackedWeight, QuantizedPanels};
use crate::weights::fp8::Fp8Weight;
use crate::weights::quantized::{CandleQuantized, QuantizedWeight};
use crate::weights::store::{StoredWeight, WeightStore};
use candle_core::{DType, Device, Tensor};

/// RMSNorm with a learned scale; candle's fused kernel accumulates in f32 on every backend.
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn load(store: &WeightStore, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: store.get(name, &[dim])?,
            eps: eps as f32,
        })
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(
            &x.contiguous()?,
            &self.weight,
            self.eps,
        )?)
    }
}

/// A linear map `y = x Wᵀ (+ b)` whose weight may be several checkpoint tensors stacked along
/// the output dimension (q|k|v, gate|up), so one matmul serves them all.
pub struct Projection {
    weight: ProjectionWeight,
    bias: Option<Tensor>,
}

/// How the weight is held, by where it runs.
enum ProjectionWeight {
    /// CPU with f32 activations on x86-64 with AVX2/FMA/F16C: column panels in the checkpoint's
    /// dtype, multiplied by our kernel (see [`crate::kernels::cpu_linear`] for why).
    Packed(PackedWeight),
    /// Other CPUs, or half-precision compute: `[in, out]` for candle's gemm, one input row
    /// multiplied as two. gemm 0.19 with the checkpoint's `[out, in]` layout makes few-row
    /// products 3–10× slower, and sends one row down a gemv path whose summation order differs
    /// from its multi-row kernel, which would make a sequence's logits depend on whether it had
    /// the step to itself.
    Transposed(Tensor),
    /// Accelerators: the checkpoint's `[out, in]`, which cuBLAS takes as is.
    Checkpoint(Tensor),
    /// A GGML block format on a CPU with f32 activations, in panels for our integer kernels
    /// (see [`crate::kernels::cpu_linear::quant`]).
    QuantizedPacked(QuantizedPanels),
    /// A GGML block format (GGUF files, `--quantization`) through candle's `QMatMul`: the
    /// device-generic path, on CUDA and on CPUs our kernels do not cover.
    Quantized(CandleQuantized),
    /// Parts stored in different formats (GGUF mixes: q and k in Q4_K, v in Q6_K): one
    /// product each, outputs side by side.
    Split(Vec<Projection>),
}

impl Projection {
    pub fn load(
        store: &WeightStore,
        names: &[&str],
        out_dims: &[usize],
        in_dim: usize,
        with_bias: bool,
    ) -> Result<Self> {
        let parts = names
            .iter()
            .zip(out_dims)
            .map(|(name, &out)| store.get_weight(&format!("{name}.weight"), &[out, in_dim]))
            .collect::<Result<Vec<_>>>()?;
        let bias = if with_bias {
            let b = names
                .iter()
                .zip(out_dims)
                .map(|(name, &out)| store.get(&format!("{name}.bias"), &[out]))
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&b, 0)?)
        } else {
            None
        };
        Ok(Self {
            weight: Self::from_parts(parts, store.device(), store.dtype())?,
            bias,
        })
    }

    /// One weight for stacked parts: dense parts concatenate (and pack, on the CPU), quantized
    /// parts of one type stack, FP8 parts stack (packed, on the CPU; dequantized elsewhere);
    /// anything else is split.
    fn from_parts(
        parts: Vec<StoredWeight>,
        device: &Device,
        compute: DType,
    ) -> Result<ProjectionWeight> {
        if parts.iter().all(|p| matches!(p, StoredWeight::Dense(_))) {
            let dense = parts
                .into_iter()
                .filter_map(|p| match p {
                    StoredWeight::Dense(t) => Some(t),
                    _ => None,
                })
                .collect();
            return Self::dense(cat_rows(dense)?, compute);
        }
        if parts.iter().all(|p| matches!(p, StoredWeight::Fp8(_))) {
            let fp8: Vec<Fp8Weight> = parts
                .into_iter()
                .filter_map(|p| match p {
                    StoredWeight::Fp8(w) => Some(w),
                    _ => None,
                })
                .collect();
            return Self::fp8(fp8, device, compute);
        }
        let one_type = parts.windows(2).all(|w| match w {
            [StoredWeight::Quantized(a), StoredWeight::Quantized(b)] => a.dtype == b.dtype,
            _ => false,
        });
        if one_type {
            let quantized = parts
                .into_iter()
                .filter_map(|p| match p {
                    StoredWeight::Quantized(q) => Some(q),
                    _ => None,
                })
                .collect();
            let stacked = QuantizedWeight::stack(quantized).map_err(Error::Internal)?;
            if packs(device, compute) && QuantizedPanels::supports(&stacked) {
                return Ok(ProjectionWeight::QuantizedPacked(QuantizedPanels::pack(
                    &stacked,
                )?));
            }
            return Ok(ProjectionWeight::Quantized(CandleQuantized::new(
                &stacked, device,
            )?));
        }
        let split = parts
            .into_iter()
            .map(|p| {
                Ok(Projection {
                    weight: Self::from_parts(vec![p], device, compute)?,
                    bias: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ProjectionWeight::Split(split))
    }

    /// FP8 parts: one byte a weight in the packed kernel where it runs, else (GPUs, half
    /// compute, blocks that do not stack) dequantized to a dense weight at load.
    fn fp8(parts: Vec<Fp8Weight>, device: &Device, compute: DType) -> Result<ProjectionWeight> {
        if packs(device, compute)
            && let Ok(stacked) = Fp8Weight::stack(parts.clone())
            && let Ok(packed) = PackedWeight::pack_fp8(&stacked)
        {
            return Ok(ProjectionWeight::Packed(packed));
        }
        let dense = parts
            .iter()
            .map(|w| Ok(w.dequantize()?.to_device(device)?))
            .collect::<Result<Vec<_>>>()?;
        Self::dense(cat_rows(dense)?, compute)
    }

    /// From checkpoint parts stacked along the output (q|k|v, gate|up) as a store would give
    /// them, without bias: benchmarks and tests build layers without a checkpoint this way.
    pub fn from_stored_parts(
        parts: Vec<StoredWeight>,
        device: &Device,
        compute: DType,
    ) -> Result<Self> {
        Ok(Self {
            weight: Self::from_parts(parts, device, compute)?,
            bias: None,
        })
    }

    /// From one `[out, in]` weight, without bias, computing in the weight's dtype.
    pub fn from_weight(weight: Tensor) -> Result<Self> {
        let compute = weight.dtype();
        Self::new(weight, None, compute)
    }

    /// From one `[out, in]` weight as a checkpoint stores it, computing in `compute`.
    pub fn from_stored(weight: Tensor, compute: DType) -> Result<Self> {
        Self::new(weight, None, compute)
    }

    fn new(weight: Tensor, bias: Option<Tensor>, compute: DType) -> Result<Self> {
        Ok(Self {
            weight: Self::dense(weight, compute)?,
            bias,
        })
    }

    /// How a dense `[out, in]` weight is held for `compute` on its device.
    fn dense(weight: Tensor, compute: DType) -> Result<ProjectionWeight> {
        Ok(if packs(weight.device(), compute) {
            ProjectionWeight::Packed(PackedWeight::pack(&weight)?)
        } else {
            let weight = weight.to_dtype(compute)?;
            if weight.device().is_cpu() {
                ProjectionWeight::Transposed(weight.t()?.contiguous()?)
            } else {
                ProjectionWeight::Checkpoint(weight)
            }
        })
    }

    /// `x`: `[rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            ProjectionWeight::Packed(w) => w.forward(x)?,
            ProjectionWeight::Transposed(w) if x.dim(0)? == 1 => {
                Tensor::cat(&[x, x], 0)?.matmul(w)?.narrow(0, 0, 1)?
            }
            ProjectionWeight::Transposed(w) => x.matmul(w)?,
            ProjectionWeight::Checkpoint(w) => x.matmul(&w.t()?)?,
            ProjectionWeight::QuantizedPacked(w) => w.forward(x)?,
            ProjectionWeight::Quantized(w) => w.forward(x)?,
            ProjectionWeight::Split(parts) => {
                let outputs = parts
                    .iter()
                    .map(|p| p.forward(x))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&outputs, 1)?
            }
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// Rows `ids` of the `[out, in]` weight, `[n, in]`: the embedding lookup when the input
    /// embedding is tied to this projection (one copy of the matrix serves both), or the
    /// embedding itself held as a projection. Quantized weights give f32 rows.
    pub fn weight_rows(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match &self.weight {
            ProjectionWeight::Packed(w) => w.rows(&ids.to_vec1::<u32>()?)?,
            ProjectionWeight::Transposed(w) => w.index_select(ids, 1)?.t()?.contiguous()?,
            ProjectionWeight::Checkpoint(w) => w.index_select(ids, 0)?,
            ProjectionWeight::QuantizedPacked(w) => w.rows(&ids.to_vec1::<u32>()?)?,
            ProjectionWeight::Quantized(w) => w.rows(ids)?,
            ProjectionWeight::Split(_) => {
                return Err(Error::Internal(
                    "row lookup in a projection of mixed formats".into(),
                ));
            }
        })
    }

    /// Whether the packed CPU kernel serves this projection.
    pub fn is_packed(&self) -> bool {
        matches!(self.weight, ProjectionWeight::Packed(_))
    }
}

/// Whether weights for `compute` on `device` go to the packed CPU kernel.
fn packs(device: &Device, compute: DType) -> bool {
    device.is_cpu() && compute == DType::F32 && PackedWeight::supported()
}

/// Stacks `[out_i, in]` weights; checkpoint tensors of mixed dtypes meet in f32.
fn cat_rows(weights: Vec<Tensor>) -> Result<Tensor> {
    let Some(first) = weights.first() else {
        return Err(crate::error::Error::Internal(
            "projection without weights".into(),
        ));
    };
    if weights.len() == 1 {
        return Ok(first.clone());
    }
    let dtype = first.dtype();
    if weights.iter().all(|w| w.dtype() == dtype) {
        return Ok(Tensor::cat(&weights, 0)?);
    }
    let widened = weights
        .iter()
        .map(|w| w.to_dtype(DType::F32))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&widened, 0)?)
}

/// A fused q|k|v projection's output `[tokens, (heads + 2 × kv_heads) × head_dim]` as q
/// `[tokens, heads, head_dim]`, k and v `[tokens, kv_heads, head_dim]`.
pub fn split_qkv(
    qkv: &Tensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (t, d) = (qkv.dim(0)?, head_dim);
    let q = qkv.narrow(1, 0, heads * d)?.reshape((t, heads, d))?;
    let k = qkv
        .narrow(1, heads * d, kv_heads * d)?
        .reshape((t, kv_heads, d))?;
    let v = qkv
        .narrow(1, (heads + kv_heads) * d, kv_heads * d)?
        .reshape((t, kv_heads, d))?;
    Ok((q, k, v))
}

/// cos/sin of every position up to the model's limit, `[max_positions, head_dim / 2]`.
pub struct RotaryTables {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryTables {
    pub fn new(
        head_dim: usize,
        max_positions: usize,
        theta: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32)
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, head_dim / 2), device)?;
        let positions = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let freqs = positions.matmul(&inv_freq)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }

    /// Rotates `x` (`[tokens, heads, head_dim]`) by each token's position (`positions`: `[tokens]` u32).
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let rotated = candle_nn::rotary_emb::rope_thd(&x.unsqueeze(0)?.contiguous()?, cos, sin)?;
        Ok(rotated.squeeze(0)?)
    }

    /// The cos/sin rows of the given positions, shared by every layer of a step.
    pub fn select(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.cos.index_select(positions, 0)?.contiguous()?,
            self.sin.index_select(positions, 0)?.contiguous()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row's output does not depend on how many rows share the product, bit for bit, on both
    /// CPU paths. The inner dimension is above gemm's 512-deep blocking, where its one-row gemv
    /// path sums in a different order than the multi-row kernel.
    #[test]
    fn rows_are_bitwise_independent_of_the_row_count() {
        let dev = Device::Cpu;
        let (out, inner) = (96, 1536);
        let w = Tensor::randn(0f32, 0.05, (out, inner), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (300, inner), &dev).unwrap();
        let gemm = Projection {
            weight: ProjectionWeight::Transposed(w.t().unwrap().contiguous().unwrap()),
            bias: None,
        };
        let chosen = Projection::from_weight(w).unwrap();
        for proj in [&gemm, &chosen] {
            let row0 = |rows: usize| -> Vec<u32> {
                let y = proj.forward(&x.narrow(0, 0, rows).unwrap()).unwrap();
                let v = y.get(0).unwrap().to_vec1::<f32>().unwrap();
                v.iter().map(|f| f.to_bits()).collect()
            };
            let alone = row0(1);
            for rows in [2, 3, 5, 17, 64, 300] {
                assert_eq!(row0(rows), alone, "{rows} rows");
            }
        }
    }

    #[test]
    fn f32_cpu_projections_use_the_packed_kernel_where_it_runs() {
        let w = Tensor::zeros((4, 3), DType::BF16, &Device::Cpu).unwrap();
        let proj = Projection::from_stored(w, DType::F32).unwrap();
        assert_eq!(proj.is_packed(), PackedWeight::supported());
    }

    #[test]
    fn tied_lookup_reads_the_weight_rows() {
        let dev = Device::Cpu;
        let w = Tensor::arange(0f32, 12.0, &dev)
            .unwrap()
            .reshape((4, 3))
            .unwrap();
        let proj = Projection::from_weight(w.clone()).unwrap();
        let ids = Tensor::new(&[2u32, 0, 2], &dev).unwrap();
        assert_eq!(
            proj.weight_rows(&ids).unwrap().to_vec2::<f32>().unwrap(),
            w.index_select(&ids, 0).unwrap().to_vec2::<f32>().unwrap()
        );
    }
}
