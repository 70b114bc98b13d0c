//! Qwen3 on candle: checkpoint discovery, weights, config, the batched varlen forward and its
//! paged KV cache.

pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod cpu_linear;
pub mod embedded;
pub mod fp8;
pub mod gguf;
mod huge_pages;
pub mod kv_cache;
pub mod layers;
pub mod loader;
pub mod quantization;
pub mod quantized;
pub mod qwen3;
pub mod source;
pub mod swiglu;
pub mod synthetic;
pub mod weights;

pub use crate::batch::{BatchInput, SequenceChunk};
pub use attention::AttentionBackend;
pub use config::Qwen3Config;
pub use kv_cache::KvCache;
pub use loader::{LoadedModel, load_model, load_source};
pub use quantization::Quantization;
pub use qwen3::Qwen3Model;
pub use source::ModelSource;
