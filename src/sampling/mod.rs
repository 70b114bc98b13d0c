//! Sampling: from a batch of logits to one token per sequence.
//!
//! - [`generation_config`]: the model's defaults (`generation_config.json`).
//! - [`params`]: a request's parameters over those defaults, validated like vLLM.
//! - [`allowed`]: allowed-token masks (grammar constraints), applied before everything else.
//! - [`sequence`]: per-sequence state (parameters, own seeded generator, token history).
//! - [`penalties`]: logit bias and repetition / frequency / presence penalties.
//! - [`greedy`]: argmax with lowest-id ties, on the device.
//! - [`selection`]: the truncation and sampling semantics, shared by
//!   [`host`] (exact, on host rows) and [`device`] (rows narrowed to their top candidates on
//!   the device, drawn on the host with the host's code).
//! - [`logprobs`]: raw logprobs and top alternatives.
//! - [`sampler`]: the batched entry point tying these together.
//!
//! Choices that differ between servers, and the one made here (vLLM's, unless noted):
//! - processing order: allowed-token mask → logit bias → repetition / frequency / presence
//!   penalties → (greedy: argmax) → temperature → min-p → top-k → top-p on the renormalised survivors → draw;
//! - ties at a top-k / top-p / min-p boundary are kept whole; draws order tokens by
//!   descending probability, ties by ascending id;
//! - logprobs are the log-softmax of the raw model logits (vLLM's default `raw_logprobs`),
//!   after the allowed-token mask when a grammar constrains the sequence (vLLM masks the logits
//!   before its sampler sees them);
//! - temperature below 1e-5 is greedy, between 1e-5 and 1e-2 it is raised to 1e-2;
//! - every sequence owns its generator and draws one uniform per sampled token, so seeded
//!   output does not depend on the batch it ran in.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use tealight::sampling::{
//!     GenerationDefaults, Sampler, SamplingOverrides, SamplingParams, SequenceSampler,
//! };
//!
//! let defaults = GenerationDefaults::from_json_str(
//!     r#"{"temperature": 0.6, "top_k": 20, "top_p": 0.95, "eos_token_id": [2, 3]}"#,
//!     std::path::Path::new("generation_config.json"),
//! )?;
//! let request = SamplingOverrides { seed: Some(42), ..Default::default() };
//! let params = SamplingParams::resolve(&defaults, &request, 8)?;
//! let mut seq = SequenceSampler::new(params, &[1, 2, 3]);
//! let logits = Tensor::new(&[[0.0f32, 1.0, 5.0, 0.5, -1.0, 0.0, 0.0, 2.0]], &Device::Cpu)?;
//! let tokens = Sampler::new().sample(&logits, &mut [&mut seq])?;
//! assert!(tokens[0].id < 8);
//! # Ok::<(), tealight::Error>(())
//! ```

pub mod allowed;
pub mod device;
pub mod generation_config;
pub mod greedy;
pub mod host;
pub mod logprobs;
pub mod params;
pub mod penalties;
pub mod sampler;
pub mod selection;
pub mod sequence_sampler;

pub use allowed::TokenMask;
pub use device::{DeviceWork, select_device, select_device_counted};
pub use generation_config::GenerationDefaults;
pub use greedy::{argmax_lowest_id, greedy_ids};
pub use host::select_host;
pub use logprobs::{LogprobRequest, RowLogprobs, logprobs_device, logprobs_host};
pub use params::{MAX_LOGPROBS, SamplingOverrides, SamplingParams};
pub use penalties::process_logits;
pub use sampler::{Backend, SampledToken, Sampler};
pub use selection::RowSpec;
pub use sequence_sampler::SequenceSampler;
