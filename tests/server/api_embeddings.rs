//! `/v1/embeddings` on the tiny model laid out as a Qwen3-Embedding checkpoint: parity with
//! sentence-transformers (the fixture), every `dimensions`, both encodings, token-id inputs,
//! batched = solo, and the refusals.

use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::embedding_checkpoint;
use crate::http_client::*;

/// A server over the embedding layout (auto-detected from its sentence-transformers files).
fn embedder() -> &'static TestServer {
    static S: OnceLock<(TestServer, tempfile::TempDir)> = OnceLock::new();
    &S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        embedding_checkpoint::lay_out(dir.path());
        let model = dir.path().to_str().unwrap().to_owned();
        let server = start(&["--model", &model, "--served-model-name", "embedder"]);
        (server, dir)
    })
    .0
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn unit(mut v: Vec<f64>) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn embed(body: Value) -> Value {
    let r = embedder().post("/v1/embeddings", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn embeddings_equal_sentence_transformers() {
    let reference = embedding_checkpoint::reference();
    let cases = reference["cases"].as_array().unwrap();
    let inputs: Vec<&Value> = cases.iter().map(|c| &c["input"]).collect();
    let batched = embed(json!({"input": inputs, "model": "embedder"}));
    assert_eq!(batched["object"], "list");
    assert_eq!(batched["model"], "embedder");
    let total: usize = cases
        .iter()
        .map(|c| c["ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        batched["usage"]["prompt_tokens"], total,
        "EOS appended to each"
    );
    assert_eq!(batched["usage"]["total_tokens"], total);
    for (i, case) in cases.iter().enumerate() {
        let want = floats(&case["embedding"]);
        let item = &batched["data"][i];
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let got = floats(&item["embedding"]);
        assert_eq!(got.len(), want.len());
        let cos = cosine(&got, &want);
        assert!(cos >= 0.99999, "{}: cosine {cos}", case["input"]);
        let norm: f64 = got.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "normalized: {norm}");
        // Alone, and from its token ids, the same vector.
        let solo = embed(json!({"input": case["input"]}));
        let from_ids = embed(json!({"input": [case["ids"]]}));
        assert_eq!(
            from_ids["usage"]["prompt_tokens"],
            case["ids"].as_array().unwrap().len()
        );
        for other in [&solo, &from_ids] {
            let v = floats(&other["data"][0]["embedding"]);
            let diff = v
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(diff < 1e-5, "batched vs solo: {diff}");
        }
    }
}

#[test]
fn dimensions_truncate_then_normalize() {
    let case = &embedding_checkpoint::reference()["cases"][3];
    let full = floats(&case["embedding"]);
    for d in [1usize, 7, 32, 64, 127, 128] {
        let r = embed(json!({"input": case["input"], "dimensions": d}));
        let got = floats(&r["data"][0]["embedding"]);
        assert_eq!(got.len(), d);
        let want = unit(full[..d].to_vec());
        let cos = cosine(&got, &want);
        assert!(cos >= 0.99999, "dimensions {d}: cosine {cos}");
        let norm: f64 = got.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "dimensions {d}: norm {norm}");
    }
}

#[test]
fn base64_carries_the_same_floats() {
    let input = json!(["alpha", "beta gamma"]);
    let float = embed(json!({"input": input, "encoding_format": "float"}));
    let b64 = embed(json!({"input": input, "encoding_format": "base64"}));
    for i in 0..2 {
        let text = b64["data"][i]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // JSON writes each f32 in its shortest form, which reads back as the same f32.
        let listed: Vec<f32> = floats(&float["data"][i]["embedding"])
            .into_iter()
            .map(|x| x as f32)
            .collect();
        assert_eq!(decoded, listed);
    }
}

#[test]
fn embedding_refusals() {
    let s = embedder();
    for (body, param) in [
        (json!({"input": []}), "input"),
        (json!({"input": "x", "dimensions": 0}), "dimensions"),
        (json!({"input": "x", "dimensions": 129}), "dimensions"),
        (json!({"input": [[1, 999_999_999]]}), "input"),
        (
            json!({"input": "x", "encoding_format": "int8"}),
            "encoding_format",
        ),
    ] {
        assert_error(
            &s.post("/v1/embeddings", &body),
            400,
            "BadRequestError",
            Some(param),
        );
    }
    // An embedding model does not generate; a generation model does not embed.
    let chat = s.post("/v1/chat/completions", &json!({"messages": hello()}));
    assert_error(&chat, 400, "BadRequestError", None);
    assert!(chat.body.contains("embedding model"), "{}", chat.body);
    let completion = s.post("/v1/completions", &json!({"prompt": "x"}));
    assert_error(&completion, 400, "BadRequestError", None);
    let generator = server().post("/v1/embeddings", &json!({"input": "x"}));
    assert_error(&generator, 400, "BadRequestError", None);
    assert!(
        generator.body.contains("generation model"),
        "{}",
        generator.body
    );
    // /v1/models says what each serves.
    assert_eq!(s.get("/v1/models").json()["data"][0]["task"], "embed");
    assert_eq!(
        server().get("/v1/models").json()["data"][0]["task"],
        "generate"
    );
    assert_eq!(s.get("/health").status, 200);
}
