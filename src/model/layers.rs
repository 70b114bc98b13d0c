//! Small building blocks of the Qwen3 decoder: RMSNorm, rotary tables, and dense projections.

use super::weights::WeightStore;
use crate::error::Result;
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
///
/// On the CPU the weight is kept transposed (`[in, out]`, contiguous) and a single input row is
/// multiplied as two. gemm 0.19 with the checkpoint's `[out, in]` layout makes the few-row
/// products of decode batches 3–10× slower than one row (`cargo bench --bench projection`),
/// and it sends one row down a gemv path whose summation order differs from its multi-row
/// kernel: a sequence's logits then depend on whether it had the step to itself, which breaks
/// seeded sampling's batch invariance. Transposed, every row count takes the same kernel with
/// the same per-row arithmetic (bit for bit; tested in `tests/model_parity.rs`), and two rows
/// cost less than gemv's one. Accelerators keep `[out, in]` (cuBLAS takes it as is).
pub struct Projection {
    weight: Tensor,
    bias: Option<Tensor>,
    transposed: bool,
}

impl Projection {
    pub fn load(
        store: &WeightStore,
        names: &[&str],
        out_dims: &[usize],
        in_dim: usize,
        with_bias: bool,
    ) -> Result<Self> {
        let weights = names
            .iter()
            .zip(out_dims)
            .map(|(name, &out)| store.get(&format!("{name}.weight"), &[out, in_dim]))
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
        Self::new(Tensor::cat(&weights, 0)?, bias)
    }

    /// From one `[out, in]` weight, without bias.
    pub fn from_weight(weight: Tensor) -> Result<Self> {
        Self::new(weight, None)
    }

    fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let transposed = weight.device().is_cpu();
        let weight = if transposed {
            weight.t()?.contiguous()?
        } else {
            weight
        };
        Ok(Self {
            weight,
            bias,
            transposed,
        })
    }

    /// `x`: `[rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if !self.transposed {
            x.matmul(&self.weight.t()?)?
        } else if x.dim(0)? == 1 {
            Tensor::cat(&[x, x], 0)?
                .matmul(&self.weight)?
                .narrow(0, 0, 1)?
        } else {
            x.matmul(&self.weight)?
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// Rows `ids` of the `[out, in]` weight, `[n, in]`: the embedding lookup when the input
    /// embedding is tied to this projection (one copy of the matrix serves both).
    pub fn weight_rows(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(if self.transposed {
            self.weight.index_select(ids, 1)?.t()?.contiguous()?
        } else {
            self.weight.index_select(ids, 0)?
        })
    }
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

    /// A row's output does not depend on how many rows share the product, bit for bit. The
    /// inner dimension is above gemm's 512-deep blocking, where its one-row gemv path sums in a
    /// different order than the multi-row kernel.
    #[test]
    fn rows_are_bitwise_independent_of_the_row_count() {
        let dev = Device::Cpu;
        let (out, inner) = (96, 1536);
        let w = Tensor::randn(0f32, 0.05, (out, inner), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (300, inner), &dev).unwrap();
        let proj = Projection::from_weight(w).unwrap();
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
