//! Deterministic Qwen3 checkpoints with random weights, bit-identical to
//! `scripts/fixtures/synthetic_qwen3.py`. Tests and benchmarks rebuild checkpoints of any shape from a
//! seed instead of committing them; the reference script loads the same files in transformers.

use crate::error::{Error, Result};
use crate::weights::config::MoeConfig;
use serde_json::json;
use std::io::Write;
use std::path::Path;

pub const VOCAB: usize = 151_936;
pub const MAX_POSITIONS: usize = 40_960;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    F32,
    F16,
    Bf16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigLayout {
    /// `rope_theta` and `torch_dtype` at the top level, as Qwen3's hub configs have them.
    Legacy,
    /// `rope_parameters` and `dtype`, as transformers 5 writes them.
    RopeParameters,
}

/// A checkpoint shape; the named constructors match `SHAPES` in the Python script.
#[derive(Debug, Clone)]
pub struct SyntheticSpec {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub tie_word_embeddings: bool,
    pub rope_theta: f64,
    pub layout: ConfigLayout,
    pub storage: Storage,
    pub shards: usize,
    pub seed: u64,
    /// Sparse layers: a `Qwen3MoeForCausalLM` checkpoint.
    pub moe: Option<MoeConfig>,
}

impl SyntheticSpec {
    /// The embedded default model in `models/qwen3-tiny` (see [`super::embedded`]).
    pub fn tiny() -> Self {
        Self {
            hidden_size: 128,
            intermediate_size: 384,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 32,
            tie_word_embeddings: true,
            rope_theta: 1_000_000.0,
            layout: ConfigLayout::Legacy,
            storage: Storage::Bf16,
            shards: 1,
            seed: 1,
            moe: None,
        }
    }

    /// Untied, head_dim ≠ hidden/heads, rope under `rope_parameters`, f16, two shards.
    pub fn tiny_untied() -> Self {
        Self {
            hidden_size: 64,
            intermediate_size: 160,
            num_hidden_layers: 3,
            num_attention_heads: 4,
            num_key_value_heads: 1,
            head_dim: 48,
            tie_word_embeddings: false,
            rope_theta: 10_000.0,
            layout: ConfigLayout::RopeParameters,
            storage: Storage::F16,
            shards: 2,
            seed: 2,
            moe: None,
        }
    }

    /// Rows of 256 (GGML's K-quant super-block), so every matrix can be K-quantized: the GGUF
    /// tests' model.
    pub fn tiny_k() -> Self {
        Self {
            hidden_size: 256,
            intermediate_size: 512,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 64,
            tie_word_embeddings: true,
            rope_theta: 1_000_000.0,
            layout: ConfigLayout::Legacy,
            storage: Storage::Bf16,
            shards: 1,
            seed: 5,
            moe: None,
        }
    }

    /// Qwen3-0.6B's shape.
    pub fn qwen3_0_6b() -> Self {
        Self {
            hidden_size: 1024,
            intermediate_size: 3072,
            num_hidden_layers: 28,
            num_attention_heads: 16,
            num_key_value_heads: 8,
            head_dim: 128,
            tie_word_embeddings: true,
            rope_theta: 1_000_000.0,
            layout: ConfigLayout::Legacy,
            storage: Storage::Bf16,
            shards: 1,
            seed: 3,
            moe: None,
        }
    }

    /// A small MoE with dense layers between sparse ones: `decoder_sparse_step` 2 makes layers
    /// 1, 3 and 5 sparse and `mlp_only_layers` turns 3 back to a dense MLP. Renormalized top-2
    /// of 8 experts.
    pub fn moe_tiny() -> Self {
        Self {
            intermediate_size: 256,
            num_hidden_layers: 6,
            seed: 11,
            moe: Some(MoeConfig {
                num_experts: 8,
                num_experts_per_tok: 2,
                moe_intermediate_size: 64,
                norm_topk_prob: true,
                decoder_sparse_step: 2,
                mlp_only_layers: vec![3],
            }),
            ..Self::tiny()
        }
    }

    /// `tiny-untied`'s layout (untied, f16 on disk in two shards) with every layer sparse: top-4
    /// of 16 experts without renormalization.
    pub fn moe_tiny_b() -> Self {
        Self {
            seed: 12,
            moe: Some(MoeConfig {
                num_experts: 16,
                num_experts_per_tok: 4,
                moe_intermediate_size: 32,
                norm_topk_prob: false,
                decoder_sparse_step: 1,
                mlp_only_layers: vec![],
            }),
            ..Self::tiny_untied()
        }
    }

    /// `tiny-k` with every layer sparse (rows of 256, so every matrix K-quantizes): the MoE GGUF
    /// tests' model.
    pub fn moe_tiny_k() -> Self {
        Self {
            seed: 13,
            moe: Some(MoeConfig {
                num_experts: 8,
                num_experts_per_tok: 2,
                moe_intermediate_size: 256,
                norm_topk_prob: true,
                decoder_sparse_step: 1,
                mlp_only_layers: vec![],
            }),
            ..Self::tiny_k()
        }
    }

    /// Qwen3-30B-A3B's per-layer shapes (128 experts, 8 active, hidden 2048, expert width 768,
    /// 32/4 heads) with `layers` layers instead of 48: the MoE benchmarks' model.
    pub fn qwen3_30b_a3b(layers: usize) -> Self {
        Self {
            hidden_size: 2048,
            intermediate_size: 6144,
            num_hidden_layers: layers,
            num_attention_heads: 32,
            num_key_value_heads: 4,
            head_dim: 128,
            tie_word_embeddings: false,
            rope_theta: 1_000_000.0,
            layout: ConfigLayout::Legacy,
            storage: Storage::Bf16,
            shards: 1,
            seed: 14,
            moe: Some(MoeConfig {
                num_experts: 128,
                num_experts_per_tok: 8,
                moe_intermediate_size: 768,
                norm_topk_prob: true,
                decoder_sparse_step: 1,
                mlp_only_layers: vec![],
            }),
        }
    }

    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny()),
            "tiny-untied" => Some(Self::tiny_untied()),
            "tiny-k" => Some(Self::tiny_k()),
            "0.6b" => Some(Self::qwen3_0_6b()),
            "moe-tiny" => Some(Self::moe_tiny()),
            "moe-tiny-b" => Some(Self::moe_tiny_b()),
            "moe-tiny-k" => Some(Self::moe_tiny_k()),
            "30b-a3b-4l" => Some(Self::qwen3_30b_a3b(4)),
            _ => None,
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Norm,
    Embedding,
    Linear,
}

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    })
}

fn splitmix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn tensor_values(model_seed: u64, name: &str, shape: &[usize], kind: Kind) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let seed = model_seed ^ fnv1a64(name);
    let linear_scale = match kind {
        Kind::Linear => (3.0f64 / shape[1] as f64).sqrt() as f32,
        _ => 1.0,
    };
    (0..n as u64)
        .map(|i| {
            let u = (splitmix(seed, i) >> 40) as f32 * (1.0 / (1u32 << 24) as f32);
            let centered = u * 2.0 - 1.0;
            match kind {
                Kind::Norm => 1.0 + centered * 0.25,
                Kind::Embedding => centered * 0.25,
                Kind::Linear => centered * linear_scale,
            }
        })
        .collect()
}

fn tensor_specs(s: &SyntheticSpec) -> Vec<(String, Vec<usize>, Kind)> {
    let (h, d) = (s.hidden_size, s.head_dim);
    let (q, kv, inter) = (
        s.num_attention_heads * d,
        s.num_key_value_heads * d,
        s.intermediate_size,
    );
    let mut specs = vec![(
        "model.embed_tokens.weight".to_owned(),
        vec![VOCAB, h],
        Kind::Embedding,
    )];
    for i in 0..s.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let t = |n: &str, shape: Vec<usize>, k| (format!("{p}.{n}"), shape, k);
        specs.extend([
            t("input_layernorm.weight", vec![h], Kind::Norm),
            t("self_attn.q_proj.weight", vec![q, h], Kind::Linear),
            t("self_attn.k_proj.weight", vec![kv, h], Kind::Linear),
            t("self_attn.v_proj.weight", vec![kv, h], Kind::Linear),
            t("self_attn.o_proj.weight", vec![h, q], Kind::Linear),
            t("self_attn.q_norm.weight", vec![d], Kind::Norm),
            t("self_attn.k_norm.weight", vec![d], Kind::Norm),
            t("post_attention_layernorm.weight", vec![h], Kind::Norm),
        ]);
        match &s.moe {
            Some(moe) if moe.is_sparse(i) => {
                let (e, w) = (moe.num_experts, moe.moe_intermediate_size);
                specs.push(t("mlp.gate.weight", vec![e, h], Kind::Linear));
                for x in 0..e {
                    specs.extend([
                        t(
                            &format!("mlp.experts.{x}.gate_proj.weight"),
                            vec![w, h],
                            Kind::Linear,
                        ),
                        t(
                            &format!("mlp.experts.{x}.up_proj.weight"),
                            vec![w, h],
                            Kind::Linear,
                        ),
                        t(
                            &format!("mlp.experts.{x}.down_proj.weight"),
                            vec![h, w],
                            Kind::Linear,
                        ),
                    ]);
                }
            }
            _ => specs.extend([
                t("mlp.gate_proj.weight", vec![inter, h], Kind::Linear),
                t("mlp.up_proj.weight", vec![inter, h], Kind::Linear),
                t("mlp.down_proj.weight", vec![h, inter], Kind::Linear),
            ]),
        }
    }
    specs.push(("model.norm.weight".to_owned(), vec![h], Kind::Norm));
    if !s.tie_word_embeddings {
        specs.push(("lm_head.weight".to_owned(), vec![VOCAB, h], Kind::Embedding));
    }
    specs
}

fn encode(values: &[f32], storage: Storage) -> (Vec<u8>, &'static str) {
    match storage {
        Storage::F32 => (values.iter().flat_map(|v| v.to_le_bytes()).collect(), "F32"),
        Storage::F16 => (
            values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            "F16",
        ),
        Storage::Bf16 => (
            values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
            "BF16",
        ),
    }
}

/// Writes a safetensors file with the same bytes as the Python writer (header order, padding).
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, &str, Vec<u8>)]) -> Result<()> {
    let mut header = String::from("{");
    let mut offset = 0usize;
    for (name, shape, tag, data) in tensors {
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{tag}\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}},",
            dims.join(","),
            offset + data.len()
        ));
        offset += data.len();
    }
    header.push_str("\"__metadata__\":{\"format\":\"pt\"}}");
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    file.write_all(&(header.len() as u64).to_le_bytes())?;
    file.write_all(header.as_bytes())?;
    for (.., data) in tensors {
        file.write_all(data)?;
    }
    file.flush()?;
    Ok(())
}

fn config_json(s: &SyntheticSpec) -> serde_json::Value {
    let storage = match s.storage {
        Storage::F32 => "float32",
        Storage::F16 => "float16",
        Storage::Bf16 => "bfloat16",
    };
    let mut cfg = json!({
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": false,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "head_dim": s.head_dim,
        "hidden_act": "silu",
        "hidden_size": s.hidden_size,
        "intermediate_size": s.intermediate_size,
        "max_position_embeddings": MAX_POSITIONS,
        "max_window_layers": s.num_hidden_layers,
        "model_type": "qwen3",
        "num_attention_heads": s.num_attention_heads,
        "num_hidden_layers": s.num_hidden_layers,
        "num_key_value_heads": s.num_key_value_heads,
        "rms_norm_eps": 1e-6,
        "sliding_window": null,
        "tie_word_embeddings": s.tie_word_embeddings,
        "use_sliding_window": false,
        "vocab_size": VOCAB,
    });
    let extra = match s.layout {
        ConfigLayout::Legacy => {
            json!({"rope_scaling": null, "rope_theta": s.rope_theta, "torch_dtype": storage})
        }
        ConfigLayout::RopeParameters => json!({
            "rope_parameters": {"rope_theta": s.rope_theta, "rope_type": "default"},
            "dtype": storage,
        }),
    };
    if let (Some(cfg), Some(extra)) = (cfg.as_object_mut(), extra.as_object()) {
        cfg.extend(extra.clone());
    }
    if let (Some(moe), Some(cfg)) = (&s.moe, cfg.as_object_mut()) {
        let fields = json!({
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            "num_experts": moe.num_experts,
            "num_experts_per_tok": moe.num_experts_per_tok,
            "moe_intermediate_size": moe.moe_intermediate_size,
            "norm_topk_prob": moe.norm_topk_prob,
            "decoder_sparse_step": moe.decoder_sparse_step,
            "mlp_only_layers": moe.mlp_only_layers,
            "output_router_logits": false,
            "router_aux_loss_coef": 0.001,
        });
        if let Some(fields) = fields.as_object() {
            cfg.extend(fields.clone());
        }
    }
    cfg
}

/// Qwen3's generation_config.json.
pub fn qwen3_generation_config() -> serde_json::Value {
    json!({
        "bos_token_id": 151643,
        "do_sample": true,
        "eos_token_id": [151645, 151643],
        "pad_token_id": 151643,
        "temperature": 0.6,
        "top_k": 20,
        "top_p": 0.95,
    })
}

/// Writes the weights, config.json and generation_config.json of `spec` into `dir`, and copies
/// the tokenizer files from `tokenizer_dir`.
pub fn write_checkpoint(spec: &SyntheticSpec, dir: &Path, tokenizer_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tensors = encoded_tensors(spec);
    if spec.shards <= 1 {
        write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    } else {
        let per = tensors.len().div_ceil(spec.shards);
        let mut weight_map = serde_json::Map::new();
        let mut total = 0usize;
        for (k, part) in tensors.chunks(per).enumerate() {
            let file = format!("model-{:05}-of-{:05}.safetensors", k + 1, spec.shards);
            write_safetensors(&dir.join(&file), part)?;
            for (name, .., data) in part {
                weight_map.insert(name.clone(), json!(file));
                total += data.len();
            }
        }
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        write_json(&dir.join("model.safetensors.index.json"), &index)?;
    }
    write_json(&dir.join("config.json"), &config_json(spec))?;
    write_json(
        &dir.join("generation_config.json"),
        &qwen3_generation_config(),
    )?;
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let from = tokenizer_dir.join(file);
        std::fs::copy(&from, dir.join(file))
            .map_err(|e| Error::checkpoint(&from, format!("cannot copy: {e}")))?;
    }
    Ok(())
}

/// Only the weights of a single-file checkpoint, written to `path`.
pub fn write_weights(spec: &SyntheticSpec, path: &Path) -> Result<()> {
    write_safetensors(path, &encoded_tensors(spec))
}

fn encoded_tensors(spec: &SyntheticSpec) -> Vec<(String, Vec<usize>, &'static str, Vec<u8>)> {
    tensor_specs(spec)
        .into_iter()
        .map(|(name, shape, kind)| {
            let (data, tag) = encode(&tensor_values(spec.seed, &name, &shape, kind), spec.storage);
            (name, shape, tag, data)
        })
        .collect()
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(path, text + "\n")?;
    Ok(())
}
