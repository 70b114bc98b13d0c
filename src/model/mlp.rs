//! The feed-forward half of a decoder layer: a dense SwiGLU MLP, or (Qwen3-MoE) a sparse block
//! that routes each token to a few expert MLPs.

use super::layers::Projection;
use super::moe::SparseMoe;
use super::swiglu::swiglu;
use crate::error::Result;
use crate::weights::config::Qwen3Config;
use crate::weights::store::WeightStore;
use candle_core::Tensor;

/// `down(silu(gate(x)) · up(x))`, gate and up fused into one product.
pub struct DenseMlp {
    gate_up: Projection,
    down: Projection,
}

impl DenseMlp {
    /// From its fused gate|up projection and its down projection.
    pub fn new(gate_up: Projection, down: Projection) -> Self {
        Self { gate_up, down }
    }

    /// The MLP whose `gate_proj`/`up_proj`/`down_proj` live under `prefix`, `inter` wide.
    pub fn load(store: &WeightStore, prefix: &str, inter: usize, hidden: usize) -> Result<Self> {
        let name = |n: &str| format!("{prefix}.{n}");
        Ok(Self {
            gate_up: Projection::load(
                store,
                &[&name("gate_proj"), &name("up_proj")],
                &[inter, inter],
                hidden,
                false,
            )?,
            down: Projection::load(store, &[&name("down_proj")], &[hidden], inter, false)?,
        })
    }

    /// `x`: `[rows, hidden]` → `[rows, hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down.forward(&swiglu(&self.gate_up.forward(x)?)?)
    }
}

/// One layer's feed-forward block.
pub enum FeedForward {
    Dense(DenseMlp),
    Sparse(SparseMoe),
}

impl FeedForward {
    /// Layer `layer`'s block: sparse where the config routes it to experts, else dense.
    pub fn load(store: &WeightStore, cfg: &Qwen3Config, layer: usize) -> Result<Self> {
        let prefix = format!("model.layers.{layer}.mlp");
        Ok(match &cfg.moe {
            Some(moe) if moe.is_sparse(layer) => {
                Self::Sparse(SparseMoe::load(store, &prefix, moe, cfg.hidden_size)?)
            }
            _ => Self::Dense(DenseMlp::load(
                store,
                &prefix,
                cfg.intermediate_size,
                cfg.hidden_size,
            )?),
        })
    }

    /// Checkpoint tensors one layer's block reads.
    pub fn tensor_count(cfg: &Qwen3Config, layer: usize) -> usize {
        match &cfg.moe {
            Some(moe) if moe.is_sparse(layer) => 1 + 3 * moe.num_experts,
            _ => 3,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(mlp) => mlp.forward(x),
            Self::Sparse(moe) => moe.forward(x),
        }
    }
}
