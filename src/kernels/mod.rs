//! tealight's own CUDA kernels, their launch wrappers, and their CPU twins.
//!
//! Each kernel is a candle op (`CustomOp3` / `InplaceOp3`) whose `cuda_fwd` launches PTX that
//! build.rs compiled from `kernels/*.cu`, and whose `cpu_fwd` is the twin: the same algorithm
//! (same work split, same partition/tile sizes, same roundings) over the same index arrays
//! ([`plan::AttentionPlan`]). The twins are what the tests here run; `tealight debug kernels` runs
//! both on a GPU machine and compares them (scripts/gpu/check.sh); kernels/emu/ runs the CUDA
//! sources on the CPU against the twins.
//!
//! | kernel (kernels/) | op | CPU twin |
//! | --- | --- | --- |
//! | `tl_write_kv_w{16,8,4,2}` (kv_cache.cu) | [`kv_write::WriteKv`] | `WriteKv::cpu_fwd` |
//! | `tl_paged_attention_{name}_d{D}` + `tl_paged_reduce_{name}` (attention.cu) | [`paged_attention::PagedAttention`] | `paged_attention::twin_paged` |
//! | `tl_prefill_attention_{name}_d{D}` (attention.cu) | [`paged_attention::PagedAttention`] | `paged_attention::twin_prefill` |
//!
//! `{name}` is [`kernel_name`]: the activations' dtype, then the KV cache's where it differs
//! (`bf16`, `bf16_kvfp8`).
//!
//! # Why own kernels, and not a crate
//! Evaluated against tealight's constraints (candle 0.11.1, a paged cache of 16-token blocks,
//! f32/f16/bf16, head_dim 128 and the test shapes 32/48, a CI budget of about 30 minutes on 2
//! cores, CUDA 13.0 pinned). Build times measured here with the pinned nvcc 13.0 for sm_90, the
//! crates' own nvcc flags, and the CUTLASS commits their build scripts pin:
//! - `candle-flash-attn` 0.11.1 (FlashAttention-2, CUTLASS): 53 translation units. One of them,
//!   `flash_fwd_hdim128_bf16_causal_sm80.cu`, took 3 min 34 s of CPU; its split-KV sibling 2 min
//!   42 s. At that rate the crate is roughly 2.5–3 CPU-hours — far over the CI budget on 2 cores (its
//!   build script also uses only half the cores). Its build script clones CUTLASS from GitHub at
//!   build time, which CI and these machines cannot reach. Functionally: its paged varlen path
//!   needs a block size that is a multiple of 32 (tealight uses 16), and it has no f32.
//! - `candle-flash-attn-v3` 0.11.1 (FlashAttention-3 for Hopper): 84 units, the same GitHub
//!   download, and its pinned CUTLASS does not compile against CUDA 13.0 headers
//!   (`PFN_cuTensorMapEncodeTiled` is undefined in `cutlass/cuda_host_adapter.hpp`); bf16/f16/fp8
//!   only.
//! - `mistralrs-paged-attn` 0.8.1 (vLLM's paged_attention + reshape_and_cache, MIT): depends on
//!   candle-core 0.10.2; its ops take 0.10 tensors, so using it means moving the whole crate to
//!   an older candle, or passing raw device pointers between two candle copies with two streams.
//!
//! Own kernels compile to PTX in seconds (build.rs, only with `--features cuda`), cover every
//! dtype and the test head dims, share their index math with the CPU code, and are small enough
//! to read. Their cost is that they are unproven until a GPU runs them. Two things stand in until
//! then: the CPU twins (tests/model/cuda_twins.rs) and the emulator, which runs the `.cu` sources
//! themselves on the CPU against the twins (kernels/emu/). The `cuda` attention backend stays
//! opt-in (`--attention-backend cuda`): `auto` keeps `generic` on CUDA until
//! scripts/gpu/check.sh has passed on a GPU.

/// Matches CPU storages of q, k and v against a list of (activations, cache) dtype pairs (k and
/// v share the cache's): for the pair they hold, `$body` runs over the three slices and its
/// output becomes storage of the activations' dtype; any other combination gives `$otherwise`.
/// The attention ops' CPU sides dispatch to their generic bodies through it.
macro_rules! match_dtype_pair {
    (
        ($q:expr, $k:expr, $v:expr),
        [$(($act:ident, $kv:ident)),* $(,)?],
        |$qs:ident, $ks:ident, $vs:ident| $body:expr,
        $otherwise:expr $(,)?
    ) => {
        match ($q, $k, $v) {
            $((
                candle_core::CpuStorage::$act($qs),
                candle_core::CpuStorage::$kv($ks),
                candle_core::CpuStorage::$kv($vs),
            ) => candle_core::CpuStorage::$act($body),)*
            _ => $otherwise,
        }
    };
}
pub(crate) use match_dtype_pair;

pub mod check;
pub mod cpu_linear;
pub mod element;
pub mod huge_pages;
pub mod kv_write;
pub mod paged_attention;
pub mod plan;

pub use element::{Element, Widen};

#[cfg(feature = "cuda")]
mod cuda;

use candle_core::DType;

/// Head dims the paged kernel is built for (kernels/attention.cu instantiates the same list).
pub const PAGED_HEAD_DIMS: [usize; 5] = [32, 48, 64, 128, 256];
/// Head dims the tensor-core prefill kernel is built for (f16 and bf16 only).
pub const PREFILL_HEAD_DIMS: [usize; 4] = [32, 48, 64, 128];

/// Whether the `cuda` attention backend has kernels for activations of `dtype` over a cache of
/// `cache` with this head_dim.
pub fn attention_supported(dtype: DType, cache: DType, head_dim: usize) -> bool {
    kernel_name(dtype, cache).is_some() && PAGED_HEAD_DIMS.contains(&head_dim)
}

/// Whether prefill chunks can run on the tensor-core kernel (else they use the paged kernel):
/// 16-bit activations over any cache the kernels read.
pub fn prefill_supported(dtype: DType, cache: DType, head_dim: usize) -> bool {
    matches!(dtype, DType::F16 | DType::BF16)
        && kernel_name(dtype, cache).is_some()
        && PREFILL_HEAD_DIMS.contains(&head_dim)
}

/// The type the tensor cores read in the prefill kernel (`MmaOf` in kernels/attention.cu): the
/// cache's when it is 16-bit (its values reach the mma unrounded), else the activations' (fp8
/// widens to either exactly).
pub fn mma_dtype(dtype: DType, cache: DType) -> DType {
    match cache {
        DType::F16 | DType::BF16 => cache,
        _ => dtype,
    }
}

/// The kernels' name suffix for activations of `dtype` over a cache of `cache`: the activations'
/// dtype, then `_kv` and the cache's where it differs (the units build.rs compiles).
pub fn kernel_name(dtype: DType, cache: DType) -> Option<String> {
    let activations = match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => return None,
    };
    if cache == dtype {
        return Some(activations.to_owned());
    }
    // A narrower cache, or the other 16-bit type.
    let kv = match cache {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F8E4M3 => "fp8",
        _ => return None,
    };
    Some(format!("{activations}_kv{kv}"))
}
