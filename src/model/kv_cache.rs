//! The paged KV cache: per layer one K and one V tensor of `num_blocks * block_size` slots, each
//! slot holding `[num_kv_heads, head_dim]`. Which block belongs to which sequence is the engine's
//! business (block tables); the cache only stores.

use super::config::Qwen3Config;
use crate::error::Result;
use candle_core::{DType, Device, Tensor};

pub struct KvCache {
    block_size: usize,
    num_blocks: usize,
    layers: Vec<LayerKv>,
}

/// One layer's K and V, shaped `[num_slots, num_kv_heads, head_dim]`.
pub struct LayerKv {
    pub k: Tensor,
    pub v: Tensor,
}

impl KvCache {
    pub fn new(
        cfg: &Qwen3Config,
        num_blocks: usize,
        block_size: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (
            num_blocks * block_size,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| {
                Ok(LayerKv {
                    k: Tensor::zeros(shape, dtype, device)?,
                    v: Tensor::zeros(shape, dtype, device)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            block_size,
            num_blocks,
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
}
