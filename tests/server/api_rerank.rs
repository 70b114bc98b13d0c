//! `/v1/rerank` and `/v1/score` with the tiny model read as Qwen3-Reranker (`--task score`):
//! scores equal the model card's rule computed by transformers (the fixture), results sorted
//! and cut as asked, and the refusals.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::http_client::*;

fn reranker() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--task", "score", "--served-model-name", "reranker"]))
}

fn reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rerank.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn scores_equal_the_model_cards_rule() {
    for case in reference()["cases"].as_array().unwrap() {
        let mut body = json!({"text_1": case["query"], "text_2": [case["document"]]});
        if !case["instruction"].is_null() {
            body["instruction"] = case["instruction"].clone();
        }
        let r = reranker().post("/v1/score", &body);
        assert_eq!(r.status, 200, "{}", r.body);
        let out = r.json();
        assert_eq!(out["object"], "list");
        assert_eq!(out["model"], "reranker");
        assert_eq!(out["data"][0]["object"], "score");
        let (got, want) = (
            out["data"][0]["score"].as_f64().unwrap(),
            case["score"].as_f64().unwrap(),
        );
        assert!(
            (got - want).abs() < 1e-4,
            "{}: {got} vs {want}",
            case["document"]
        );
        // The prompt is the card's, token for token.
        assert_eq!(
            out["usage"]["prompt_tokens"],
            case["ids"].as_array().unwrap().len()
        );
    }
}

#[test]
fn rerank_sorts_cuts_and_agrees_with_score() {
    let cases = reference()["cases"].clone();
    let query = cases[0]["query"].clone();
    let documents = json!([cases[0]["document"], cases[1]["document"], {"text": "short"}]);
    let scores = reranker()
        .post("/v1/score", &json!({"text_1": query, "text_2": documents.as_array().unwrap().iter().map(|d| d.get("text").unwrap_or(d).clone()).collect::<Vec<_>>()}))
        .json();
    let by_index: Vec<f64> = (0..3)
        .map(|i| scores["data"][i]["score"].as_f64().unwrap())
        .collect();
    for path in ["/v1/rerank", "/rerank", "/v2/rerank"] {
        let r = reranker().post(path, &json!({"query": query, "documents": documents}));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let results = r.json()["results"].as_array().unwrap().clone();
        assert_eq!(results.len(), 3);
        let got: Vec<f64> = results
            .iter()
            .map(|x| x["relevance_score"].as_f64().unwrap())
            .collect();
        assert!(got.windows(2).all(|w| w[0] >= w[1]), "sorted: {got:?}");
        for x in &results {
            let i = x["index"].as_u64().unwrap() as usize;
            assert!((x["relevance_score"].as_f64().unwrap() - by_index[i]).abs() < 1e-9);
            let text = documents[i].get("text").unwrap_or(&documents[i]);
            assert_eq!(&x["document"]["text"], text);
        }
    }
    let top = reranker()
        .post(
            "/v1/rerank",
            &json!({"query": query, "documents": documents, "top_n": 1, "return_documents": false}),
        )
        .json();
    let results = top["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert!(results[0].get("document").is_none());
    let best = by_index.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(results[0]["relevance_score"].as_f64().unwrap(), best);
    assert!(top["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn scoring_refusals() {
    let s = reranker();
    for (path, body, param) in [
        (
            "/v1/rerank",
            json!({"query": "q", "documents": []}),
            "documents",
        ),
        (
            "/v1/rerank",
            json!({"query": "q", "documents": ["d"], "top_n": -1}),
            "top_n",
        ),
        (
            "/v1/score",
            json!({"text_1": ["a", "b"], "text_2": ["c", "d", "e"]}),
            "text_2",
        ),
        (
            "/v1/score",
            json!({"text_1": [], "text_2": ["c"]}),
            "text_1",
        ),
        ("/v1/score", json!({"text_1": "q"}), "text_2"),
    ] {
        assert_error(&s.post(path, &body), 400, "BadRequestError", Some(param));
    }
    // A short body whose query repeats for every document expands past what a body may hold.
    let query = "q".repeat(17_000);
    let documents = vec!["d"; 2048];
    let r = s.post(
        "/v1/rerank",
        &json!({"query": query, "documents": documents}),
    );
    assert_error(&r, 400, "BadRequestError", Some("documents"));
    assert!(r.body.contains("--max-request-body-bytes"), "{}", r.body);
    // A reranker does not generate or embed; a generation model does not score.
    let chat = s.post("/v1/chat/completions", &json!({"messages": hello()}));
    assert_error(&chat, 400, "BadRequestError", None);
    assert!(chat.body.contains("reranker"), "{}", chat.body);
    assert_error(
        &s.post("/v1/embeddings", &json!({"input": "x"})),
        400,
        "BadRequestError",
        None,
    );
    let generator = server().post("/v1/rerank", &json!({"query": "q", "documents": ["d"]}));
    assert_error(&generator, 400, "BadRequestError", None);
    assert_eq!(s.get("/v1/models").json()["data"][0]["task"], "score");
}
