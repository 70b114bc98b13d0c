//! Flags → a loaded model behind a running engine, ready for the HTTP layer.

use std::path::Path;
use std::sync::Arc;

use crate::api::Ready;
use crate::cli::serve::ServeArgs;
use crate::device::{device_memory, select_device};
use crate::engine::kv_budget::{KvBudget, blocks_in, check_fraction, gpu_breakdown, kv_bytes};
use crate::engine::startup::{StepShape, profile_activations};
use crate::engine::{EngineConfig, EngineHandle};
use crate::error::{Error, Result};
use crate::model::Qwen3Model;
use crate::model::loader::load_source;
use crate::sampling::GenerationDefaults;
use crate::sampling::Sampler;
use crate::tokenizer::{ChatTemplate, Tokenizer};
use crate::weights::ModelSource;

/// Loads the checkpoint, tokenizer, template and sampling defaults, and starts the engine.
pub fn load(args: &ServeArgs) -> Result<Ready> {
    if args.tensor_parallel_size != 1 {
        return Err(Error::config(
            "--tensor-parallel-size must be 1: tealight runs one device",
        ));
    }
    let budget = match args.kv_cache_memory {
        Some(size) => KvBudget::Bytes(size.as_u64() as usize),
        None => KvBudget::GpuFraction(args.gpu_memory_utilization),
    };
    let model_arg = args.model_arg();
    let source = ModelSource::resolve(&model_arg)?;
    let device = select_device(args.device)?;
    let budget = match budget {
        KvBudget::GpuFraction(_) if device.is_cpu() => KvBudget::CpuDefault,
        KvBudget::GpuFraction(fraction) => {
            check_fraction(fraction)?;
            budget
        }
        other => other,
    };
    let tokenizer = Arc::new(source.tokenizer()?);
    let choice = args.task_choice().map_err(Error::config)?;
    let task = super::task::resolve(choice, &source, &tokenizer)?;
    let template = chat_template(args, &source)?;
    let defaults = generation_defaults(&args.generation_config, &source, &tokenizer)?;
    let eos_ids = eos_ids(&defaults, &tokenizer);
    let model = load_source(&source, &device, args.dtype, args.quantization)?;
    // Whatever the loading thread queued on the device is done before any other thread uses
    // the weights.
    device.synchronize()?;

    let cfg = model.config().clone();
    let backend = args.attention_backend.resolve(&device)?;
    let kv_choice = kv_cache_dtype(args, &model, backend, &task);
    let kv_dtype = kv_choice.unwrap_or(model.dtype());
    let kv_dtype_size = kv_dtype.size_in_bytes();
    let mut config = EngineConfig::for_model(&cfg, 0, kv_dtype_size);
    config.block_size = args.block_size;
    config.max_num_seqs = args.max_num_seqs;
    config.max_num_batched_tokens =
        args.max_num_batched_tokens
            .unwrap_or(if device.is_cpu() { 512 } else { 8192 });
    config.max_waiting = args.max_waiting;
    config.enable_prefix_caching = args.prefix_caching();
    config.attention_backend = backend;
    config.sampler = args.sampler;
    config.stream_buffer_events = args.stream_buffer_events;
    config.stream_stall_timeout = args.stream_stall_timeout().map_err(Error::config)?;
    config.report_cached_tokens = !args.no_report_cached_tokens;
    config.kv_cache_dtype = kv_choice;
    config.kv_offload = args.kv_offload().map_err(Error::config)?;
    config.kv_events = match &args.kv_events_config {
        Some(json) => {
            crate::engine::kv_events::KvEventsConfig::parse(json).map_err(Error::config)?
        }
        None => None,
    };
    config.speculative = match &args.speculative_config {
        Some(json) => Some(
            crate::engine::speculative::config::SpeculativeConfig::parse(json)
                .map_err(Error::config)?,
        ),
        None => None,
    };
    if config.kv_offload.enabled() {
        // What the stored KV depends on besides the tokens and the pool's layout.
        let settings = [
            format!("{:?}", model.dtype()),
            format!("{:?}", args.quantization),
        ];
        let identity = source.identity(&settings).map_err(|e| {
            Error::config(format!(
                "reading {} for the KV offload tiers: {e}",
                model_arg
            ))
        })?;
        config.kv_offload.model_identity = crate::engine::block_digest::BlockDigest(identity);
    }
    let context_limit = args.max_model_len.unwrap_or(cfg.max_position_embeddings);
    let kv_bytes = match kv_bytes(budget, &cfg, kv_dtype_size) {
        Some(bytes) => bytes,
        None => profiled_kv_bytes(&model, &config, budget, context_limit)?,
    };
    let kv_bytes = without_draft_share(&config, kv_bytes, &cfg, kv_dtype_size, &device)?;
    config.num_blocks = blocks_in(kv_bytes, &cfg, kv_dtype_size, args.block_size);
    config.max_model_len = args
        .max_model_len
        .unwrap_or_else(|| cfg.max_position_embeddings.min(config.pool_tokens()));
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
    Ok(Ready::new(
        engine,
        tokenizer,
        template,
        defaults,
        served_model_names,
        model_arg,
    )
    .with_task(task))
}

/// `--kv-cache-dtype`, with `auto` resolved: the model's dtype, except for a generation model
/// computing in f32 on the CPU backends, whose cache is float16 (llama.cpp's default too): it
/// holds twice the tokens in the same memory and decodes long contexts ~1.5× faster, with the
/// logits within 2.9e-3 of transformers f32 and every greedy continuation of the parity
/// fixtures unchanged (`tests/model/kv_dtype.rs`). Embedding and reranking models keep f32:
/// their output is the product, held to references at 1e-4, and they keep no sessions.
fn kv_cache_dtype(
    args: &ServeArgs,
    model: &Qwen3Model,
    backend: crate::model::AttentionBackend,
    task: &crate::api::task::ServedTask,
) -> Option<candle_core::DType> {
    use crate::model::AttentionBackend;
    if let Some(chosen) = args.kv_cache_dtype.dtype() {
        return Some(chosen);
    }
    let cpu_f32_generation = model.device().is_cpu()
        && model.dtype() == candle_core::DType::F32
        && matches!(backend, AttentionBackend::Cpu | AttentionBackend::Generic)
        && matches!(task, crate::api::task::ServedTask::Generate);
    cpu_f32_generation.then_some(candle_core::DType::F16)
}

/// The target's part of `kv_bytes` when a draft model or EAGLE-3 head shares the pool: its KV
/// takes the same blocks (its bytes per token beside the target's), and on a GPU its weights,
/// not loaded yet when the budget was profiled, come out of the pool first.
fn without_draft_share(
    config: &EngineConfig,
    kv_bytes: usize,
    cfg: &crate::weights::Qwen3Config,
    kv_dtype_size: usize,
    device: &candle_core::Device,
) -> Result<usize> {
    use crate::engine::speculative::config::Method;
    let file_bytes = |files: &[std::path::PathBuf]| -> usize {
        files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len() as usize)
            .sum()
    };
    let (weights, theirs) = match config.speculative.as_ref().map(|s| &s.method) {
        Some(Method::DraftModel { model }) => {
            let source = ModelSource::resolve(model)?;
            let weights = match &source {
                ModelSource::Checkpoint(files) => file_bytes(&files.weights),
                ModelSource::Gguf(_) => file_bytes(&[source.path()]),
            };
            (weights, source.config()?.kv_bytes_per_token(kv_dtype_size))
        }
        Some(Method::Eagle3 { model }) => {
            let (config_file, files) = crate::weights::checkpoint::resolve_head(model)?;
            let head = crate::model::eagle3::Eagle3Config::from_file(&config_file)?;
            let per_token = 2 * head.num_key_value_heads * head.head_dim * kv_dtype_size;
            (file_bytes(&files), per_token)
        }
        _ => return Ok(kv_bytes),
    };
    let weights = if device.is_cpu() { 0 } else { weights };
    let ours = cfg.kv_bytes_per_token(kv_dtype_size);
    let left = kv_bytes.checked_sub(weights).ok_or_else(|| {
        Error::config(format!(
            "--speculative-config: the draft model's weights ({weights} bytes) do not fit in \
             the KV budget of {kv_bytes} bytes"
        ))
    })?;
    let share = (left as u128 * ours as u128 / (ours + theirs).max(1) as u128) as usize;
    tracing::info!(
        "KV pool shared with the draft model: {ours} and {theirs} bytes a token; the served \
         model's part {share} of {kv_bytes} bytes"
    );
    Ok(share)
}

/// The GPU's KV budget: the weights are resident; a profiling step at the largest step the
/// limits allow measures the activation peak; the pool gets what `--gpu-memory-utilization`
/// leaves after both and the reserve. Logs the breakdown.
fn profiled_kv_bytes(
    model: &Qwen3Model,
    config: &EngineConfig,
    budget: KvBudget,
    context_limit: usize,
) -> Result<usize> {
    let KvBudget::GpuFraction(fraction) = budget else {
        return Err(Error::Internal(format!("no profile for {budget:?}")));
    };
    let memory = device_memory(model.device())?;
    let shape = StepShape {
        tokens: config.max_num_batched_tokens,
        rows: config.max_num_seqs.min(config.max_num_batched_tokens),
        context: context_limit,
    };
    let started = std::time::Instant::now();
    let sampler = Sampler::with_backend(config.sampler);
    let profile = profile_activations(
        model,
        config.attention_backend,
        &sampler,
        shape,
        config.block_size,
    )?;
    let b = gpu_breakdown(fraction, memory, profile.peak())?;
    let gib = |bytes: usize| format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64);
    tracing::info!(
        "GPU memory: {} total, budget {} (--gpu-memory-utilization {fraction}); weights and \
         context {}; activation peak {} ({}, step of {} tokens × {} sequences at context {}, \
         profiled at context {} in {:.2} s); reserve {}; KV cache {}",
        gib(b.total),
        gib(b.budget),
        gib(b.in_use),
        gib(b.activation_peak),
        match profile.measured {
            Some(m) => format!("measured {}, estimate {}", gib(m), gib(profile.estimate)),
            None => "estimated; the allocator could not measure".to_owned(),
        },
        shape.tokens,
        shape.rows,
        shape.context,
        profile.profiled_context,
        started.elapsed().as_secs_f64(),
        gib(b.reserve),
        gib(b.kv),
    );
    Ok(b.kv)
}

/// `--chat-template` (a file or inline Jinja, with the model's special tokens) or the model's own.
fn chat_template(args: &ServeArgs, source: &ModelSource) -> Result<ChatTemplate> {
    match &args.chat_template {
        Some(flag) => ChatTemplate::from_flag(flag, source.template_special_tokens()),
        None => source.chat_template(),
    }
}

/// `--generation-config`: `auto` (the model's: its directory's file, or a GGUF file's
/// metadata), `vllm` (none), or a folder.
fn generation_defaults(
    flag: &str,
    source: &ModelSource,
    tokenizer: &Tokenizer,
) -> Result<GenerationDefaults> {
    match flag {
        "auto" => source.generation_defaults(tokenizer),
        "vllm" => Ok(GenerationDefaults::default()),
        dir => GenerationDefaults::from_model_dir(Path::new(dir)),
    }
}

/// The ids that end generation: generation_config's, else Qwen3's end-of-turn and end-of-text.
fn eos_ids(defaults: &GenerationDefaults, tokenizer: &Tokenizer) -> Vec<u32> {
    let mut ids = defaults.eos_token_ids.clone();
    if ids.is_empty() {
        ids.extend(tokenizer.token_to_id("<|im_end|>"));
        ids.extend(tokenizer.token_to_id("<|endoftext|>"));
    }
    ids
}
