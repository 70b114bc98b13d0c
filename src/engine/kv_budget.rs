//! How big the KV pool is: the one place that turns a memory budget into blocks.
//!
//! The budget is `--kv-cache-memory` when given; otherwise on the CPU a few full contexts (at
//! most [`DEFAULT_CPU_KV_BYTES`]), and on a GPU what `--gpu-memory-utilization` of the card
//! leaves once the weights are resident. The device's figures come in as plain numbers so the
//! arithmetic is tested without a GPU.

use crate::device::DeviceMemory;
use crate::error::{Error, Result};
use crate::model::Qwen3Config;

/// Default CPU KV budget when `--kv-cache-memory` is not given: at most this much...
pub const DEFAULT_CPU_KV_BYTES: usize = 4 << 30;
/// ...and no more than this many full-length contexts (small models need far less than 4 GiB).
pub const DEFAULT_CPU_KV_CONTEXTS: usize = 4;

/// Where the KV budget comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvBudget {
    /// An explicit size (`--kv-cache-memory`).
    Bytes(usize),
    /// The CPU default (see [`default_cpu_kv_bytes`]).
    CpuDefault,
    /// This fraction of the GPU's memory, minus what is in use (`--gpu-memory-utilization`).
    GpuFraction(f64),
}

/// Bytes the KV pool may take. `memory` is asked for only by [`KvBudget::GpuFraction`].
pub fn kv_bytes(
    budget: KvBudget,
    cfg: &Qwen3Config,
    dtype_size: usize,
    memory: impl FnOnce() -> Result<DeviceMemory>,
) -> Result<usize> {
    match budget {
        KvBudget::Bytes(bytes) => Ok(bytes),
        KvBudget::CpuDefault => Ok(default_cpu_kv_bytes(cfg, dtype_size)),
        KvBudget::GpuFraction(fraction) => gpu_kv_bytes(fraction, memory()?),
    }
}

/// The CPU KV budget for a model when none is given.
pub fn default_cpu_kv_bytes(cfg: &Qwen3Config, dtype_size: usize) -> usize {
    let full_contexts =
        cfg.kv_bytes_per_token(dtype_size) * cfg.max_position_embeddings * DEFAULT_CPU_KV_CONTEXTS;
    full_contexts.min(DEFAULT_CPU_KV_BYTES)
}

/// `fraction` of the card, minus what is already in use (the weights, loaded before this).
pub fn gpu_kv_bytes(fraction: f64, memory: DeviceMemory) -> Result<usize> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(Error::invalid_request(
            "--gpu-memory-utilization must be in (0, 1]",
        ));
    }
    let DeviceMemory { free, total } = memory;
    let used = total.saturating_sub(free);
    let budget = (total as f64 * fraction) as usize;
    let kv = budget.saturating_sub(used);
    if kv == 0 {
        return Err(Error::Device(format!(
            "no GPU memory left for the KV cache: {used} of {total} bytes are in use and \
             --gpu-memory-utilization {fraction} allows {budget}; raise it or use a smaller model"
        )));
    }
    Ok(kv)
}

/// How many blocks of `block_size` tokens fit in `bytes` (at least one).
pub fn blocks_in(bytes: usize, cfg: &Qwen3Config, dtype_size: usize, block_size: usize) -> usize {
    let per_block = cfg.kv_bytes_per_token(dtype_size) * block_size.max(1);
    (bytes / per_block.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: usize = 1 << 30;

    fn tiny() -> Qwen3Config {
        Qwen3Config::from_json(
            r#"{"architectures":["Qwen3ForCausalLM"],"vocab_size":1000,"hidden_size":64,
            "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,
            "num_key_value_heads":2,"max_position_embeddings":512,"rms_norm_eps":1e-6}"#,
        )
        .unwrap()
    }

    #[test]
    fn gpu_budget_is_the_fraction_minus_what_is_in_use() {
        let memory = DeviceMemory {
            free: 72 * GIB,
            total: 80 * GIB,
        };
        // 0.9 × 80 GiB = 72 GiB, 8 GiB used by the weights → 64 GiB for the cache.
        assert_eq!(gpu_kv_bytes(0.9, memory).unwrap(), 64 * GIB);
        assert!(
            gpu_kv_bytes(0.1, memory).is_err(),
            "weights exceed the budget"
        );
        assert!(gpu_kv_bytes(0.0, memory).is_err());
        assert!(gpu_kv_bytes(1.5, memory).is_err());
    }

    #[test]
    fn explicit_bytes_never_ask_the_device() {
        let cfg = tiny();
        let bytes = kv_bytes(KvBudget::Bytes(1 << 20), &cfg, 4, || {
            panic!("the device was asked")
        });
        assert_eq!(bytes.unwrap(), 1 << 20);
    }

    #[test]
    fn blocks_round_down_but_never_to_zero() {
        let cfg = tiny();
        let per_token = cfg.kv_bytes_per_token(4);
        assert_eq!(blocks_in(per_token * 16 * 10 + 1, &cfg, 4, 16), 10);
        assert_eq!(blocks_in(1, &cfg, 4, 16), 1);
    }
}
