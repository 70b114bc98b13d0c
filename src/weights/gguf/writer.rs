//! Writes a Qwen3 checkpoint directory as one GGUF file, the way llama.cpp's converter lays it
//! out (tensor names, `qwen3.*` keys, the vocabulary as `tokenizer.ggml.*`, the chat template),
//! with each tensor in the type a [`TypePlan`] picks. Tests and benchmarks make their GGUF files
//! with it from the synthetic checkpoints; llama.cpp reads them as its own.

use super::names;
use super::types::GgmlType;
use crate::error::{Error, Result};
use crate::weights::checkpoint::CheckpointFiles;
use crate::weights::config::Qwen3Config;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::Value as Json;
use std::path::Path;

/// Which type each tensor is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypePlan {
    /// Every matrix in one type; norms in F32.
    All(GgmlType),
    /// llama.cpp's Q4_K_M recipe: Q4_K, with Q6_K for the output/tied embedding and for
    /// `attn_v` and `ffn_down` in the first and last eighth of the layers and every third one
    /// between.
    Q4KM,
}

impl TypePlan {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "f32" => Self::All(GgmlType::F32),
            "f16" => Self::All(GgmlType::F16),
            "bf16" => Self::All(GgmlType::BF16),
            "q8_0" => Self::All(GgmlType::Q8_0),
            "q4_k" => Self::All(GgmlType::Q4_K),
            "q5_k" => Self::All(GgmlType::Q5_K),
            "q6_k" => Self::All(GgmlType::Q6_K),
            "q4_k_m" => Self::Q4KM,
            _ => return None,
        })
    }

    /// The type of GGUF tensor `name` (`dims` row-major) in a model of `layers` layers.
    fn type_of(self, name: &str, dims: &[usize], layers: usize) -> GgmlType {
        // Norms, and the MoE router: llama.cpp's quantizer keeps `ffn_gate_inp` in F32.
        if dims.len() < 2 || name.ends_with("ffn_gate_inp.weight") {
            return GgmlType::F32;
        }
        match self {
            Self::All(t) => t,
            Self::Q4KM => {
                let more_bits =
                    |i: usize| i < layers / 8 || i >= 7 * layers / 8 || (i - layers / 8) % 3 == 2;
                let layer = name
                    .strip_prefix("blk.")
                    .and_then(|r| r.split('.').next())
                    .and_then(|i| i.parse::<usize>().ok());
                let bumped = name.ends_with("attn_v.weight")
                    || name.ends_with("ffn_down.weight")
                    || name.ends_with("ffn_down_exps.weight");
                let head = name == "output.weight" || name == "token_embd.weight";
                if head || (bumped && layer.is_some_and(more_bits)) {
                    GgmlType::Q6_K
                } else {
                    GgmlType::Q4_K
                }
            }
        }
    }
}

fn json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::checkpoint(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| Error::checkpoint(path, format!("invalid JSON: {e}")))
}

fn u32v(v: usize) -> Value {
    Value::U32(v as u32)
}

fn string_array<I: IntoIterator<Item = String>>(items: I) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

/// The `tokenizer.ggml.*` and template keys, from `tokenizer.json` / `tokenizer_config.json`,
/// with llama.cpp's token types (special or `<|…|>` added tokens CONTROL, other added tokens
/// USER_DEFINED, padding rows past the vocabulary UNUSED).
fn vocabulary(files: &CheckpointFiles, vocab_size: usize) -> Result<Vec<(String, Value)>> {
    let tok = json(&files.tokenizer)?;
    let bad = |what: &str| Error::checkpoint(&files.tokenizer, format!("no {what}"));
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; vocab_size];
    let vocab = tok["model"]["vocab"]
        .as_object()
        .ok_or_else(|| bad("model.vocab"))?;
    for (text, id) in vocab {
        if let Some(slot) = id.as_u64().and_then(|id| tokens.get_mut(id as usize)) {
            *slot = Some((text.clone(), 1));
        }
    }
    for added in tok["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(text)) = (added["id"].as_u64(), added["content"].as_str()) else {
            continue;
        };
        let control = added["special"].as_bool() == Some(true)
            || (text.starts_with("<|") && text.ends_with("|>"));
        if let Some(slot) = tokens.get_mut(id as usize) {
            *slot = Some((text.to_owned(), if control { 3 } else { 4 }));
        }
    }
    let (texts, types): (Vec<String>, Vec<Value>) = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| match t {
            Some((text, kind)) => (text, Value::I32(kind)),
            None => (format!("[PAD{id}]"), Value::I32(5)),
        })
        .unzip();
    let merges = tok["model"]["merges"]
        .as_array()
        .ok_or_else(|| bad("model.merges"))?
        .iter()
        .map(|m| match m {
            Json::String(s) => s.clone(),
            Json::Array(pair) => pair
                .iter()
                .filter_map(Json::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        });
    let id_of = |text: &str| texts.iter().position(|t| t == text);
    let mut keys = vec![
        (
            "tokenizer.ggml.model".to_owned(),
            Value::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".to_owned(),
            Value::String("qwen2".into()),
        ),
        ("tokenizer.ggml.merges".to_owned(), string_array(merges)),
        (
            "tokenizer.ggml.add_bos_token".to_owned(),
            Value::Bool(false),
        ),
    ];
    let config = files.tokenizer_config.as_deref().map(json).transpose()?;
    let named = |key: &str| -> Option<String> {
        match config.as_ref()?.get(key)? {
            Json::String(s) => Some(s.clone()),
            Json::Object(o) => o.get("content")?.as_str().map(str::to_owned),
            _ => None,
        }
    };
    for (key, name) in [
        ("tokenizer.ggml.eos_token_id", "eos_token"),
        ("tokenizer.ggml.padding_token_id", "pad_token"),
        ("tokenizer.ggml.bos_token_id", "bos_token"),
    ] {
        if let Some(id) = named(name).and_then(|t| id_of(&t)) {
            keys.push((key.to_owned(), u32v(id)));
        }
    }
    if let Some(template) = named("chat_template") {
        keys.push((
            "tokenizer.chat_template".to_owned(),
            Value::String(template),
        ));
    }
    keys.push(("tokenizer.ggml.tokens".to_owned(), string_array(texts)));
    keys.push(("tokenizer.ggml.token_type".to_owned(), Value::Array(types)));
    Ok(keys)
}

fn model_keys(cfg: &Qwen3Config, name: &str) -> Vec<(String, Value)> {
    let arch = match cfg.moe {
        Some(_) => super::config::MOE_ARCHITECTURE,
        None => super::config::ARCHITECTURE,
    };
    let a = |k: &str| format!("{arch}.{k}");
    let mut keys = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(name.to_owned())),
        ("general.quantization_version".into(), Value::U32(2)),
        (a("block_count"), u32v(cfg.num_hidden_layers)),
        (a("context_length"), u32v(cfg.max_position_embeddings)),
        (a("embedding_length"), u32v(cfg.hidden_size)),
        (a("feed_forward_length"), u32v(cfg.intermediate_size)),
        (a("attention.head_count"), u32v(cfg.num_attention_heads)),
        (a("attention.head_count_kv"), u32v(cfg.num_key_value_heads)),
        (a("attention.key_length"), u32v(cfg.head_dim)),
        (a("attention.value_length"), u32v(cfg.head_dim)),
        (a("rope.freq_base"), Value::F32(cfg.rope_theta as f32)),
        (
            a("attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
    ];
    if let Some(moe) = &cfg.moe {
        keys.extend([
            (a("expert_count"), u32v(moe.num_experts)),
            (a("expert_used_count"), u32v(moe.num_experts_per_tok)),
            (
                a("expert_feed_forward_length"),
                u32v(moe.moe_intermediate_size),
            ),
            // llama.cpp renormalizes Qwen3-MoE's weights regardless; this says so for readers
            // that look.
            (a("expert_weights_norm"), Value::Bool(moe.norm_topk_prob)),
        ]);
    }
    keys
}

/// Converts the checkpoint in `dir` to `out`, each tensor in the type `plan` picks.
pub fn write_gguf(dir: &Path, out: &Path, plan: TypePlan) -> Result<()> {
    let files = CheckpointFiles::from_dir(dir)?;
    let cfg = Qwen3Config::from_file(&files.config)?;
    // SAFETY: read-only mapping of the checkpoint being converted.
    let st = unsafe { MmapedSafetensors::multi(&files.weights) }
        .map_err(|e| Error::checkpoint(dir, format!("cannot map the weights: {e}")))?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, parts) in gguf_tensors(st.tensors().into_iter().map(|(n, _)| n)) {
        let fail = |e: candle_core::Error| Error::checkpoint(dir, format!("tensor {name}: {e}"));
        let loaded = parts
            .iter()
            .map(|hf| st.load(hf, &Device::Cpu))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(fail)?;
        let tensor = match names::expert_slice(&parts[0]) {
            // Experts stack into one `[experts, out, in]` tensor, as llama.cpp's converter does.
            Some(_) => Tensor::stack(&loaded, 0).map_err(fail)?,
            None => loaded[0].clone(),
        };
        let kind = plan.type_of(&name, tensor.dims(), cfg.num_hidden_layers);
        let tensor = if kind.is_float() {
            tensor.to_dtype(DType::F32).map_err(fail)?
        } else {
            tensor
        };
        let candle = kind
            .candle()
            .ok_or_else(|| Error::Internal(format!("cannot write {kind}")))?;
        let q = QTensor::quantize(&tensor, candle).map_err(fail)?;
        tensors.push((name, q));
    }
    // A fixed name: the same checkpoint gives the same bytes wherever it sits.
    let mut keys = model_keys(
        &cfg,
        if cfg.moe.is_some() {
            "Qwen3-MoE"
        } else {
            "Qwen3"
        },
    );
    keys.extend(vocabulary(&files, cfg.vocab_size)?);
    let metadata: Vec<(&str, &Value)> = keys.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let partial = out.with_extension("gguf.partial");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&partial).map_err(|e| Error::checkpoint(&partial, e.to_string()))?,
    );
    gguf_file::write(&mut file, &metadata, &refs)
        .map_err(|e| Error::checkpoint(&partial, format!("cannot write: {e}")))?;
    drop(file);
    std::fs::rename(&partial, out).map_err(|e| Error::checkpoint(out, e.to_string()))?;
    Ok(())
}

/// The GGUF tensors of a checkpoint's tensors, in llama.cpp's order, each with the checkpoint
/// tensors it is made of: one, or every expert's projection in expert order.
fn gguf_tensors(hf_names: impl Iterator<Item = String>) -> Vec<(String, Vec<String>)> {
    let mut grouped: std::collections::BTreeMap<String, Vec<(usize, String)>> = Default::default();
    let mut order: Vec<(String, (usize, usize, String))> = Vec::new();
    for hf in hf_names {
        let (name, expert) = match names::expert_slice(&hf) {
            Some((stacked, e)) => (stacked, e),
            None => match names::to_gguf(&hf) {
                Some(name) => (name, 0),
                None => continue,
            },
        };
        let parts = grouped.entry(name.clone()).or_default();
        if parts.is_empty() {
            // Experts sort among their layer's tensors by the projection's name.
            let key = tensor_order(&hf.replace(&format!(".experts.{expert}."), ".experts."));
            order.push((name, key));
        }
        parts.push((expert, hf));
    }
    order.sort_by(|a, b| a.1.cmp(&b.1));
    order
        .into_iter()
        .map(|(name, _)| {
            let mut parts = grouped.remove(&name).unwrap_or_default();
            parts.sort();
            (name, parts.into_iter().map(|(_, hf)| hf).collect())
        })
        .collect()
}

/// llama.cpp's order: the embedding, then layer by layer, then the output norm and head.
fn tensor_order(name: &str) -> (usize, usize, String) {
    match name.strip_prefix("model.layers.") {
        Some(rest) => {
            let (i, tail) = rest.split_once('.').unwrap_or((rest, ""));
            (1, i.parse().unwrap_or(0), tail.to_owned())
        }
        None if name.starts_with("model.embed_tokens") => (0, 0, String::new()),
        None => (2, 0, name.to_owned()),
    }
}
