//! An EAGLE-3 draft head's config.json, as the published heads (e.g. `AngelSlim/Qwen3-8B_eagle3`)
//! and the engines that load them spell it: a one-layer Llama config with `draft_vocab_size`
//! and, optionally, `eagle_config.eagle_aux_hidden_state_layer_ids` and `target_hidden_size`.

use crate::error::Result;
use serde::Deserialize;
use std::path::Path;

/// The architecture names EAGLE-3 heads are published under.
pub const EAGLE3_ARCHITECTURES: [&str; 2] = ["LlamaForCausalLMEagle3", "Eagle3LlamaForCausalLM"];

/// The fields the head needs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Eagle3Config {
    pub hidden_size: usize,
    /// The served model's hidden size (the head's own unless the config says otherwise).
    pub target_hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    /// The served model's vocabulary: the head's embedding rows and the ids drafts map to.
    pub vocab_size: usize,
    /// The head's own output vocabulary (`d2t` maps it to the served model's ids).
    pub draft_vocab_size: usize,
    pub attention_bias: bool,
    /// The hidden state is normed before it becomes the residual (vLLM's flag; off in the
    /// published heads).
    pub norm_before_residual: bool,
    /// The served model's layers whose input hidden states the head reads, if the config names
    /// them (else vLLM's default, [`Self::aux_layer_ids`]).
    pub aux_layer_ids: Option<Vec<usize>>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    architectures: Option<Vec<String>>,
    hidden_size: usize,
    target_hidden_size: Option<usize>,
    intermediate_size: usize,
    num_hidden_layers: Option<usize>,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    vocab_size: usize,
    draft_vocab_size: Option<usize>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    norm_before_residual: bool,
    hidden_act: Option<String>,
    eagle_config: Option<RawEagleConfig>,
    eagle_aux_hidden_state_layer_ids: Option<Vec<usize>>,
}

#[derive(Debug, Deserialize)]
struct RawEagleConfig {
    eagle_aux_hidden_state_layer_ids: Option<Vec<usize>>,
    use_aux_hidden_state: Option<bool>,
}

impl Eagle3Config {
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::weights::config::read_config(path, Self::from_json)
    }

    /// Parses and checks the head's config.json text; the error is a sentence without the path.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| format!("invalid EAGLE-3 config JSON: {e}"))?;
        let archs = raw.architectures.unwrap_or_default();
        if !archs
            .iter()
            .any(|a| EAGLE3_ARCHITECTURES.contains(&a.as_str()))
        {
            return Err(format!(
                "architectures {archs:?} is not an EAGLE-3 head (expected one of {EAGLE3_ARCHITECTURES:?})"
            ));
        }
        if let Some(layers) = raw.num_hidden_layers.filter(|&n| n != 1) {
            return Err(format!(
                "num_hidden_layers {layers}: only one-layer EAGLE-3 heads are supported"
            ));
        }
        if raw.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("rope_scaling is not supported for EAGLE-3 heads".into());
        }
        if let Some(act) = raw.hidden_act.filter(|a| a != "silu") {
            return Err(format!("hidden_act {act:?}: only silu is supported"));
        }
        let eagle = raw.eagle_config.as_ref();
        if eagle.and_then(|e| e.use_aux_hidden_state) == Some(false) {
            return Err(
                "eagle_config.use_aux_hidden_state false: only EAGLE-3 heads that read the \
                 served model's hidden states are supported"
                    .into(),
            );
        }
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(format!(
                "num_attention_heads {heads} must be a positive multiple of num_key_value_heads {kv_heads}"
            ));
        }
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {head_dim} must be even and positive"));
        }
        let draft_vocab_size = raw.draft_vocab_size.unwrap_or(raw.vocab_size);
        if draft_vocab_size == 0 || draft_vocab_size > raw.vocab_size {
            return Err(format!(
                "draft_vocab_size {draft_vocab_size} must be between 1 and vocab_size {}",
                raw.vocab_size
            ));
        }
        let aux = eagle
            .and_then(|e| e.eagle_aux_hidden_state_layer_ids.clone())
            .or(raw.eagle_aux_hidden_state_layer_ids);
        if let Some(ids) = aux.as_ref().filter(|ids| ids.len() != 3) {
            return Err(format!(
                "eagle_aux_hidden_state_layer_ids {ids:?}: an EAGLE-3 head reads three layers"
            ));
        }
        Ok(Self {
            hidden_size: raw.hidden_size,
            target_hidden_size: raw.target_hidden_size.unwrap_or(raw.hidden_size),
            intermediate_size: raw.intermediate_size,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta: raw.rope_theta.unwrap_or(10_000.0),
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(8192),
            vocab_size: raw.vocab_size,
            draft_vocab_size,
            attention_bias: raw.attention_bias,
            norm_before_residual: raw.norm_before_residual,
            aux_layer_ids: aux,
        })
    }

    /// The served model's layers (of `target_layers`) whose input hidden states the head
    /// reads, ascending: the config's, else vLLM's default `(2, n / 2, n - 3)`.
    pub fn aux_layer_ids(&self, target_layers: usize) -> std::result::Result<Vec<usize>, String> {
        let mut ids = match &self.aux_layer_ids {
            Some(ids) => ids.clone(),
            None if target_layers >= 6 => vec![2, target_layers / 2, target_layers - 3],
            None => {
                return Err(format!(
                    "the served model has {target_layers} layers: too few for the default \
                     EAGLE-3 layers (2, n/2, n-3); name them in the head's \
                     eagle_config.eagle_aux_hidden_state_layer_ids"
                ));
            }
        };
        if let Some(bad) = ids.iter().find(|&&i| i >= target_layers) {
            return Err(format!(
                "eagle_aux_hidden_state_layer_ids names layer {bad}; the served model has \
                 {target_layers}"
            ));
        }
        ids.sort_unstable();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"architectures":["LlamaForCausalLMEagle3"],"hidden_size":4096,
        "intermediate_size":12288,"num_attention_heads":32,"num_key_value_heads":8,
        "num_hidden_layers":1,"rms_norm_eps":1e-6,"rope_theta":1000000,
        "max_position_embeddings":40960,"vocab_size":151936,"draft_vocab_size":32000,
        "hidden_act":"silu","rope_scaling":null"#;

    fn parse(extra: &str) -> std::result::Result<Eagle3Config, String> {
        Eagle3Config::from_json(&format!("{BASE}{extra}}}"))
    }

    #[test]
    fn a_published_qwen3_8b_head_and_vllms_default_layers() {
        let c = parse("").unwrap();
        assert_eq!(c.head_dim, 128);
        assert_eq!(c.num_key_value_heads, 8);
        assert_eq!(c.draft_vocab_size, 32000);
        assert_eq!(c.target_hidden_size, 4096);
        assert_eq!(c.aux_layer_ids(36).unwrap(), vec![2, 18, 33]);
        assert!(c.aux_layer_ids(4).is_err());
    }

    #[test]
    fn named_layers_are_checked_and_sorted() {
        let c = parse(r#","eagle_config":{"eagle_aux_hidden_state_layer_ids":[1,0,1]}"#).unwrap();
        assert_eq!(c.aux_layer_ids(2).unwrap(), vec![0, 1, 1]);
        assert!(c.aux_layer_ids(1).unwrap_err().contains("layer 1"));
        let top = parse(r#","eagle_aux_hidden_state_layer_ids":[3,5,7]"#).unwrap();
        assert_eq!(top.aux_layer_ids(8).unwrap(), vec![3, 5, 7]);
        assert!(parse(r#","eagle_aux_hidden_state_layer_ids":[3,5]"#).is_err());
    }

    #[test]
    fn what_the_head_cannot_run_is_refused() {
        let plain = BASE.replace("LlamaForCausalLMEagle3", "LlamaForCausalLM");
        assert!(Eagle3Config::from_json(&format!("{plain}}}")).is_err());
        let two = BASE.replace(r#""num_hidden_layers":1"#, r#""num_hidden_layers":2"#);
        assert!(Eagle3Config::from_json(&format!("{two}}}")).is_err());
        assert!(parse(r#","eagle_config":{"use_aux_hidden_state":false}"#).is_err());
        let big = BASE.replace(
            r#""draft_vocab_size":32000"#,
            r#""draft_vocab_size":200000"#,
        );
        assert!(Eagle3Config::from_json(&format!("{big}}}")).is_err());
        let scaled = BASE.replace(
            r#""rope_scaling":null"#,
            r#""rope_scaling":{"type":"yarn"}"#,
        );
        assert!(Eagle3Config::from_json(&format!("{scaled}}}")).is_err());
    }
}
