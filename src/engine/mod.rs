//! The serving engine: continuous batching over a paged KV cache with prefix caching.
//!
//! `handle` (submit → event stream) is the only door; `core` runs steps on the engine thread;
//! `scheduler` + `block_manager` decide what runs and where its KV lives; `sequence` turns
//! sampled tokens into text, stop decisions and events.

pub mod block_digest;
pub mod block_manager;
pub mod checked;
pub mod command;
pub mod config;
pub mod core;
pub mod emit;
pub mod handle;
pub mod info;
pub mod kv_budget;
pub mod kv_events;
pub mod kv_offload;
pub mod metrics;
pub mod pool_events;
pub mod request;
pub mod request_state;
pub mod rules;
pub mod scheduler;
pub mod speculative;
pub mod startup;
pub mod stop_strings;
pub mod wake;
pub mod worker;

pub use crate::guided::GuidedDecoding;
pub use checked::CheckedRequest;
pub use config::EngineConfig;
pub use handle::{EngineHandle, EventStream};
pub use info::EngineInfo;
pub use request::{
    Event, FinishReason, GenerationRequest, Pooling, StopReason, TokenLogprob, Usage,
};
