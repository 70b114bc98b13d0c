//! A Qwen3-MoE checkpoint served end to end: the chat route's greedy text is transformers'
//! tokens, alone and with other requests in the same steps.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};
use tealight::weights::synthetic::{SyntheticSpec, write_checkpoint};

use crate::http_client::*;

fn moe_dir() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tokenizer =
            tealight::weights::embedded::ensure_weights(&root.join("models/qwen3-tiny")).unwrap();
        write_checkpoint(&SyntheticSpec::moe_tiny(), dir.path(), &tokenizer).unwrap();
        dir
    })
    .path()
    .to_path_buf()
}

fn moe_server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| {
        let dir = moe_dir();
        start(&[
            "--model",
            dir.to_str().unwrap(),
            "--served-model-name",
            "moe",
        ])
    })
}

fn reference_case(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference-moe.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let model = all["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["shape"] == "moe-tiny")
        .unwrap();
    let cases = model["cases"].as_array().unwrap();
    cases.iter().find(|c| c["name"] == name).unwrap().clone()
}

#[test]
fn greedy_chat_on_a_moe_model_is_the_references_text_alone_and_concurrently() {
    let s = moe_server();
    let names = ["chinese_system_user", "english_multi_turn", "long_prompt"];
    let expected: Vec<String> = names
        .iter()
        .map(|n| {
            let greedy = ids(&reference_case(n)["greedy"]);
            tokenizer().decode(&greedy[..24], true).unwrap()
        })
        .collect();
    let body = |name: &str| {
        json!({"model": "moe", "messages": reference_case(name)["messages"],
            "temperature": 0, "max_tokens": 24, "ignore_eos": true})
    };
    let alone = s.chat(body(names[0]));
    assert_eq!(
        alone["choices"][0]["message"]["content"],
        expected[0].as_str()
    );
    assert_eq!(alone["usage"]["completion_tokens"], 24);
    // Three at once share steps: prefill chunks beside decodes, tokens routed to one expert
    // from several sequences.
    let together: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|n| scope.spawn(move || s.chat(body(n))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((name, want), got) in names.iter().zip(&expected).zip(&together) {
        assert_eq!(
            got["choices"][0]["message"]["content"],
            want.as_str(),
            "{name}"
        );
    }
}
