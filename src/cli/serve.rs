//! `tealight serve`: load the model, start the engine, serve the OpenAI API.
//! Flags follow vLLM's names so existing command lines work unchanged.

use crate::device::{DeviceChoice, select_device};
use crate::engine::{EngineConfig, EngineHandle};
use crate::error::{Error, Result};
use crate::model::AttentionBackend;
use crate::model::ModelSource;
use crate::model::loader::{DtypeChoice, Quantization, load_source};
use crate::sampling::GenerationDefaults;
use crate::tokenizer::{ChatTemplate, Tokenizer};
use clap::Args;
use std::sync::Arc;

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

    /// Reuse KV blocks of shared prompt prefixes (on by default).
    #[arg(long, overrides_with = "no_enable_prefix_caching")]
    pub enable_prefix_caching: bool,

    #[arg(long)]
    pub no_enable_prefix_caching: bool,

    #[arg(long, value_enum, default_value = "auto")]
    pub attention_backend: AttentionBackend,

    /// Split `<think>…</think>` into `reasoning_content` (qwen3).
    #[arg(long, value_name = "NAME")]
    pub reasoning_parser: Option<String>,

    /// Let the model decide to call tools (`tool_choice: "auto"`).
    #[arg(long)]
    pub enable_auto_tool_choice: bool,

    /// Tool-call format of the model's output (hermes).
    #[arg(long, value_name = "NAME")]
    pub tool_call_parser: Option<String>,

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

    /// Seconds running requests get to finish on shutdown.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// Accepted for vLLM compatibility; tealight runs one device per process.
    #[arg(long, default_value_t = 1, hide = true)]
    pub tensor_parallel_size: usize,

    /// Accepted for vLLM compatibility (no effect).
    #[arg(long, hide = true)]
    pub trust_remote_code: bool,

    /// Accepted for vLLM compatibility (no effect: CUDA graphs are off unless asked for).
    #[arg(long, hide = true)]
    pub enforce_eager: bool,

    /// Accepted for vLLM compatibility (no effect).
    #[arg(long, hide = true)]
    pub disable_log_stats: bool,
}

/// Everything `serve` built, ready for the HTTP layer.
pub struct Loaded {
    pub engine: Arc<EngineHandle>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub defaults: GenerationDefaults,
    pub served_model_names: Vec<String>,
    pub model_path: String,
}

impl ServeArgs {
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
}

/// Loads the checkpoint, tokenizer, template and sampling defaults, and starts the engine.
pub fn load(args: &ServeArgs) -> Result<Loaded> {
    if args.tensor_parallel_size != 1 {
        return Err(Error::invalid_request(
            "--tensor-parallel-size must be 1: tealight runs one device",
        ));
    }
    let model_arg = args.model_arg();
    let source = ModelSource::resolve(&model_arg)?;
    let device = select_device(args.device)?;
    let tokenizer = Arc::new(source.tokenizer()?);
    let template = match &args.chat_template {
        Some(flag) => ChatTemplate::from_flag(flag, source.template_special_tokens())?,
        None => source.chat_template()?,
    };
    let defaults = match args.generation_config.as_str() {
        "auto" => source.generation_defaults(&tokenizer)?,
        "vllm" => GenerationDefaults::default(),
        dir => GenerationDefaults::from_model_dir(std::path::Path::new(dir))?,
    };
    let mut eos_ids = defaults.eos_token_ids.clone();
    if eos_ids.is_empty() {
        eos_ids.extend(tokenizer.token_to_id("<|im_end|>"));
        eos_ids.extend(tokenizer.token_to_id("<|endoftext|>"));
    }
    let model = load_source(&source, &device, args.dtype, args.quantization)?;
    let cfg = model.config().clone();
    let kv_dtype_size = model.dtype().size_in_bytes();
    let kv_bytes = kv_budget_bytes(args, &device, &cfg, kv_dtype_size)?;
    let mut config = EngineConfig::for_model(&cfg, kv_bytes, kv_dtype_size);
    config.block_size = args.block_size;
    config.num_blocks =
        (kv_bytes / (cfg.kv_bytes_per_token(kv_dtype_size) * args.block_size)).max(1);
    config.max_model_len = match args.max_model_len {
        Some(n) => n,
        None => cfg.max_position_embeddings.min(config.pool_tokens()),
    };
    config.max_num_seqs = args.max_num_seqs;
    config.max_num_batched_tokens =
        args.max_num_batched_tokens
            .unwrap_or(if device.is_cpu() { 512 } else { 8192 });
    config.max_waiting = args.max_waiting;
    config.enable_prefix_caching = args.prefix_caching();
    config.attention_backend = args.attention_backend;
    let engine = Arc::new(EngineHandle::start(
        model,
        tokenizer.clone(),
        eos_ids,
        config,
    )?);
    let served_model_names = if args.served_model_name.is_empty() {
        vec![model_arg.clone()]
    } else {
        args.served_model_name.clone()
    };
    Ok(Loaded {
        engine,
        tokenizer,
        template,
        defaults,
        served_model_names,
        model_path: model_arg,
    })
}

/// Bytes for the KV cache: `--kv-cache-memory`, else on CPU 4 full contexts (at most 4 GiB); on CUDA the memory left
/// under `--gpu-memory-utilization` once the weights are loaded.
fn kv_budget_bytes(
    args: &ServeArgs,
    device: &candle_core::Device,
    cfg: &crate::model::Qwen3Config,
    dtype_size: usize,
) -> Result<usize> {
    if let Some(size) = args.kv_cache_memory {
        return Ok(size.as_u64() as usize);
    }
    if device.is_cpu() {
        return Ok(crate::engine::config::default_cpu_kv_bytes(cfg, dtype_size));
    }
    if !(0.0..=1.0).contains(&args.gpu_memory_utilization) || args.gpu_memory_utilization == 0.0 {
        return Err(Error::invalid_request(
            "--gpu-memory-utilization must be in (0, 1]",
        ));
    }
    crate::device::kv_budget_after_weights(device, args.gpu_memory_utilization)
}
