//! The tokenizer, chat template and generation defaults a GGUF file carries in its
//! `tokenizer.ggml.*`, `tokenizer.chat_template*` and `general.sampling.*` metadata.
//!
//! The tokenizer is rebuilt as the `tokenizer.json` Qwen ships (byte-level BPE, NFC, Qwen2's
//! pre-tokenizer split), from the file's tokens, token types and merges. Token types:
//! CONTROL tokens become special added tokens (dropped by `skip_special_tokens`), USER_DEFINED
//! ones (`<think>`, `<tool_call>`) added tokens that are not special, so they survive decoding.
//! One difference from the original is inherent to the format: llama.cpp's converter marks
//! every `<|…|>` token CONTROL, so `<|fim_prefix|>` and its kin, not special in Qwen's
//! `tokenizer.json`, are special here.

use super::GgufFile;
use crate::error::Result;
use crate::sampling::GenerationDefaults;
use crate::tokenizer::{ChatTemplate, Tokenizer};
use candle_core::quantized::gguf_file::Value;
use serde_json::{Map, Value as Json, json};

/// Qwen2's (and Qwen3's) pre-tokenizer split, `tokenizer.ggml.pre = "qwen2"` in llama.cpp.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's token types.
const NORMAL: i64 = 1;
const UNKNOWN: i64 = 2;
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;
const BYTE: i64 = 6;

fn strings<'a>(file: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let Some(Value::Array(items)) = file.get(key) else {
        return Err(file.error(format!("missing metadata {key} (an array of strings)")));
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_str()),
            _ => Err(file.error(format!("metadata {key} holds a non-string"))),
        })
        .collect()
}

fn integer(value: &Value) -> Option<i64> {
    match *value {
        Value::I8(v) => Some(v.into()),
        Value::U8(v) => Some(v.into()),
        Value::I16(v) => Some(v.into()),
        Value::U16(v) => Some(v.into()),
        Value::I32(v) => Some(v.into()),
        Value::U32(v) => Some(v.into()),
        Value::I64(v) => Some(v),
        Value::U64(v) => i64::try_from(v).ok(),
        _ => None,
    }
}

fn token_id(file: &GgufFile, key: &str) -> Option<u32> {
    file.get(key)
        .and_then(integer)
        .and_then(|v| u32::try_from(v).ok())
}

/// The `tokenizer.json` document equivalent to the file's vocabulary.
pub fn tokenizer_json(file: &GgufFile) -> Result<Json> {
    match file.get("tokenizer.ggml.model") {
        Some(Value::String(m)) if m == "gpt2" => {}
        Some(Value::String(m)) => {
            return Err(file.error(format!(
                "tokenizer.ggml.model {m:?} is not supported (Qwen3 uses \"gpt2\": byte-level BPE)"
            )));
        }
        _ => return Err(file.error("missing metadata tokenizer.ggml.model")),
    }
    match file.get("tokenizer.ggml.pre") {
        Some(Value::String(p)) if p == "qwen2" => {}
        Some(Value::String(p)) => {
            return Err(file.error(format!(
                "tokenizer.ggml.pre {p:?} is not supported (Qwen3 uses \"qwen2\")"
            )));
        }
        _ => return Err(file.error("missing metadata tokenizer.ggml.pre")),
    }
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let merges = strings(file, "tokenizer.ggml.merges")?;
    let types: Vec<i64> = match file.get("tokenizer.ggml.token_type") {
        Some(Value::Array(items)) if items.len() == tokens.len() => {
            items.iter().map(|v| integer(v).unwrap_or(NORMAL)).collect()
        }
        Some(_) => {
            return Err(file.error(
                "tokenizer.ggml.token_type is not an integer array as long as tokenizer.ggml.tokens",
            ));
        }
        None => vec![NORMAL; tokens.len()],
    };
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, (&token, &kind)) in tokens.iter().zip(&types).enumerate() {
        match kind {
            NORMAL | UNKNOWN | BYTE => {
                vocab.insert(token.to_owned(), json!(id));
            }
            CONTROL | USER_DEFINED => added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": kind == CONTROL,
            })),
            // UNUSED (padding rows past the vocabulary) and anything else: no text.
            _ => {}
        }
    }
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
            byte_level,
        ]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    }))
}

pub fn tokenizer(file: &GgufFile) -> Result<Tokenizer> {
    let text = tokenizer_json(file)?.to_string();
    let inner = text
        .parse::<tokenizers::Tokenizer>()
        .map_err(|e| file.error(format!("cannot build the tokenizer from its metadata: {e}")))?;
    Ok(Tokenizer::from_inner(inner))
}

/// The special-token strings templates see (`eos_token`, `pad_token`, `bos_token`).
pub fn special_tokens(file: &GgufFile) -> Result<Map<String, Json>> {
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let mut map = Map::new();
    for (name, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
    ] {
        if let Some(&text) = token_id(file, key).and_then(|id| tokens.get(id as usize)) {
            map.insert(name.to_owned(), Json::String(text.to_owned()));
        }
    }
    Ok(map)
}

/// `tokenizer.chat_template`, plus any named ones (`tokenizer.chat_template.<name>`, listed in
/// `tokenizer.chat_templates`).
pub fn chat_template(file: &GgufFile) -> Result<ChatTemplate> {
    let mut sources = Vec::new();
    match file.get("tokenizer.chat_template") {
        Some(Value::String(s)) => sources.push(("default".to_owned(), s.clone())),
        Some(_) => return Err(file.error("tokenizer.chat_template is not a string")),
        None => return Err(file.error("has no tokenizer.chat_template")),
    }
    if let Some(Value::Array(names)) = file.get("tokenizer.chat_templates") {
        for name in names.iter().filter_map(|n| n.to_string().ok()) {
            if let Some(Value::String(s)) = file.get(&format!("tokenizer.chat_template.{name}")) {
                sources.push((name.clone(), s.clone()));
            }
        }
    }
    ChatTemplate::from_sources(sources, special_tokens(file)?)
        .map_err(|e| file.error(format!("chat template: {e}")))
}

/// Sampling defaults from `general.sampling.*` where the file has them, and the ids that end
/// generation: the end-of-sequence and end-of-turn ids, plus Qwen's `<|im_end|>` and
/// `<|endoftext|>` (which llama.cpp also treats as end of generation by their text).
pub fn generation_defaults(file: &GgufFile, tokenizer: &Tokenizer) -> GenerationDefaults {
    let float = |key: &str| match file.get(key) {
        Some(Value::F32(v)) => Some(*v),
        Some(Value::F64(v)) => Some(*v as f32),
        _ => None,
    };
    let mut eos: Vec<u32> = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
        .iter()
        .filter_map(|k| token_id(file, k))
        .collect();
    for text in ["<|im_end|>", "<|endoftext|>"] {
        if let Some(id) = tokenizer.token_to_id(text)
            && !eos.contains(&id)
        {
            eos.push(id);
        }
    }
    GenerationDefaults {
        temperature: float("general.sampling.temp"),
        top_p: float("general.sampling.top_p"),
        top_k: file.get("general.sampling.top_k").and_then(integer),
        min_p: float("general.sampling.min_p"),
        repetition_penalty: float("general.sampling.penalty_repeat"),
        eos_token_ids: eos,
        bos_token_id: token_id(file, "tokenizer.ggml.bos_token_id"),
        pad_token_id: token_id(file, "tokenizer.ggml.padding_token_id"),
        ..GenerationDefaults::default()
    }
}
