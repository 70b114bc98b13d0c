//! The model's shape from a GGUF file's `qwen3.*` metadata (llama.cpp's keys), as the
//! [`Qwen3Config`] a `config.json` would give.

use super::GgufFile;
use super::types::GgmlType;
use crate::error::Result;
use crate::weights::config::{MoeConfig, Qwen3Config};
use candle_core::quantized::gguf_file::Value;

pub const ARCHITECTURE: &str = "qwen3";
/// llama.cpp's name for Qwen3-MoE (`Qwen3MoeForCausalLM`).
pub const MOE_ARCHITECTURE: &str = "qwen3moe";

/// An unsigned metadata value of any integer width.
fn unsigned(value: &Value) -> Option<u64> {
    match *value {
        Value::U8(v) => Some(v.into()),
        Value::U16(v) => Some(v.into()),
        Value::U32(v) => Some(v.into()),
        Value::U64(v) => Some(v),
        Value::I8(v) => u64::try_from(v).ok(),
        Value::I16(v) => u64::try_from(v).ok(),
        Value::I32(v) => u64::try_from(v).ok(),
        Value::I64(v) => u64::try_from(v).ok(),
        _ => None,
    }
}

fn float(value: &Value) -> Option<f64> {
    match *value {
        Value::F32(v) => Some(v.into()),
        Value::F64(v) => Some(v),
        _ => unsigned(value).map(|v| v as f64),
    }
}

pub fn architecture(file: &GgufFile) -> Result<String> {
    let arch = match file.get("general.architecture") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(file.error("general.architecture is not a string")),
        None => return Err(file.error("no general.architecture: not a model file")),
    };
    if arch != ARCHITECTURE && arch != MOE_ARCHITECTURE {
        return Err(file.error(format!(
            "architecture {arch:?} is not supported: tealight runs {ARCHITECTURE:?} (Qwen3) and {MOE_ARCHITECTURE:?} (Qwen3-MoE)"
        )));
    }
    Ok(arch)
}

/// Reads and checks the shape. Tied embeddings: the file has no `output.weight`.
pub fn qwen3_config(file: &GgufFile) -> Result<Qwen3Config> {
    let arch = architecture(file)?;
    let key = |k: &str| format!("{arch}.{k}");
    let get = |k: &str| -> Result<u64> {
        let k = key(k);
        let v = file
            .get(&k)
            .ok_or_else(|| file.error(format!("missing metadata {k}")))?;
        unsigned(v).ok_or_else(|| file.error(format!("metadata {k} is not an unsigned integer")))
    };
    let get_opt = |k: &str| file.get(&key(k)).and_then(unsigned);
    if let Some(Value::String(kind)) = file.get(&key("rope.scaling.type"))
        && kind != "none"
    {
        return Err(file.error(format!(
            "rope scaling {kind:?} is not supported (only the default RoPE is)"
        )));
    }
    let embed = file
        .tensor("token_embd.weight")
        .ok_or_else(|| file.error("missing tensor token_embd.weight"))?;
    let [vocab_size, hidden_size] = embed.dims[..] else {
        return Err(file.error(format!(
            "tensor token_embd.weight has dims {:?}, expected 2",
            embed.dims
        )));
    };
    let heads = get("attention.head_count")? as usize;
    let kv_heads = get_opt("attention.head_count_kv").map_or(heads, |v| v as usize);
    let hidden = get("embedding_length")? as usize;
    if hidden != hidden_size {
        return Err(file.error(format!(
            "{} is {hidden} but token_embd.weight is {vocab_size}x{hidden_size}",
            key("embedding_length")
        )));
    }
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(file.error(format!(
            "attention heads {heads} / key-value heads {kv_heads} do not divide"
        )));
    }
    let head_dim = get_opt("attention.key_length").map_or(hidden / heads, |v| v as usize);
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(file.error(format!(
            "head dimension {head_dim} must be even and positive"
        )));
    }
    let eps = file
        .get(&key("attention.layer_norm_rms_epsilon"))
        .and_then(float)
        .ok_or_else(|| {
            file.error(format!(
                "missing metadata {}",
                key("attention.layer_norm_rms_epsilon")
            ))
        })?;
    let stored_dtype = match embed.dtype {
        GgmlType::BF16 => Some("bfloat16".to_owned()),
        GgmlType::F16 => Some("float16".to_owned()),
        _ => None,
    };
    let layers = get("block_count")? as usize;
    let moe = if arch == MOE_ARCHITECTURE {
        Some(moe_config(file, &arch, layers)?)
    } else {
        None
    };
    // A Qwen3-MoE file may leave the (unused) dense width out.
    let intermediate_size = match (get_opt("feed_forward_length"), &moe) {
        (Some(width), _) => width as usize,
        (None, Some(moe)) => moe.moe_intermediate_size,
        (None, None) => get("feed_forward_length")? as usize,
    };
    Ok(Qwen3Config {
        vocab_size,
        hidden_size,
        intermediate_size,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        max_position_embeddings: get("context_length")? as usize,
        rms_norm_eps: eps,
        rope_theta: file
            .get(&key("rope.freq_base"))
            .and_then(float)
            .unwrap_or(10_000.0),
        tie_word_embeddings: file.tensor("output.weight").is_none(),
        attention_bias: file.tensor("blk.0.attn_q.bias").is_some(),
        stored_dtype,
        fp8_block: None,
        moe,
    })
}

/// The expert keys of a `qwen3moe` file. llama.cpp has no per-layer schedule: a layer is
/// sparse when it has a router (`blk.{i}.ffn_gate_inp`), else it keeps a dense MLP (listed in
/// `mlp_only_layers`). llama.cpp always renormalizes Qwen3-MoE's top-k weights; a file that
/// says otherwise (`expert_weights_norm` false) is read as it says.
fn moe_config(file: &GgufFile, arch: &str, layers: usize) -> Result<MoeConfig> {
    let get = |k: &str| -> Result<usize> {
        let k = format!("{arch}.{k}");
        file.get(&k)
            .and_then(unsigned)
            .map(|v| v as usize)
            .ok_or_else(|| file.error(format!("missing metadata {k}")))
    };
    let moe = MoeConfig {
        num_experts: get("expert_count")?,
        num_experts_per_tok: get("expert_used_count")?,
        moe_intermediate_size: get("expert_feed_forward_length")?,
        norm_topk_prob: !matches!(
            file.get(&format!("{arch}.expert_weights_norm")),
            Some(Value::Bool(false))
        ),
        decoder_sparse_step: 1,
        mlp_only_layers: (0..layers)
            .filter(|i| {
                file.tensor(&format!("blk.{i}.ffn_gate_inp.weight"))
                    .is_none()
            })
            .collect(),
    };
    moe.check(layers).map_err(|e| {
        file.error(format!(
            "{arch} expert metadata (expert_count, expert_used_count, expert_feed_forward_length): {e}"
        ))
    })?;
    Ok(moe)
}
