//! The embedded tiny model laid out as the published Qwen3-Embedding checkpoints are: backbone
//! tensors without the `model.` prefix and no `lm_head`, a tokenizer whose post-processor
//! appends `<|endoftext|>`, and sentence-transformers' files (last-token pooling, Normalize, a
//! `query` prompt). `scripts/fixtures/embedding_reference.py` lays out the same checkpoint for
//! sentence-transformers and records `tests/fixtures/embeddings.json` from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::{Value, json};

/// The embedded tiny model, its weights made if this checkout has not made them yet.
pub fn source() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny");
    tealight::weights::embedded::ensure_weights(&dir).expect("embedded model weights")
}

/// Writes the layout into `dir`.
pub fn lay_out(dir: &Path) {
    let tensors = candle_core::safetensors::load(source().join("model.safetensors"), &Device::Cpu)
        .expect("tiny weights");
    let backbone: HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .filter_map(|(name, t)| Some((name.strip_prefix("model.")?.to_owned(), t)))
        .collect();
    candle_core::safetensors::save(&backbone, dir.join("model.safetensors")).unwrap();
    for name in [
        "config.json",
        "generation_config.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(source().join(name), dir.join(name)).unwrap();
    }
    let mut tokenizer: Value =
        serde_json::from_str(&std::fs::read_to_string(source().join("tokenizer.json")).unwrap())
            .unwrap();
    let byte_level = tokenizer["post_processor"].take();
    tokenizer["post_processor"] = json!({
        "type": "Sequence",
        "processors": [byte_level, appending_eos()],
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let hidden = config()["hidden_size"].clone();
    let fixture = reference();
    for (name, value) in [
        (
            "modules.json",
            json!([
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]),
        ),
        (
            "1_Pooling/config.json",
            json!({
                "word_embedding_dimension": hidden,
                "pooling_mode_cls_token": false,
                "pooling_mode_mean_tokens": false,
                "pooling_mode_max_tokens": false,
                "pooling_mode_mean_sqrt_len_tokens": false,
                "pooling_mode_weightedmean_tokens": false,
                "pooling_mode_lasttoken": true,
                "include_prompt": true,
            }),
        ),
        (
            "config_sentence_transformers.json",
            json!({
                "prompts": {"query": fixture["query_prompt"], "document": ""},
                "default_prompt_name": null,
                "similarity_fn_name": "cosine",
            }),
        ),
    ] {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, value.to_string()).unwrap();
    }
}

/// Qwen3-Embedding's post-processor: the text, then `<|endoftext|>`.
fn appending_eos() -> Value {
    let eos = "<|endoftext|>";
    json!({
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
        "pair": [
            {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": eos, "type_id": 1}},
        ],
        "special_tokens": {eos: {"id": eos, "ids": [151643], "tokens": [eos]}},
    })
}

fn config() -> Value {
    serde_json::from_str(&std::fs::read_to_string(source().join("config.json")).unwrap()).unwrap()
}

/// `tests/fixtures/embeddings.json`: sentence-transformers' embeddings of this layout.
pub fn reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/embeddings.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
