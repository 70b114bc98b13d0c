//! Flags → a loaded model behind a running engine, ready for the HTTP layer.

use std::path::Path;
use std::sync::Arc;

use crate::api::Ready;
use crate::cli::serve::ServeArgs;
use crate::device::{device_memory, select_device};
use crate::engine::kv_budget::{KvBudget, blocks_in, kv_bytes};
use crate::engine::{EngineConfig, EngineHandle};
use crate::error::{Error, Result};
use crate::model::checkpoint::CheckpointFiles;
use crate::model::loader::load_model;
use crate::sampling::GenerationDefaults;
use crate::tokenizer::{ChatTemplate, Tokenizer};

/// Loads the checkpoint, tokenizer, template and sampling defaults, and starts the engine.
pub fn load(args: &ServeArgs) -> Result<Ready> {
    if args.tensor_parallel_size != 1 {
        return Err(Error::invalid_request(
            "--tensor-parallel-size must be 1: tealight runs one device",
        ));
    }
    let model_arg = args.model_arg();
    let files = CheckpointFiles::resolve(&model_arg)?;
    let device = select_device(args.device)?;
    let tokenizer = Arc::new(Tokenizer::from_file(&files.tokenizer)?);
    let template = chat_template(args, &files.dir)?;
    let defaults = generation_defaults(&args.generation_config, &files.dir)?;
    let eos_ids = eos_ids(&defaults, &tokenizer);
    let model = load_model(files, &device, args.dtype)?.model;

    let cfg = model.config().clone();
    let kv_dtype_size = model.dtype().size_in_bytes();
    let budget = match args.kv_cache_memory {
        Some(size) => KvBudget::Bytes(size.as_u64() as usize),
        None if device.is_cpu() => KvBudget::CpuDefault,
        None => KvBudget::GpuFraction(args.gpu_memory_utilization),
    };
    let kv_bytes = kv_bytes(budget, &cfg, kv_dtype_size, || device_memory(&device))?;
    let mut config = EngineConfig::for_model(&cfg, kv_bytes, kv_dtype_size);
    config.block_size = args.block_size;
    config.num_blocks = blocks_in(kv_bytes, &cfg, kv_dtype_size, args.block_size);
    config.max_model_len = args
        .max_model_len
        .unwrap_or_else(|| cfg.max_position_embeddings.min(config.pool_tokens()));
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
    Ok(Ready::new(
        engine,
        tokenizer,
        template,
        defaults,
        served_model_names,
        model_arg,
    ))
}

/// `--chat-template` (a file or inline Jinja, with the model's special tokens) or the model's own.
fn chat_template(args: &ServeArgs, model_dir: &Path) -> Result<ChatTemplate> {
    match &args.chat_template {
        Some(flag) => {
            let specials = ChatTemplate::from_model_dir(model_dir)
                .map(|t| t.special_tokens().clone())
                .unwrap_or_default();
            ChatTemplate::from_flag(flag, specials)
        }
        None => ChatTemplate::from_model_dir(model_dir),
    }
}

/// `--generation-config`: `auto` (the model's), `vllm` (none), or a folder.
fn generation_defaults(flag: &str, model_dir: &Path) -> Result<GenerationDefaults> {
    match flag {
        "auto" => GenerationDefaults::from_model_dir(model_dir),
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
