//! Attention over the paged KV cache for a varlen batch. Backends share one contract:
//! write this step's K/V into their slots, then attend every query token to its sequence's
//! cached context (causal), returning `[num_tokens, num_heads * head_dim]`.
//!
//! - `generic`: device-generic candle ops (gather, masked matmul, softmax in f32), cut into
//!   problems whose memory is bounded per tile, not by the sequences in a step. Runs anywhere;
//!   the CPU tests exercise exactly what runs on CUDA.
//! - `cpu`: paged attention reading the block tables directly (no gather copies), multithreaded.
//! - `cuda`: tealight's own CUDA kernels (`crate::kernels`); opt-in until proven on a GPU.

mod cache_op;
pub mod cpu;
pub mod cuda;
pub mod generic;
mod key_block;
mod prefill;
mod vector;

use super::kv_cache::LayerKv;
use crate::batch::BatchInput;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AttentionBackend {
    /// The fastest backend known correct on the device. CPU: `cpu`. CUDA: `generic`, built only
    /// from candle's stock kernels and cuBLAS, which have run on GPUs elsewhere; the own `cuda`
    /// kernels have not run on a GPU yet, so they stay opt-in until scripts/gpu/first-contact.sh
    /// has shown them equal to their CPU twins and to transformers there.
    #[default]
    Auto,
    /// Device-generic candle ops: gather + masked softmax.
    Generic,
    /// Paged attention on the CPU over block tables.
    Cpu,
    /// Own CUDA kernels: paged decode, tensor-core varlen prefill, KV write by slot.
    Cuda,
}

impl AttentionBackend {
    /// Resolves `Auto` for a device and rejects combinations that cannot run.
    pub fn resolve(self, device: &Device) -> Result<Self> {
        match (self, device) {
            (AttentionBackend::Auto, Device::Cpu) => Ok(AttentionBackend::Cpu),
            (AttentionBackend::Auto, _) => Ok(AttentionBackend::Generic),
            (AttentionBackend::Cpu, d) if !d.is_cpu() => Err(Error::Device(
                "the `cpu` attention backend runs only on the CPU device".into(),
            )),
            (AttentionBackend::Cuda, d) if !d.is_cuda() => Err(Error::Device(
                "the `cuda` attention backend runs only on a CUDA device".into(),
            )),
            (backend, _) => Ok(backend),
        }
    }
}

/// The permutation that puts rows produced in `produced` order (each the token row it holds)
/// back into token order; `None` when they already are.
fn token_order(produced: &[u32], device: &Device) -> Result<Option<Tensor>> {
    if produced.iter().enumerate().all(|(i, &r)| r as usize == i) {
        return Ok(None);
    }
    let mut inverse = vec![0u32; produced.len()];
    for (i, &row) in produced.iter().enumerate() {
        inverse[row as usize] = i as u32;
    }
    Ok(Some(Tensor::new(inverse, device)?))
}

/// The outputs of a step's pieces (decodes, tiles, problems), concatenated and put back into
/// token order by [`token_order`]'s permutation.
fn in_token_order(mut pieces: Vec<Tensor>, order: Option<&Tensor>) -> Result<Tensor> {
    let out = if pieces.len() == 1 {
        pieces.remove(0)
    } else {
        Tensor::cat(&pieces, 0)?
    };
    Ok(match order {
        Some(order) => out.index_select(order, 0)?,
        None => out,
    })
}

/// Per-step attention inputs, built once and shared by every layer.
pub enum AttentionMetadata {
    Generic(generic::GenericMetadata),
    Cpu(cpu::CpuMetadata),
    Cuda(cuda::CudaMetadata),
}

impl AttentionMetadata {
    pub fn new(
        backend: AttentionBackend,
        batch: &BatchInput,
        block_size: usize,
        kv_shape: (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        Ok(match backend {
            AttentionBackend::Generic | AttentionBackend::Auto => AttentionMetadata::Generic(
                generic::GenericMetadata::new(batch, block_size, kv_shape, device)?,
            ),
            AttentionBackend::Cpu => {
                AttentionMetadata::Cpu(cpu::CpuMetadata::new(batch, block_size)?)
            }
            AttentionBackend::Cuda => cuda::metadata(batch, block_size, kv_shape, device)?,
        })
    }

    /// Writes `k`, `v` (`[T, kv_heads, head_dim]`) into the cache, then attends `q`
    /// (`[T, heads, head_dim]`). Returns `[T, heads * head_dim]`.
    pub fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &LayerKv,
        scale: f64,
    ) -> Result<Tensor> {
        match self {
            AttentionMetadata::Generic(m) => m.forward(q, k, v, cache, scale),
            AttentionMetadata::Cpu(m) => m.forward(q, k, v, cache, scale),
            AttentionMetadata::Cuda(m) => m.forward(q, k, v, cache, scale),
        }
    }
}
