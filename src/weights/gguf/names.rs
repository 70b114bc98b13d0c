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
    // Qwen3-MoE's router.
    ("mlp.gate", "ffn_gate_inp"),
];

/// `(transformers projection inside `mlp.experts.{e}.`, GGUF tensor stacking every expert's)`:
/// llama.cpp stores a layer's experts as one `[experts, out, in]` tensor per projection.
const EXPERTS: &[(&str, &str)] = &[
    ("gate_proj", "ffn_gate_exps"),
    ("up_proj", "ffn_up_exps"),
    ("down_proj", "ffn_down_exps"),
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

/// Where expert `e`'s projection `model.layers.{i}.mlp.experts.{e}.{proj}.weight` lives in a
/// GGUF file: the stacked tensor's name and `e`.
pub fn expert_slice(name: &str) -> Option<(String, usize)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once(".mlp.experts.")?;
    layer.parse::<usize>().ok()?;
    let (expert, rest) = rest.split_once('.')?;
    let expert = expert.parse::<usize>().ok()?;
    let (proj, kind) = rest.split_once('.')?;
    let (_, gguf) = EXPERTS.iter().find(|(hf, _)| *hf == proj)?;
    Some((format!("blk.{layer}.{gguf}.{kind}"), expert))
}

/// The transformers name of expert `e`'s slice of a stacked GGUF expert tensor: the inverse
/// of [`expert_slice`].
pub fn expert_name(gguf: &str, expert: usize) -> Option<String> {
    let (stem, kind) = gguf.rsplit_once('.')?;
    let (layer, suffix) = stem.strip_prefix("blk.")?.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (hf, _) = EXPERTS.iter().find(|(_, g)| *g == suffix)?;
    Some(format!(
        "model.layers.{layer}.mlp.experts.{expert}.{hf}.{kind}"
    ))
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
        assert_eq!(
            to_gguf("model.layers.2.mlp.gate.weight").as_deref(),
            Some("blk.2.ffn_gate_inp.weight")
        );
    }

    #[test]
    fn expert_projections_are_slices_of_stacked_tensors() {
        for (hf, gguf, e) in [
            (
                "model.layers.0.mlp.experts.5.gate_proj.weight",
                "blk.0.ffn_gate_exps.weight",
                5,
            ),
            (
                "model.layers.47.mlp.experts.127.down_proj.weight",
                "blk.47.ffn_down_exps.weight",
                127,
            ),
            (
                "model.layers.3.mlp.experts.0.up_proj.weight",
                "blk.3.ffn_up_exps.weight",
                0,
            ),
        ] {
            assert_eq!(expert_slice(hf), Some((gguf.to_owned(), e)));
            assert_eq!(expert_name(gguf, e).as_deref(), Some(hf));
            assert_eq!(to_gguf(hf), None);
        }
        assert_eq!(
            expert_slice("model.layers.0.mlp.experts.x.gate_proj.weight"),
            None
        );
        assert_eq!(expert_slice("model.layers.0.mlp.gate_proj.weight"), None);
        assert_eq!(expert_name("blk.0.ffn_gate.weight", 1), None);
        assert_eq!(to_gguf("model.rotary.inv_freq"), None);
    }
}
