//! Qwen3's `config.json`, as transformers writes it (both the older top-level `rope_theta` layout
//! and the newer `rope_parameters` block).

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

pub const QWEN3_ARCHITECTURE: &str = "Qwen3ForCausalLM";
/// The mixture-of-experts variant (Qwen3-30B-A3B, Qwen3-Coder-30B-A3B).
pub const QWEN3_MOE_ARCHITECTURE: &str = "Qwen3MoeForCausalLM";

/// The fields of config.json the model needs, resolved (defaults applied, rope found).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    /// The dtype the checkpoint says it was trained/stored in (`torch_dtype` or `dtype`).
    pub stored_dtype: Option<String>,
    /// Block-scaled FP8 weights (`quantization_config.quant_method = "fp8"`): the block shape
    /// `[rows, cols]` of one `weight_scale_inv` entry.
    pub fp8_block: Option<[usize; 2]>,
    /// Sparse feed-forward layers, for `Qwen3MoeForCausalLM`.
    pub moe: Option<MoeConfig>,
}

/// The mixture-of-experts fields of a `Qwen3MoeForCausalLM` config, as transformers reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    pub num_experts: usize,
    pub num_experts_per_tok: usize,
    /// Width of one expert's gate/up projections.
    pub moe_intermediate_size: usize,
    /// Renormalize the top-k routing weights to sum to 1 (Qwen3-30B-A3B: true).
    pub norm_topk_prob: bool,
    /// Every `decoder_sparse_step`-th layer is sparse (layer `i` when `(i + 1) % step == 0`).
    pub decoder_sparse_step: usize,
    /// Layers that keep a dense MLP of `intermediate_size` whatever the step says.
    pub mlp_only_layers: Vec<usize>,
}

impl MoeConfig {
    /// The sizes every reader of a MoE (config.json or GGUF metadata) must find consistent in a
    /// model of `layers` layers.
    pub fn check(&self, layers: usize) -> std::result::Result<(), String> {
        if self.num_experts_per_tok == 0 || self.num_experts_per_tok > self.num_experts {
            return Err(format!(
                "num_experts_per_tok {} must be between 1 and num_experts {}",
                self.num_experts_per_tok, self.num_experts
            ));
        }
        if self.moe_intermediate_size == 0 || self.decoder_sparse_step == 0 {
            return Err("moe_intermediate_size and decoder_sparse_step must be positive".into());
        }
        if let Some(layer) = self.mlp_only_layers.iter().find(|&&l| l >= layers) {
            return Err(format!(
                "mlp_only_layers names layer {layer} of a {layers}-layer model"
            ));
        }
        Ok(())
    }

    /// Whether layer `i` routes its tokens to experts (transformers' `Qwen3MoeDecoderLayer` rule).
    pub fn is_sparse(&self, layer: usize) -> bool {
        !self.mlp_only_layers.contains(&layer)
            && self.num_experts > 0
            && (layer + 1).is_multiple_of(self.decoder_sparse_step)
    }
}

#[derive(Debug, Deserialize)]
struct RawQuantization {
    quant_method: String,
    fmt: Option<String>,
    activation_scheme: Option<String>,
    weight_block_size: Option<Vec<usize>>,
}

impl RawQuantization {
    /// The FP8 block shape; any other scheme is an error naming it.
    fn fp8_block(&self) -> std::result::Result<[usize; 2], String> {
        if self.quant_method != "fp8" {
            return Err(format!(
                "quantization_config.quant_method {:?} is not supported (fp8 is; GGUF files carry their own)",
                self.quant_method
            ));
        }
        if let Some(fmt) = &self.fmt
            && fmt != "e4m3"
        {
            return Err(format!("fp8 format {fmt:?} is not supported (e4m3 is)"));
        }
        if let Some(scheme) = &self.activation_scheme
            && scheme != "dynamic"
        {
            return Err(format!(
                "fp8 activation_scheme {scheme:?} is not supported (dynamic is)"
            ));
        }
        match self.weight_block_size.as_deref() {
            Some(&[rows, cols]) if rows > 0 && cols > 0 => Ok([rows, cols]),
            other => Err(format!(
                "fp8 weight_block_size {other:?} is not supported (per-block scales [rows, cols] are)"
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawRopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    architectures: Option<Vec<String>>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: usize,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_parameters: Option<RawRopeParameters>,
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    hidden_act: Option<String>,
    torch_dtype: Option<String>,
    dtype: Option<String>,
    quantization_config: Option<RawQuantization>,
    num_experts: Option<usize>,
    num_experts_per_tok: Option<usize>,
    moe_intermediate_size: Option<usize>,
    norm_topk_prob: Option<bool>,
    decoder_sparse_step: Option<usize>,
    #[serde(default)]
    mlp_only_layers: Vec<usize>,
}

impl RawConfig {
    /// The MoE block of a `Qwen3MoeForCausalLM` config; transformers' defaults where a field is
    /// absent (8 of 128 experts, width 768, step 1, renormalized weights off).
    fn moe(&self, is_moe: bool) -> std::result::Result<Option<MoeConfig>, String> {
        if !is_moe {
            return Ok(None);
        }
        let moe = MoeConfig {
            num_experts: self.num_experts.unwrap_or(128),
            num_experts_per_tok: self.num_experts_per_tok.unwrap_or(8),
            moe_intermediate_size: self.moe_intermediate_size.unwrap_or(768),
            norm_topk_prob: self.norm_topk_prob.unwrap_or(false),
            decoder_sparse_step: self.decoder_sparse_step.unwrap_or(1),
            mlp_only_layers: self.mlp_only_layers.clone(),
        };
        moe.check(self.num_hidden_layers)?;
        Ok(Some(moe))
    }
}

/// Reads the config file at `path` and makes of its text what `parse` does; either failure is
/// an error naming the file.
pub fn read_config<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> std::result::Result<T, String>,
) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::checkpoint(path, format!("cannot read: {e}")))?;
    parse(&text).map_err(|message| Error::checkpoint(path, message))
}

impl Qwen3Config {
    pub fn from_file(path: &Path) -> Result<Self> {
        read_config(path, Self::from_json)
    }

    /// Parses and checks config.json text; the error is a sentence without the path.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| format!("invalid config JSON: {e}"))?;
        let is_moe = match &raw.architectures {
            Some(archs) if archs.iter().any(|a| a == QWEN3_MOE_ARCHITECTURE) => true,
            Some(archs) if !archs.iter().any(|a| a == QWEN3_ARCHITECTURE) => {
                return Err(format!(
                    "architecture {archs:?} is not supported: tealight runs {QWEN3_ARCHITECTURE} and {QWEN3_MOE_ARCHITECTURE}"
                ));
            }
            _ => false,
        };
        if let Some(act) = &raw.hidden_act
            && act != "silu"
        {
            return Err(format!(
                "hidden_act {act:?} is not supported (expected \"silu\")"
            ));
        }
        let rope_type = raw
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_type.clone())
            .or_else(|| {
                raw.rope_scaling
                    .as_ref()
                    .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
                    .and_then(|t| t.as_str().map(str::to_owned))
            });
        if let Some(kind) = rope_type
            && kind != "default"
        {
            return Err(format!(
                "rope type {kind:?} is not supported (only the default RoPE is)"
            ));
        }
        let rope_theta = raw
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_theta)
            .or(raw.rope_theta)
            .unwrap_or(10_000.0);
        for (name, value) in [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("intermediate_size", raw.intermediate_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("max_position_embeddings", raw.max_position_embeddings),
        ] {
            if value == 0 {
                return Err(format!("{name} must be positive, got 0"));
            }
        }
        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if raw.num_attention_heads == 0 || num_key_value_heads == 0 {
            return Err("num_attention_heads and num_key_value_heads must be positive".into());
        }
        if !raw.num_attention_heads.is_multiple_of(num_key_value_heads) {
            return Err(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({num_key_value_heads})",
                raw.num_attention_heads
            ));
        }
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size / raw.num_attention_heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {head_dim} must be even and positive"));
        }
        let fp8_block = raw
            .quantization_config
            .as_ref()
            .map(RawQuantization::fp8_block)
            .transpose()?;
        let moe = raw.moe(is_moe)?;
        Ok(Self {
            moe,
            fp8_block,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings: raw.max_position_embeddings,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            tie_word_embeddings: raw.tie_word_embeddings,
            attention_bias: raw.attention_bias,
            stored_dtype: raw.torch_dtype.or(raw.dtype),
        })
    }

    /// Query heads that share one key/value head.
    pub fn kv_group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Whether layer `i` has a sparse (expert-routed) feed-forward block.
    pub fn is_sparse_layer(&self, layer: usize) -> bool {
        self.moe.as_ref().is_some_and(|m| m.is_sparse(layer))
    }

    /// Bytes of K+V one token occupies across all layers at `dtype_size` bytes per element.
    pub fn kv_bytes_per_token(&self, dtype_size: usize) -> usize {
        2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * dtype_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"architectures":["Qwen3ForCausalLM"],"vocab_size":1000,"hidden_size":64,
        "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
        "max_position_embeddings":512,"rms_norm_eps":1e-6"#;

    fn parse(extra: &str) -> std::result::Result<Qwen3Config, String> {
        Qwen3Config::from_json(&format!("{BASE}{extra}}}"))
    }

    #[test]
    fn top_level_rope_theta_and_default_head_dim() {
        let c = parse(r#","rope_theta":1000000.0,"tie_word_embeddings":true"#).unwrap();
        assert_eq!(c.rope_theta, 1e6);
        assert_eq!(c.head_dim, 16);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.kv_group_size(), 2);
    }

    #[test]
    fn rope_parameters_block_and_explicit_head_dim() {
        let c = parse(r#","head_dim":32,"rope_parameters":{"rope_theta":5000.0,"rope_type":"default"},"dtype":"bfloat16""#)
            .unwrap();
        assert_eq!(c.rope_theta, 5000.0);
        assert_eq!(c.head_dim, 32);
        assert!(!c.tie_word_embeddings);
        assert_eq!(c.stored_dtype.as_deref(), Some("bfloat16"));
    }

    #[test]
    fn rejects_other_architectures_and_rope_types() {
        let other = BASE.replace("Qwen3ForCausalLM", "LlamaForCausalLM") + "}";
        let err = Qwen3Config::from_json(&other).unwrap_err();
        assert!(err.contains("LlamaForCausalLM"), "{err}");
        let err = parse(r#","rope_scaling":{"rope_type":"yarn","factor":4.0}"#).unwrap_err();
        assert!(err.contains("yarn"), "{err}");
    }

    #[test]
    fn zero_sizes_are_refused_by_name() {
        for field in ["num_hidden_layers", "hidden_size", "vocab_size"] {
            let text = BASE.replace(
                &format!("\"{field}\":"),
                &format!("\"{field}\":0,\"ignored_{field}\":"),
            ) + "}";
            let err = Qwen3Config::from_json(&text).unwrap_err();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn fp8_block_scales_and_other_schemes() {
        let c = parse(r#","quantization_config":{"quant_method":"fp8","fmt":"e4m3","activation_scheme":"dynamic","weight_block_size":[128,128]}"#).unwrap();
        assert_eq!(c.fp8_block, Some([128, 128]));
        assert_eq!(parse("").unwrap().fp8_block, None);
        let err = parse(r#","quantization_config":{"quant_method":"awq"}"#).unwrap_err();
        assert!(err.contains("awq"), "{err}");
        let err = parse(r#","quantization_config":{"quant_method":"fp8","activation_scheme":"static","weight_block_size":[128,128]}"#).unwrap_err();
        assert!(err.contains("static"), "{err}");
        assert!(parse(r#","quantization_config":{"quant_method":"fp8"}"#).is_err());
    }

    #[test]
    fn moe_fields_as_transformers_reads_them() {
        let moe = |extra: &str| {
            Qwen3Config::from_json(&format!(
                "{}{extra}}}",
                BASE.replace("Qwen3ForCausalLM", "Qwen3MoeForCausalLM")
            ))
        };
        let c = moe(r#","num_experts":16,"num_experts_per_tok":4,"moe_intermediate_size":32,"norm_topk_prob":true,"decoder_sparse_step":1,"mlp_only_layers":[1]"#).unwrap();
        let m = c.moe.clone().unwrap();
        assert_eq!(
            (
                m.num_experts,
                m.num_experts_per_tok,
                m.moe_intermediate_size
            ),
            (16, 4, 32)
        );
        assert!(m.norm_topk_prob);
        assert!(c.is_sparse_layer(0) && !c.is_sparse_layer(1));
        let c = moe(r#","decoder_sparse_step":2"#).unwrap();
        assert!(!c.is_sparse_layer(0) && c.is_sparse_layer(1));
        assert_eq!(c.moe.unwrap().num_experts, 128);
        assert!(moe(r#","num_experts":4,"num_experts_per_tok":5"#).is_err());
        assert!(
            moe(r#","mlp_only_layers":[7]"#)
                .unwrap_err()
                .contains("layer 7")
        );
        assert!(moe(r#","decoder_sparse_step":0"#).is_err());
        assert_eq!(parse("").unwrap().moe, None);
        assert!(!parse("").unwrap().is_sparse_layer(0));
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        assert!(
            Qwen3Config::from_json("{not json")
                .unwrap_err()
                .contains("invalid config JSON")
        );
        assert!(Qwen3Config::from_json(r#"{"vocab_size":1}"#).is_err());
    }
}
