//! Attention over the paged KV cache for a varlen batch. Backends share one contract:
//! write this step's K/V into their slots, then attend every query token to its sequence's
//! cached context (causal), returning `[num_tokens, num_heads * head_dim]`.
//!
//! - `generic`: device-generic candle ops (gather, masked matmul, softmax in f32). Runs anywhere;
//!   the CPU tests exercise exactly what runs on CUDA.
//! - `cpu`: paged attention reading the block tables directly (no gather copies), multithreaded.
//! - `cuda`: tealight's own CUDA kernels (`crate::kernels`); opt-in until proven on a GPU.

pub mod cpu;
pub mod cuda;
pub mod generic;

use super::kv_cache::LayerKv;
use crate::batch::BatchInput;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AttentionBackend {
    /// The fastest correct backend for the device (CPU: `cpu`; CUDA: `generic` until the GPU
    /// check script has proven a faster one equal).
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
