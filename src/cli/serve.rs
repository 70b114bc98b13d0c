//! `tealight serve`'s flags. They follow vLLM's names so existing command lines work unchanged;
//! [`crate::server`] turns them into a running server.

use crate::api::metrics_vllm::MetricsCompat;
use crate::device::DeviceChoice;
use crate::model::AttentionBackend;
use crate::model::loader::DtypeChoice;
use crate::weights::Quantization;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Checkpoint directory, Hugging Face repo id, or one GGUF file (default: the embedded
    /// tiny model).
    #[arg(long, value_name = "DIR|ORG/NAME|FILE.gguf")]
    pub model: Option<String>,

    /// Model name(s) clients send in `model`; the first is reported (default: --model).
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub served_model_name: Vec<String>,

    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,

    #[arg(long, default_value_t = 8000)]
    pub port: u16,

    /// Require `Authorization: Bearer <key>` (also from $TEALIGHT_API_KEY or $VLLM_API_KEY).
    #[arg(long, env = "TEALIGHT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,

    /// What the model is served for: generate, embed (`/v1/embeddings`), score (a reranker:
    /// `/v1/rerank`, `/v1/score`), or auto (embed when the checkpoint has sentence-transformers
    /// pooling files, as Qwen3-Embedding does; else generate).
    #[arg(long, value_enum, default_value = "auto")]
    pub task: TaskChoice,

    /// vLLM's spelling of `--task`: `pooling` serves embeddings, `generate` generation.
    #[arg(long, value_enum, value_name = "auto|generate|pooling")]
    pub runner: Option<RunnerChoice>,

    /// vLLM's `--convert embed`: read a causal LM as an embedding model.
    #[arg(long, value_enum, value_name = "auto|embed|none")]
    pub convert: Option<ConvertChoice>,

    /// vLLM's model-config overrides, as JSON. Read for one purpose: Qwen3-Reranker's
    /// `{"architectures": ["Qwen3ForSequenceClassification"], "classifier_from_token": ["no",
    /// "yes"], "is_original_qwen3_reranker": true}` serves the model as a reranker.
    #[arg(long, value_name = "JSON")]
    pub hf_overrides: Option<String>,

    /// Compute dtype: auto (f32 on CPU, bf16 on CUDA), float32, float16, bfloat16.
    #[arg(long, value_enum, default_value = "auto")]
    pub dtype: DtypeChoice,

    /// Quantize a dense checkpoint's projection weights as they load (a GGUF file's quantized
    /// weights are used as stored).
    #[arg(long, value_enum, value_name = "q8_0|q4_k|fp8")]
    pub quantization: Option<Quantization>,

    /// Prompt + completion limit per request (default: the model's max_position_embeddings,
    /// capped by what the KV cache holds).
    #[arg(long)]
    pub max_model_len: Option<usize>,

    /// Fraction of GPU memory for weights + KV cache (CUDA).
    #[arg(long, default_value_t = 0.9)]
    pub gpu_memory_utilization: f64,

    /// KV-cache memory on the CPU, e.g. 4GiB (default 4GiB).
    #[arg(long, value_name = "SIZE")]
    pub kv_cache_memory: Option<bytesize::ByteSize>,

    /// The KV cache's element type (vLLM's names): auto, bfloat16/bf16, float16/fp16/half,
    /// fp8/fp8_e4m3, and float32/fp32. auto is the model's dtype, except float16 for a
    /// generation model computing in f32 on the CPU (twice the tokens of f32, logits within
    /// 2.9e-3; docs/serving.md). fp8 holds four times f32's tokens. Read by the `generic`
    /// attention backend (CUDA's default) and the own `cuda` kernels beside any model dtype, and
    /// by the `cpu` backend beside f32 activations.
    #[arg(
        long,
        default_value = "auto",
        value_name = "auto|float32|bfloat16|float16|fp8"
    )]
    pub kv_cache_dtype: KvCacheDtype,

    /// Most sequences in one step.
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,

    /// Token budget of one step (prefill chunks + decodes).
    #[arg(long)]
    pub max_num_batched_tokens: Option<usize>,

    /// Requests allowed to wait for a slot before new ones get 429.
    #[arg(long, default_value_t = 1024)]
    pub max_waiting: usize,

    /// Tokens per KV-cache block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,

    /// Host memory, in GiB, for KV blocks the prefix cache evicts (vLLM's flag; 0: none).
    /// A later prompt that continues into them gets them back instead of recomputing them.
    #[arg(long, default_value_t = 0.0, value_name = "GiB")]
    pub kv_offloading_size: f64,

    /// vLLM's offloading backend; only `native` (tealight's own tiers) is available.
    #[arg(long, default_value = "native", value_name = "native")]
    pub kv_offloading_backend: String,

    /// A directory for KV blocks the prefix cache (or the host tier) evicts: restored when a
    /// prompt continues into them, and found again by a restarted server with the same model
    /// and flags.
    #[arg(long, value_name = "DIR")]
    pub kv_offload_dir: Option<std::path::PathBuf>,

    /// The most the `--kv-offload-dir` tier keeps; least recently used blocks go first.
    #[arg(long, default_value = "16GiB", value_name = "SIZE")]
    pub kv_offload_dir_size: bytesize::ByteSize,

    /// vLLM's KV event stream, as JSON: `{"enable_kv_cache_events": true, "publisher": "zmq",
    /// "endpoint": "tcp://*:5557", "topic": "kv@POD@MODEL"}`. Stored and removed prefix-cache
    /// blocks are published for cache-aware routers (llm-d); see docs/scale-out.md.
    #[arg(long, value_name = "JSON")]
    pub kv_events_config: Option<String>,

    /// Speculative decoding, as vLLM's JSON: `{"method": "ngram", "num_speculative_tokens": 4,
    /// "prompt_lookup_max": 4}` (prompt lookup), `{"method": "suffix"}` (suffix decoding over
    /// this request and recent outputs) or `{"model": "./Qwen3-0.6B", "num_speculative_tokens":
    /// 4}` (a draft model with the same tokenizer). Outputs are unchanged; drafts are used only
    /// while they pay (see docs/serving.md).
    #[arg(long, value_name = "JSON")]
    pub speculative_config: Option<String>,

    /// Reuse KV blocks of shared prompt prefixes (on by default).
    #[arg(long, overrides_with = "no_enable_prefix_caching")]
    pub enable_prefix_caching: bool,

    #[arg(long)]
    pub no_enable_prefix_caching: bool,

    #[arg(long, value_enum, default_value = "auto")]
    pub attention_backend: AttentionBackend,

    /// Where sampling runs: auto (host for CPU logits, device otherwise), host, device.
    #[arg(long, value_enum, default_value = "auto")]
    pub sampler: crate::sampling::Backend,

    /// Split `<think>…</think>` into `reasoning_content`: qwen3 (the default), or none.
    #[arg(long, value_name = "NAME")]
    pub reasoning_parser: Option<String>,

    /// Accepted for vLLM compatibility: the model may decide to call tools
    /// (`tool_choice: "auto"`) by default.
    #[arg(long)]
    pub enable_auto_tool_choice: bool,

    /// Refuse `tool_choice: "auto"` (vLLM's behaviour without --enable-auto-tool-choice).
    #[arg(long, conflicts_with = "enable_auto_tool_choice")]
    pub disable_auto_tool_choice: bool,

    /// Tool-call format of the model's output: hermes (Qwen3's), qwen3_coder (Qwen3-Coder's
    /// `<function=…>` markup), or none. Default: the format the chat template teaches.
    #[arg(long, value_name = "NAME")]
    pub tool_call_parser: Option<String>,

    /// Answer 404 on /v1/responses and /v1/messages for a model name that is not served
    /// (by default the one model answers any name there, as agents use several).
    #[arg(long)]
    pub strict_model_name: bool,

    /// Chat template: a file path or an inline Jinja template (default: the tokenizer's).
    #[arg(long)]
    pub chat_template: Option<String>,

    /// Sampling defaults: `auto` (the model's generation_config.json), `vllm` (none), or a folder.
    #[arg(long, default_value = "auto")]
    pub generation_config: String,

    /// CORS origins, comma-separated or a JSON list (default: none).
    #[arg(long)]
    pub allowed_origins: Option<String>,

    /// Do not log each request.
    #[arg(long)]
    pub disable_log_requests: bool,

    /// Default seed for requests that do not set one (makes runs reproducible).
    #[arg(long)]
    pub seed: Option<u64>,

    /// CPU threads for the model (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Seconds of silence after which a streamed response sends an SSE comment (keeps proxies
    /// from timing out; finds clients that left while queued).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub sse_keep_alive: f64,

    /// Seconds running requests get to finish on shutdown.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// Also expose vLLM's metric names on /metrics (`vllm:num_requests_waiting`, …) for
    /// routers, autoscalers and dashboards configured for vLLM.
    #[arg(long, value_enum, default_value = "none")]
    pub metrics_compat: MetricsCompat,

    // Agent APIs: the Responses store and the tool count.
    /// Most memory the stored responses (GET /v1/responses/{id}, previous_response_id) may
    /// take, counted as their JSON size; the oldest go first.
    #[arg(long, default_value = "256MiB", value_name = "SIZE")]
    pub response_store_max_bytes: bytesize::ByteSize,

    /// Most responses kept in the store; the oldest go first.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub response_store_max_entries: usize,

    /// Seconds a stored response is kept.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub response_store_ttl: u64,

    /// Most tools one request may declare (chat completions, Responses, Messages).
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_tools: usize,

    // Request shape: what one request may ask for.
    /// Largest request body.
    #[arg(long, default_value = "32MiB", value_name = "SIZE")]
    pub max_request_body_bytes: bytesize::ByteSize,

    /// Largest `n` (choices per prompt).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_n: usize,

    /// Most prompts in one /v1/completions request.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_prompts: usize,

    /// Most engine requests one API request becomes (prompts × n); also how many inputs of
    /// one /v1/embeddings request run at once.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_choices: usize,

    /// Most inputs in one /v1/embeddings request (OpenAI's limit), documents in one
    /// /v1/rerank request, or pairs in one /v1/score request.
    #[arg(long, default_value_t = 2048, value_name = "N")]
    pub max_pooling_inputs: usize,

    /// Most stop strings.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_stop: usize,

    /// Most `stop_token_ids`.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_stop_token_ids: usize,

    /// Most `logit_bias` entries.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_logit_bias: usize,

    /// Most logprob entries a non-streamed response may hold (choices × (1 + top) × tokens).
    #[arg(long, default_value_t = 1 << 20, value_name = "N")]
    pub max_logprob_entries: usize,

    // HTTP transport: timeouts, the connection cap, request-body buffering.
    /// Seconds a client has to send a whole request head (counted from when the connection
    /// starts waiting for one); slower connections are closed.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub header_read_timeout: f64,

    /// Seconds a connection may stay open with no request in flight before it is closed.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub keep_alive_timeout: f64,

    /// Seconds a client has to send a request body once its head has arrived (408 after).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub body_read_timeout: f64,

    /// Most client connections open at once (lowered to leave file descriptors below
    /// RLIMIT_NOFILE); at the cap the longest-idle connection is closed to make room.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,

    /// Request-body bytes buffered at once across all connections; a body that cannot fit in
    /// time is answered 503.
    #[arg(long, default_value = "256MiB", value_name = "SIZE")]
    pub max_buffered_body_bytes: bytesize::ByteSize,

    /// Accepted for vLLM compatibility; tealight runs one device per process.
    #[arg(long, default_value_t = 1, hide = true)]
    pub tensor_parallel_size: usize,

    /// Ignored (accepted for vLLM compatibility): tealight runs no code from checkpoints.
    #[arg(long)]
    pub trust_remote_code: bool,

    /// Ignored (accepted for vLLM compatibility): tealight never captures CUDA graphs.
    #[arg(long)]
    pub enforce_eager: bool,

    /// Ignored (accepted for vLLM compatibility): tealight logs no periodic stats; see /metrics.
    #[arg(long)]
    pub disable_log_stats: bool,

    // Engine hardening: clients that stop reading, prefix-cache privacy, chat-template injection.
    /// Events (about one per token) a request buffers for a client that is not reading its
    /// stream; when full, the request stops generating (keeping its KV cache) until it reads.
    #[arg(long, default_value_t = crate::engine::config::DEFAULT_STREAM_BUFFER_EVENTS)]
    pub stream_buffer_events: usize,

    /// Seconds a request may wait for its client to read before it is aborted with an error
    /// and its KV cache freed (0: wait forever).
    #[arg(long, default_value_t = crate::engine::config::DEFAULT_STREAM_STALL_TIMEOUT_S as f64)]
    pub stream_stall_timeout: f64,

    /// Prefix-cache blocks match only between requests presenting the same API key (with the
    /// same `cache_salt`), so one client cannot tell what another has cached.
    #[arg(long)]
    pub prefix_cache_salt_per_key: bool,

    /// Report 0 in `usage.prompt_tokens_details.cached_tokens` (and the Messages API's
    /// `cache_read_input_tokens`): the count tells a client what other requests were served.
    #[arg(long)]
    pub no_report_cached_tokens: bool,

    /// Special-token text in message content (e.g. a typed `<|im_start|>`) becomes the control
    /// token, as in vLLM; by default it is tokenized as plain text.
    #[arg(long)]
    pub allow_special_tokens_in_content: bool,

    // Structured outputs: schema bounds and the grammar compile budget.
    /// Most entries in any one object or list of a JSON schema (properties, enum values,
    /// anyOf branches, required names) for response formats and forced tool calls.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_schema_properties: usize,

    /// Most JSON values in all of one request's output schemas together.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub max_schema_nodes: usize,

    /// Deepest nesting of JSON values in an output schema.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_schema_depth: usize,

    /// Seconds a request's output grammar may take to compile before it is refused (400).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub grammar_compile_timeout: f64,
}

/// `--kv-cache-dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvCacheDtype {
    Auto,
    /// An f32 cache (beside an f32 model: what `auto` was on the CPU before it chose float16).
    F32,
    Bf16,
    F16,
    /// e4m3 with vLLM's per-tensor scales (`fp8` means e4m3 in vLLM too).
    Fp8E4m3,
}

impl std::str::FromStr for KvCacheDtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "float32" | "fp32" | "float" => Ok(Self::F32),
            "bfloat16" | "bf16" => Ok(Self::Bf16),
            "float16" | "fp16" | "half" => Ok(Self::F16),
            "fp8" | "fp8_e4m3" => Ok(Self::Fp8E4m3),
            "fp8_e5m2" | "fp8_inc" | "fp8_ds_mla" => Err(format!(
                "{s}: only the e4m3 fp8 cache is built; use fp8 (fp8_e4m3), auto, bfloat16 or \
                 float16"
            )),
            _ => Err(format!(
                "{s}: expected auto, float32 (fp32), bfloat16 (bf16), float16 (fp16) or fp8 \
                 (fp8_e4m3)"
            )),
        }
    }
}

impl KvCacheDtype {
    /// The cache's dtype (`None`: the model's).
    pub fn dtype(self) -> Option<candle_core::DType> {
        match self {
            Self::Auto => None,
            Self::F32 => Some(candle_core::DType::F32),
            Self::Bf16 => Some(candle_core::DType::BF16),
            Self::F16 => Some(candle_core::DType::F16),
            Self::Fp8E4m3 => Some(candle_core::DType::F8E4M3),
        }
    }
}

/// `--task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskChoice {
    Auto,
    Generate,
    Embed,
    Score,
}

/// vLLM's `--runner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunnerChoice {
    Auto,
    Generate,
    Pooling,
}

/// vLLM's `--convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvertChoice {
    Auto,
    Embed,
    None,
}

impl ServeArgs {
    /// The task the flags ask for: `--task` first, then vLLM's `--hf-overrides` (a reranker),
    /// `--runner` and `--convert`.
    pub fn task_choice(&self) -> Result<TaskChoice, String> {
        if self.task == TaskChoice::Auto && self.reranker_overrides()? {
            return Ok(TaskChoice::Score);
        }
        Ok(match (self.task, self.runner, self.convert) {
            (TaskChoice::Auto, Some(RunnerChoice::Pooling), _)
            | (TaskChoice::Auto, _, Some(ConvertChoice::Embed)) => TaskChoice::Embed,
            (TaskChoice::Auto, Some(RunnerChoice::Generate), _) => TaskChoice::Generate,
            (task, _, _) => task,
        })
    }

    /// Whether `--hf-overrides` reads the model as a sequence classifier from its tokens (how
    /// vLLM serves Qwen3-Reranker).
    fn reranker_overrides(&self) -> Result<bool, String> {
        let Some(text) = &self.hf_overrides else {
            return Ok(false);
        };
        let overrides: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("--hf-overrides is not JSON: {e}"))?;
        Ok(
            overrides.get("is_original_qwen3_reranker") == Some(&serde_json::Value::Bool(true))
                || overrides.get("classifier_from_token").is_some(),
        )
    }

    pub fn model_arg(&self) -> String {
        self.model
            .clone()
            .unwrap_or_else(|| super::default_model_dir().display().to_string())
    }

    pub fn api_key(&self) -> Option<String> {
        self.api_key
            .clone()
            .or_else(|| std::env::var("VLLM_API_KEY").ok())
            .filter(|k| !k.is_empty())
    }

    pub fn prefix_caching(&self) -> bool {
        !self.no_enable_prefix_caching
    }

    /// The offload tiers' sizes and place (`model_identity` left for the loader).
    pub fn kv_offload(&self) -> Result<crate::engine::kv_offload::KvOffloadConfig, String> {
        if self.kv_offloading_backend != "native" {
            return Err(format!(
                "--kv-offloading-backend {}: only `native` is available",
                self.kv_offloading_backend
            ));
        }
        let gib = self.kv_offloading_size;
        if !(gib.is_finite() && gib >= 0.0) {
            return Err(format!(
                "--kv-offloading-size must be a size in GiB (0 or more), got {gib}"
            ));
        }
        let config = crate::engine::kv_offload::KvOffloadConfig {
            host_bytes: (gib * (1u64 << 30) as f64) as usize,
            dir: self.kv_offload_dir.clone(),
            dir_bytes: self.kv_offload_dir_size.as_u64() as usize,
            model_identity: Default::default(),
        };
        if config.enabled() && !self.prefix_caching() {
            return Err(
                "--kv-offloading-size and --kv-offload-dir keep prefix-cache blocks: they \
                 need prefix caching (drop --no-enable-prefix-caching)"
                    .into(),
            );
        }
        Ok(config)
    }

    /// `--stream-stall-timeout` (`None`: never).
    pub fn stream_stall_timeout(&self) -> Result<Option<std::time::Duration>, String> {
        let seconds = self.stream_stall_timeout;
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(format!(
                "--stream-stall-timeout must be a number of seconds, 0 or more, got {seconds}"
            ));
        }
        Ok((seconds > 0.0).then(|| std::time::Duration::from_secs_f64(seconds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn offload(flags: &[&str]) -> Result<crate::engine::kv_offload::KvOffloadConfig, String> {
        let mut argv = vec!["serve"];
        argv.extend(flags);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .args
            .kv_offload()
    }

    #[test]
    fn offload_flags_take_vllms_names_and_refuse_what_cannot_work() {
        let off = offload(&[]).unwrap();
        assert!(!off.enabled());
        let on = offload(&[
            "--kv-offloading-size",
            "1.5",
            "--kv-offloading-backend",
            "native",
            "--kv-offload-dir",
            "/tmp/kv",
            "--kv-offload-dir-size",
            "2GiB",
        ])
        .unwrap();
        assert_eq!(on.host_bytes, 3 << 29);
        assert_eq!(on.dir.as_deref(), Some(std::path::Path::new("/tmp/kv")));
        assert_eq!(on.dir_bytes, 2 << 30);
        assert!(offload(&["--kv-offloading-backend", "lmcache"]).is_err());
        assert!(offload(&["--kv-offloading-size", "-1"]).is_err());
        assert!(offload(&["--kv-offloading-size", "NaN"]).is_err());
        let no_prefix = offload(&["--kv-offload-dir", "/tmp/kv", "--no-enable-prefix-caching"]);
        assert!(no_prefix.unwrap_err().contains("prefix caching"));
    }
}
