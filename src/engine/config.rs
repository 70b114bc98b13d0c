//! Engine limits.

use super::kv_budget::blocks_in;
use crate::model::AttentionBackend;
use crate::sampling::Backend as SamplerBackend;
use crate::weights::Qwen3Config;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Prompt + completion limit per sequence.
    pub max_model_len: usize,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    /// Requests allowed to wait for admission before `submit` reports overload.
    pub max_waiting: usize,
    pub block_size: usize,
    pub num_blocks: usize,
    pub enable_prefix_caching: bool,
    pub attention_backend: AttentionBackend,
    /// Where truncation and sampling run.
    pub sampler: SamplerBackend,
    /// Events a request's stream buffers for a client that is not reading; when full, the
    /// request is parked until the client reads.
    pub stream_buffer_events: usize,
    /// How long a request may stay parked before it is aborted (`None`: never).
    pub stream_stall_timeout: Option<Duration>,
    /// Whether usage reports the prompt tokens the prefix cache served.
    pub report_cached_tokens: bool,
    /// The KV cache's element type (`--kv-cache-dtype`); `None`: the model's.
    pub kv_cache_dtype: Option<candle_core::DType>,
    /// The host and disk tiers under the pool (none by default).
    pub kv_offload: super::kv_offload::KvOffloadConfig,
    /// The KV event stream (`--kv-events-config`; none by default).
    pub kv_events: Option<super::kv_events::KvEventsConfig>,
    /// Speculative decoding (`--speculative-config`; none by default).
    pub speculative: Option<super::speculative::config::SpeculativeConfig>,
}

/// Default of `--stream-buffer-events`.
pub const DEFAULT_STREAM_BUFFER_EVENTS: usize = 64;
/// Default of `--stream-stall-timeout`, in seconds.
pub const DEFAULT_STREAM_STALL_TIMEOUT_S: u64 = 60;

impl EngineConfig {
    /// Sensible defaults for a model, with the KV pool sized from `kv_bytes`.
    pub fn for_model(cfg: &Qwen3Config, kv_bytes: usize, kv_dtype_size: usize) -> Self {
        let block_size = 16;
        let num_blocks = blocks_in(kv_bytes, cfg, kv_dtype_size, block_size);
        Self {
            max_model_len: cfg.max_position_embeddings,
            max_num_seqs: 256,
            max_num_batched_tokens: 2048,
            max_waiting: 1024,
            block_size,
            num_blocks,
            enable_prefix_caching: true,
            attention_backend: AttentionBackend::Auto,
            sampler: SamplerBackend::Auto,
            stream_buffer_events: DEFAULT_STREAM_BUFFER_EVENTS,
            stream_stall_timeout: Some(Duration::from_secs(DEFAULT_STREAM_STALL_TIMEOUT_S)),
            report_cached_tokens: true,
            kv_cache_dtype: None,
            kv_offload: Default::default(),
            kv_events: None,
            speculative: None,
        }
    }

    pub fn pool_tokens(&self) -> usize {
        self.num_blocks * self.block_size
    }

    /// Rejects settings under which an accepted request could never finish.
    pub fn validate(&self, model_limit: usize) -> Result<(), String> {
        if self.max_model_len == 0 || self.max_model_len > model_limit {
            return Err(format!(
                "--max-model-len {} must be between 1 and the model's max_position_embeddings ({model_limit})",
                self.max_model_len
            ));
        }
        if self.max_model_len > self.pool_tokens() {
            return Err(format!(
                "--max-model-len {} is larger than the KV cache can hold ({} blocks = {} tokens); \
                 lower --max-model-len or give the cache more memory",
                self.max_model_len,
                self.num_blocks,
                self.pool_tokens()
            ));
        }
        if self.stream_buffer_events < super::request_state::EVENTS_PER_STEP {
            return Err(format!(
                "--stream-buffer-events must be at least {}",
                super::request_state::EVENTS_PER_STEP
            ));
        }
        if self.max_num_seqs == 0 || self.max_num_batched_tokens == 0 || self.block_size == 0 {
            return Err(
                "--max-num-seqs, --max-num-batched-tokens and the block size must be positive"
                    .into(),
            );
        }
        Ok(())
    }
}
