//! Weights and where they come from: checkpoint discovery (Hugging Face dirs and cache, the
//! embedded model, synthetic checkpoints), the model's config, and the weight formats —
//! safetensors (bf16/f16/f32), Qwen's block-wise FP8, GGUF and its quantized types — behind one
//! named-tensor store ([`store::WeightStore`]).

pub mod checkpoint;
pub mod config;
pub mod embedded;
pub mod fp8;
pub mod gguf;
pub mod identity;
pub mod pytorch_bin;
pub mod quantization;
pub mod quantized;
pub mod sentence_transformers;
pub mod source;
pub mod store;
pub mod synthetic;

pub use config::Qwen3Config;
pub use quantization::Quantization;
pub use source::ModelSource;
