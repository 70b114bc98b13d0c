//! Sampling: from a batch of logits to one token per sequence.
//!
//! - [`generation_config`]: the model's defaults (`generation_config.json`).
//! - [`params`]: a request's parameters over those defaults, validated like vLLM.
//! - [`sequence`]: per-sequence state (parameters, own seeded generator, token history).
//! - [`penalties`]: logit bias and repetition / frequency / presence penalties.
//! - [`greedy`]: argmax with lowest-id ties, on the device.
//! - [`selection`]: the truncation and sampling semantics, shared by
//!   [`host`] (exact, on copied rows) and [`device`] (tensor ops only).
//! - [`logprobs`]: raw logprobs and top alternatives.
//! - [`sampler`]: the batched entry point tying these together.

pub mod device;
pub mod generation_config;
pub mod greedy;
pub mod host;
pub mod logprobs;
pub mod params;
pub mod penalties;
pub mod sampler;
pub mod selection;
pub mod sequence;

pub use device::select_device;
pub use generation_config::GenerationDefaults;
pub use greedy::{argmax_lowest_id, greedy_ids};
pub use host::select_host;
pub use logprobs::{LogprobRequest, RowLogprobs, logprobs_device, logprobs_host};
pub use params::{MAX_LOGPROBS, SamplingOverrides, SamplingParams};
pub use penalties::process_logits;
pub use sampler::{Backend, SampledToken, Sampler};
pub use selection::RowSpec;
pub use sequence::SequenceSampler;
