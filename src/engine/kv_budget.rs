//! How big the KV pool is: the one place that turns a memory budget into blocks.
//!
//! The budget is `--kv-cache-memory` when given; otherwise on the CPU a few full contexts (at
//! most [`DEFAULT_CPU_KV_BYTES`]), and on a GPU what `--gpu-memory-utilization` of the card
//! leaves once the weights are resident, the largest step's activations are set aside (measured
//! by a profiling step, [`super::startup`]) and [`GPU_RESERVE_BYTES`] are kept back. The
//! device's figures come in as plain numbers so the arithmetic is tested without a GPU.

use crate::device::DeviceMemory;
use crate::error::{Error, Result};
use crate::weights::Qwen3Config;

/// Default CPU KV budget when `--kv-cache-memory` is not given: at most this much...
pub const DEFAULT_CPU_KV_BYTES: usize = 4 << 30;
/// ...and no more than this many full-length contexts (small models need far less than 4 GiB).
pub const DEFAULT_CPU_KV_CONTEXTS: usize = 4;
/// Memory the GPU budget keeps free beyond the measured activation peak: cuBLAS workspaces and
/// kernel modules created after the profiling step, and allocator fragmentation.
pub const GPU_RESERVE_BYTES: usize = 512 << 20;

/// Where the KV budget comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvBudget {
    /// An explicit size (`--kv-cache-memory`).
    Bytes(usize),
    /// The CPU default (see [`default_cpu_kv_bytes`]).
    CpuDefault,
    /// This fraction of the GPU's memory (`--gpu-memory-utilization`), see [`gpu_breakdown`].
    GpuFraction(f64),
}

/// What the GPU's memory goes to, for the start-up log and the KV pool size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuBreakdown {
    pub total: usize,
    /// The budget: `--gpu-memory-utilization` of `total`.
    pub budget: usize,
    /// In use before the profiling step: CUDA context, weights.
    pub in_use: usize,
    /// The largest step's activations and sampler temporaries.
    pub activation_peak: usize,
    pub reserve: usize,
    /// What is left for the KV cache.
    pub kv: usize,
}

/// Bytes the KV pool may take when the budget is not a GPU fraction (that one needs a
/// profiling step first: see [`gpu_breakdown`]).
pub fn kv_bytes(budget: KvBudget, cfg: &Qwen3Config, dtype_size: usize) -> Option<usize> {
    match budget {
        KvBudget::Bytes(bytes) => Some(bytes),
        KvBudget::CpuDefault => Some(default_cpu_kv_bytes(cfg, dtype_size)),
        KvBudget::GpuFraction(_) => None,
    }
}

/// The CPU KV budget for a model when none is given.
pub fn default_cpu_kv_bytes(cfg: &Qwen3Config, dtype_size: usize) -> usize {
    let full_contexts =
        cfg.kv_bytes_per_token(dtype_size) * cfg.max_position_embeddings * DEFAULT_CPU_KV_CONTEXTS;
    full_contexts.min(DEFAULT_CPU_KV_BYTES)
}

/// Checks `--gpu-memory-utilization` before anything is loaded.
pub fn check_fraction(fraction: f64) -> Result<()> {
    if fraction > 0.0 && fraction <= 1.0 {
        Ok(())
    } else {
        Err(Error::config("--gpu-memory-utilization must be in (0, 1]"))
    }
}

/// `fraction` of the card, minus what is in use once the weights are loaded (`memory`, read
/// before the profiling step), the profiled activation peak and [`GPU_RESERVE_BYTES`].
pub fn gpu_breakdown(
    fraction: f64,
    memory: DeviceMemory,
    activation_peak: usize,
) -> Result<GpuBreakdown> {
    check_fraction(fraction)?;
    let DeviceMemory { free, total } = memory;
    let in_use = total.saturating_sub(free);
    let budget = (total as f64 * fraction) as usize;
    let kv = budget
        .saturating_sub(in_use)
        .saturating_sub(activation_peak)
        .saturating_sub(GPU_RESERVE_BYTES);
    if kv == 0 {
        return Err(Error::Device(format!(
            "no GPU memory left for the KV cache: --gpu-memory-utilization {fraction} allows \
             {budget} of {total} bytes, {in_use} are in use (weights), {activation_peak} are \
             needed for the largest step's activations and {GPU_RESERVE_BYTES} are kept in \
             reserve; raise --gpu-memory-utilization, lower --max-num-batched-tokens or \
             --max-num-seqs, or use a smaller model"
        )));
    }
    Ok(GpuBreakdown {
        total,
        budget,
        in_use,
        activation_peak,
        reserve: GPU_RESERVE_BYTES,
        kv,
    })
}

/// The most elements one layer's K (or V) tensor may hold. candle's `index_select` and
/// `scatter_set` kernels compute element offsets in 32 bits: a larger tensor would gather
/// wrong rows silently (the pool hands out its highest block ids first).
pub const MAX_LAYER_KV_ELEMENTS: usize = u32::MAX as usize;

/// The most blocks a pool may have so that every per-layer K/V tensor (`[blocks × block_size,
/// kv_heads, head_dim]`) stays within [`MAX_LAYER_KV_ELEMENTS`].
pub fn max_blocks_for_offsets(cfg: &Qwen3Config, block_size: usize) -> usize {
    let per_block = block_size.max(1) * cfg.num_key_value_heads * cfg.head_dim;
    (MAX_LAYER_KV_ELEMENTS / per_block.max(1)).max(1)
}

/// How many blocks of `block_size` tokens fit in `bytes` (at least one, and never more than
/// [`max_blocks_for_offsets`] allows).
pub fn blocks_in(bytes: usize, cfg: &Qwen3Config, dtype_size: usize, block_size: usize) -> usize {
    let per_block = cfg.kv_bytes_per_token(dtype_size) * block_size.max(1);
    let fit = (bytes / per_block.max(1)).max(1);
    let cap = max_blocks_for_offsets(cfg, block_size);
    if fit > cap {
        tracing::info!(
            "KV pool capped at {cap} blocks (the budget holds {fit}): one layer's K/V tensor must \
             stay below 2^32 elements for 32-bit gather offsets"
        );
    }
    fit.min(cap)
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
    fn gpu_budget_is_the_fraction_minus_weights_activations_and_reserve() {
        let memory = DeviceMemory {
            free: 72 * GIB,
            total: 80 * GIB,
        };
        // 0.9 × 80 GiB = 72 GiB; 8 GiB of weights, a 3 GiB activation peak and the reserve.
        let b = gpu_breakdown(0.9, memory, 3 * GIB).unwrap();
        assert_eq!(b.budget, 72 * GIB);
        assert_eq!(b.in_use, 8 * GIB);
        assert_eq!(b.kv, 72 * GIB - 8 * GIB - 3 * GIB - GPU_RESERVE_BYTES);
        // An H200 running Qwen3-4B in bf16 at the defaults.
        let h200 = DeviceMemory {
            free: 131 * GIB,
            total: 139 * GIB,
        };
        let b = gpu_breakdown(0.9, h200, 2 * GIB).unwrap();
        assert!(b.kv > 110 * GIB && b.kv < 117 * GIB, "{b:?}");
        // Nothing left: an error naming what to change, not a zero-block pool.
        let err = gpu_breakdown(0.1, memory, 0).unwrap_err().to_string();
        assert!(err.contains("--gpu-memory-utilization"), "{err}");
        let err = gpu_breakdown(0.9, memory, 64 * GIB)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--max-num-batched-tokens"), "{err}");
        assert!(gpu_breakdown(0.0, memory, 0).is_err());
        assert!(gpu_breakdown(1.5, memory, 0).is_err());
    }

    #[test]
    fn explicit_and_cpu_budgets_need_no_profile() {
        let cfg = tiny();
        assert_eq!(kv_bytes(KvBudget::Bytes(1 << 20), &cfg, 4), Some(1 << 20));
        assert_eq!(
            kv_bytes(KvBudget::CpuDefault, &cfg, 4),
            Some(default_cpu_kv_bytes(&cfg, 4))
        );
        assert_eq!(kv_bytes(KvBudget::GpuFraction(0.9), &cfg, 4), None);
    }

    #[test]
    fn blocks_round_down_but_never_to_zero() {
        let cfg = tiny();
        let per_token = cfg.kv_bytes_per_token(4);
        assert_eq!(blocks_in(per_token * 16 * 10 + 1, &cfg, 4, 16), 10);
        assert_eq!(blocks_in(1, &cfg, 4, 16), 1);
    }

    /// The embedded tiny model on an 80 GB card would get ~8.8 G elements a layer: the pool is
    /// cut so that every per-layer K/V tensor stays addressable with 32-bit offsets, while real
    /// models on real cards are untouched.
    #[test]
    fn the_pool_keeps_each_layer_below_32_bit_offsets() {
        let cfg = tiny(); // 2 KV heads
        let per_layer = |blocks: usize, block: usize| blocks * block * 2 * cfg.head_dim;
        for block in [1, 16, 32, 128] {
            let blocks = blocks_in(72 * GIB * 1000, &cfg, 2, block);
            assert_eq!(blocks, max_blocks_for_offsets(&cfg, block));
            assert!(per_layer(blocks, block) <= MAX_LAYER_KV_ELEMENTS, "{block}");
            // The cap is tight: one block more would pass the limit.
            assert!(
                per_layer(blocks + 1, block) > MAX_LAYER_KV_ELEMENTS,
                "{block}"
            );
        }
        // Qwen3-4B (8 KV heads × 128) in bf16 on an H200: ~115 GiB of KV is ~780 k tokens, far
        // below the cap of ~4.2 M tokens.
        let qwen3_4b = Qwen3Config::from_json(
            r#"{"architectures":["Qwen3ForCausalLM"],"vocab_size":151936,"hidden_size":2560,
            "intermediate_size":9728,"num_hidden_layers":36,"num_attention_heads":32,
            "num_key_value_heads":8,"head_dim":128,"max_position_embeddings":40960,
            "rms_norm_eps":1e-6}"#,
        )
        .unwrap();
        let bytes = 115 * GIB;
        let uncapped = bytes / (qwen3_4b.kv_bytes_per_token(2) * 16);
        assert_eq!(blocks_in(bytes, &qwen3_4b, 2, 16), uncapped);
    }
}
