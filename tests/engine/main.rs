//! Integration tests: the engine and sampling: scheduling, metrics, sampling and its batch
//! invariance, guided decoding and its bounds, pooling requests.
//!
//! One test binary per subject: each binary links the whole library, and on a small machine
//! linking, not compiling, is most of `cargo test`'s time.

#[path = "../common/mod.rs"]
mod common;

mod engine;
mod engine_metrics;
mod guided;
mod guided_bounds;
mod kv_events;
mod kv_offload;
mod pooling;
mod sampling;
mod sampling_batch_invariance;
mod speculative;
