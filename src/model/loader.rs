//! Loads a checkpoint onto a device: config, weights (converted to the compute dtype, or
//! quantized), timing.

use super::qwen3::Qwen3Model;
use crate::error::Result;
use crate::weights::checkpoint::CheckpointFiles;
use crate::weights::config::Qwen3Config;
use crate::weights::quantization::Quantization;
use crate::weights::source::ModelSource;
use crate::weights::store::WeightStore;
use candle_core::{DType, Device};
use std::time::Instant;

/// `--dtype`, with vLLM's spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DtypeChoice {
    /// f32 on CPU; on CUDA the checkpoint's f16, else bf16.
    #[default]
    Auto,
    #[value(alias = "float32", alias = "float")]
    F32,
    #[value(alias = "float16", alias = "half")]
    F16,
    #[value(alias = "bfloat16")]
    Bf16,
}

impl DtypeChoice {
    pub fn resolve(self, device: &Device, cfg: &Qwen3Config) -> DType {
        match self {
            DtypeChoice::F32 => DType::F32,
            DtypeChoice::F16 => DType::F16,
            DtypeChoice::Bf16 => DType::BF16,
            DtypeChoice::Auto if device.is_cpu() => DType::F32,
            DtypeChoice::Auto => match cfg.stored_dtype.as_deref() {
                Some("float16") => DType::F16,
                _ => DType::BF16,
            },
        }
    }
}

pub struct LoadedModel {
    pub model: Qwen3Model,
    pub files: CheckpointFiles,
}

pub fn load_model(
    files: CheckpointFiles,
    device: &Device,
    dtype: DtypeChoice,
) -> Result<LoadedModel> {
    let model = load_source(&ModelSource::Checkpoint(files.clone()), device, dtype, None)?;
    Ok(LoadedModel { model, files })
}

/// Loads the model of a checkpoint directory or GGUF file, quantizing dense projection weights
/// when `quantization` is given.
pub fn load_source(
    source: &ModelSource,
    device: &Device,
    dtype: DtypeChoice,
    quantization: Option<Quantization>,
) -> Result<Qwen3Model> {
    let started = Instant::now();
    let cfg = source.config()?;
    let dtype = dtype.resolve(device, &cfg);
    let tensors = Qwen3Model::tensor_count(&cfg);
    let store = match source {
        ModelSource::Checkpoint(files) => {
            WeightStore::open(&files.weights, device, dtype, tensors)?
        }
        ModelSource::Gguf(file) => WeightStore::open_gguf(file.clone(), device, dtype, tensors),
    }
    .quantize_to(quantization)
    .with_fp8_block(cfg.fp8_block);
    let model = Qwen3Model::load(&store, &cfg)?;
    store.finish_progress();
    if cfg.tie_word_embeddings && store.contains("lm_head.weight") {
        tracing::debug!("checkpoint has lm_head.weight but ties embeddings; using embed_tokens");
    }
    tracing::info!(
        model = %source.path().display(),
        dtype = ?dtype,
        quantization = ?quantization,
        layers = cfg.num_hidden_layers,
        hidden = cfg.hidden_size,
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "model loaded"
    );
    Ok(model)
}

impl LoadedModel {
    pub fn load(model: &str, device: &Device, dtype: DtypeChoice) -> Result<Self> {
        load_model(CheckpointFiles::resolve(model)?, device, dtype)
    }
}
