//! A block of the KV cache as bytes, out and back in: what the offload tiers store. The bytes
//! are the block's K then V rows, layer by layer, in the cache's own element type, so a block
//! goes out and comes back without rounding.

use candle_core::{DType, Tensor, WithDType};

use super::kv_cache::KvCache;
use crate::error::{Error, Result};
use crate::kernels::kv_write::WriteKv;

impl KvCache {
    /// Bytes of one block's K and V over all layers.
    pub fn block_payload_bytes(&self) -> usize {
        let (_, kv_heads, head_dim) = self.slot_shape();
        2 * self.num_layers()
            * self.block_size()
            * kv_heads
            * head_dim
            * self.dtype().size_in_bytes()
    }

    /// The block's K and V, as [`Self::write_block`] takes them back.
    pub fn read_block(&self, block: u32) -> Result<Vec<u8>> {
        let start = self.first_slot(block)?;
        let mut out = Vec::with_capacity(self.block_payload_bytes());
        for index in 0..self.num_layers() {
            let layer = self.layer(index);
            for t in [&layer.k, &layer.v] {
                out.extend_from_slice(&tensor_bytes(&t.narrow(0, start, self.block_size())?)?);
            }
        }
        Ok(out)
    }

    /// Fills `block` with bytes [`Self::read_block`] produced under the same layout.
    pub fn write_block(&self, block: u32, payload: &[u8]) -> Result<()> {
        if payload.len() != self.block_payload_bytes() {
            return Err(Error::Internal(format!(
                "a KV block is {} bytes, not {}",
                self.block_payload_bytes(),
                payload.len()
            )));
        }
        let start = self.first_slot(block)?;
        let (_, kv_heads, head_dim) = self.slot_shape();
        let shape = [self.block_size(), kv_heads, head_dim];
        let device = self.layer(0).k.device().clone();
        let slots: Vec<u32> = (start..start + self.block_size())
            .map(|s| s as u32)
            .collect();
        let meta = Tensor::from_vec(slots, self.block_size(), &device)?;
        let part = payload.len() / (2 * self.num_layers());
        for (index, pair) in payload.chunks_exact(2 * part).enumerate() {
            let layer = self.layer(index);
            for (cache, bytes) in [(&layer.k, &pair[..part]), (&layer.v, &pair[part..])] {
                let rows = Tensor::from_raw_buffer(bytes, self.dtype(), &shape, &device)?;
                WriteKv::apply(cache, &rows, &meta, 0..self.block_size())?;
            }
        }
        Ok(())
    }

    fn first_slot(&self, block: u32) -> Result<usize> {
        let block = block as usize;
        if block >= self.num_blocks() {
            return Err(Error::Internal(format!(
                "KV block {block} outside the pool of {}",
                self.num_blocks()
            )));
        }
        Ok(block * self.block_size())
    }
}

/// A contiguous tensor's elements as bytes (on the host).
fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let flat = t.flatten_all()?;
    Ok(match flat.dtype() {
        DType::F32 => element_bytes(flat.to_vec1::<f32>()?),
        DType::F16 => element_bytes(flat.to_vec1::<half::f16>()?),
        DType::BF16 => element_bytes(flat.to_vec1::<half::bf16>()?),
        DType::F8E4M3 => element_bytes(flat.to_vec1::<float8::F8E4M3>()?),
        other => {
            return Err(Error::Internal(format!(
                "no byte form for a {other:?} KV cache"
            )));
        }
    })
}

fn element_bytes<T: WithDType>(values: Vec<T>) -> Vec<u8> {
    let len = std::mem::size_of_val(values.as_slice());
    // SAFETY: the cache's element types are plain numbers without padding, so their memory is
    // `len` initialised bytes.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), len) }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::config::Qwen3Config;
    use candle_core::Device;

    fn config() -> Qwen3Config {
        let json = serde_json::json!({
            "vocab_size": 16, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 4, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "tie_word_embeddings": true
        });
        Qwen3Config::from_json(&json.to_string()).unwrap()
    }

    #[test]
    fn a_block_round_trips_in_every_cache_dtype() {
        for dtype in [DType::F32, DType::F16, DType::BF16, DType::F8E4M3] {
            let cache = KvCache::new(&config(), 4, 2, dtype, &Device::Cpu).unwrap();
            let bytes = cache.block_payload_bytes();
            assert_eq!(bytes, 2 * 2 * 2 * 4 * dtype.size_in_bytes());
            // Values every dtype holds exactly.
            let values: Vec<f32> = (0..bytes / dtype.size_in_bytes())
                .map(|i| i as f32 * 0.5 - 3.0)
                .collect();
            let payload = tensor_bytes(
                &Tensor::new(values, &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            cache.write_block(2, &payload).unwrap();
            assert_eq!(cache.read_block(2).unwrap(), payload, "{dtype:?}");
            // The neighbours are untouched.
            assert!(cache.read_block(1).unwrap().iter().all(|&b| b == 0));
            assert!(cache.read_block(3).unwrap().iter().all(|&b| b == 0));
            assert!(cache.write_block(4, &payload).is_err());
            assert!(cache.write_block(0, &payload[1..]).is_err());
        }
    }
}
