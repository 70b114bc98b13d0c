//! Timing of guided decoding at Qwen3's vocabulary (151,936 logits, the embedded tokenizer):
//! building the token trie and parser factory, compiling a schema, computing the allowed-token
//! mask at each position of a real JSON document, and applying masks to a logits batch.
//!
//! A plain timing loop (no external bench framework):
//! `cargo bench --bench guided` (or `cargo test --release --bench guided`).

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use serde_json::json;
use tealight::engine::GuidedDecoding;
use tealight::guided::GuidedFactory;
use tealight::sampling::TokenMask;
use tealight::sampling::allowed::apply_allowed;
use tealight::tokenizer::Tokenizer;

const VOCAB: usize = 151_936;

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny/tokenizer.json");
    let tok = Tokenizer::from_file(path).unwrap();

    let start = Instant::now();
    let words = tealight::guided::token_bytes(&tok, VOCAB).unwrap();
    println!("token bytes: {:?}", start.elapsed());
    let start = Instant::now();
    let env = tealight::guided::VocabEnv::new(&tok, VOCAB, &[151645, 151643]).unwrap();
    println!("token bytes + trie + encoder copy: {:?}", start.elapsed());
    drop((words, env));

    let start = Instant::now();
    let factory = GuidedFactory::new(&tok, VOCAB, &[151645, 151643]).unwrap();
    println!("factory (trie + slices): {:?}", start.elapsed());

    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "café"]}, "maxItems": 4},
            "address": {"type": "object", "properties": {
                "city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
            }, "required": ["city", "zip"]}
        },
        "required": ["name", "age", "tags", "address"]
    });
    let doc = r#"{"name": "Zoë Müller, a rather long name", "age": 42, "tags": ["a", "café"], "address": {"city": "東京 Tokyo", "zip": "12345"}}"#;
    let ids = tok.encode(doc, false).unwrap();
    for (label, spec) in [
        ("json_schema", GuidedDecoding::JsonSchema(schema.clone())),
        ("json_object", GuidedDecoding::JsonObject),
    ] {
        let start = Instant::now();
        let mut m = factory.compile(&spec).unwrap();
        let compile = start.elapsed();
        let mut per_step = Vec::new();
        for &t in &ids {
            let s = Instant::now();
            let mask = m.next_mask().unwrap();
            per_step.push(s.elapsed());
            assert!(mask.allows(t), "{label}: token {t} not allowed");
            m.commit(t).unwrap();
        }
        assert!(m.is_complete());
        // Second pass over the same states: llguidance caches lexer states, so a server's
        // steady state is closer to this.
        let mut m = factory.compile(&spec).unwrap();
        let mut warm = Vec::new();
        for &t in &ids {
            let s = Instant::now();
            let _ = m.next_mask().unwrap();
            warm.push(s.elapsed());
            m.commit(t).unwrap();
        }
        report(
            &format!("{label} compile {compile:?}; mask, first pass"),
            &per_step,
        );
        report(&format!("{label} mask, same states again"), &warm);
    }

    // Applying masks: a batch of 8 rows of which k are constrained.
    let logits = Tensor::rand(-5f32, 5f32, (8, VOCAB), &Device::Cpu).unwrap();
    let mask = TokenMask::from_ids(&(0..VOCAB as u32).step_by(3).collect::<Vec<_>>(), VOCAB);
    for k in [1usize, 8] {
        let masks: Vec<Option<&TokenMask>> = (0..8).map(|r| (r < k).then_some(&mask)).collect();
        let mut times = Vec::new();
        for _ in 0..50 {
            let s = Instant::now();
            let out = apply_allowed(&logits, &masks).unwrap();
            drop(out);
            times.push(s.elapsed());
        }
        report(&format!("apply {k} of 8 rows masked"), &times);
    }
}

fn report(label: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "{label}: n={} mean {:?} p50 {:?} p99 {:?} max {:?}",
        times.len(),
        mean,
        sorted[sorted.len() / 2],
        sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)],
        sorted[sorted.len() - 1]
    );
}
