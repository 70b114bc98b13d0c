//! Qwen3 on candle: the batched varlen forward, its layers and attention backends, and its paged
//! KV cache. Weights come from [`crate::weights`]; the kernels it runs from [`crate::kernels`].

pub mod attention;
pub mod eagle3;
pub mod kv_block_io;
pub mod kv_cache;
pub mod layers;
pub mod loader;
pub mod mlp;
pub mod moe;
pub mod qwen3;
pub mod routing;
pub mod swiglu;

pub use crate::batch::{BatchInput, SequenceChunk};
pub use attention::AttentionBackend;
pub use kv_cache::{KvCache, KvScales};
pub use loader::{LoadedModel, load_model, load_source};
pub use qwen3::{Qwen3Model, StepOutput};
