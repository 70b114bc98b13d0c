//! Small building blocks of the Qwen3 decoder: RMSNorm, rotary tables, and dense projections.

use super::weights::WeightStore;
use crate::error::Result;
use candle_core::{DType, Device, Module, Tensor};

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

/// A bias-free linear map `y = x Wᵀ` whose weight may be several checkpoint tensors stacked along
/// the output dimension (q|k|v, gate|up), so one matmul serves them all.
pub struct Projection {
    linear: candle_nn::Linear,
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
        let biases = if with_bias {
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
            linear: candle_nn::Linear::new(Tensor::cat(&weights, 0)?, biases),
        })
    }

    pub fn from_weight(weight: Tensor) -> Self {
        Self {
            linear: candle_nn::Linear::new(weight, None),
        }
    }

    /// `x`: `[rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.linear.forward(x)?)
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
