//! The serving engine: continuous batching over a paged KV cache with prefix caching.

pub mod block_manager;
pub mod metrics;
pub mod scheduler;
pub mod stop_strings;
