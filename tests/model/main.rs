//! Integration tests: the model: parity with transformers, GGUF and FP8 weights, checkpoint
//! loading, device selection, the CUDA twins.
//!
//! One test binary per subject: each binary links the whole library, and on a small machine
//! linking, not compiling, is most of `cargo test`'s time.

#[path = "../common/mod.rs"]
mod common;

mod cuda_twins;
mod device;
mod eagle3;
mod fp8;
mod gguf;
mod kv_dtype;
mod loader;
mod model_parity;
mod moe;
