//! Checkpoint tensor names (transformers') ↔ GGUF tensor names (llama.cpp's, for Qwen3).

/// `(transformers suffix, GGUF suffix)` inside `model.layers.{i}.` ↔ `blk.{i}.`.
const LAYER: &[(&str, &str)] = &[
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

/// `(transformers, GGUF)` outside the layers.
const GLOBAL: &[(&str, &str)] = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
];

/// The GGUF name of a transformers tensor name (`….weight` / `….bias`), if Qwen3 has one.
pub fn to_gguf(name: &str) -> Option<String> {
    let (stem, kind) = name.rsplit_once('.')?;
    if let Some(rest) = stem.strip_prefix("model.layers.") {
        let (index, suffix) = rest.split_once('.')?;
        index.parse::<usize>().ok()?;
        let (_, gguf) = LAYER.iter().find(|(hf, _)| *hf == suffix)?;
        return Some(format!("blk.{index}.{gguf}.{kind}"));
    }
    let (_, gguf) = GLOBAL.iter().find(|(hf, _)| *hf == stem)?;
    Some(format!("{gguf}.{kind}"))
}

/// The transformers name of a GGUF tensor name: the inverse of [`to_gguf`].
pub fn from_gguf(name: &str) -> Option<String> {
    let (stem, kind) = name.rsplit_once('.')?;
    if let Some(rest) = stem.strip_prefix("blk.") {
        let (index, suffix) = rest.split_once('.')?;
        index.parse::<usize>().ok()?;
        let (hf, _) = LAYER.iter().find(|(_, gguf)| *gguf == suffix)?;
        return Some(format!("model.layers.{index}.{hf}.{kind}"));
    }
    let (hf, _) = GLOBAL.iter().find(|(_, gguf)| *gguf == stem)?;
    Some(format!("{hf}.{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (hf, gguf) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            (
                "model.layers.0.self_attn.q_proj.weight",
                "blk.0.attn_q.weight",
            ),
            (
                "model.layers.27.mlp.down_proj.weight",
                "blk.27.ffn_down.weight",
            ),
            (
                "model.layers.3.self_attn.k_norm.weight",
                "blk.3.attn_k_norm.weight",
            ),
            ("model.layers.1.self_attn.q_proj.bias", "blk.1.attn_q.bias"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
        ] {
            assert_eq!(to_gguf(hf).as_deref(), Some(gguf));
            assert_eq!(from_gguf(gguf).as_deref(), Some(hf));
        }
        assert_eq!(to_gguf("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(to_gguf("model.rotary.inv_freq"), None);
    }
}
