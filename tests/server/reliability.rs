//! Hostile or heavy requests over HTTP: unsupported fields are refused by name, one request
//! cannot fan out over the queue or build an unbounded response, prompts certainly too long are
//! refused before tokenizing, `/health` answers while huge prompts are tokenized, and a client
//! that leaves while queued leaves the queue.

use crate::http_client;

use http_client::*;
use serde_json::json;
use std::io::BufRead;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One running slot, and SSE keep-alives every 200 ms.
fn queue_server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--max-num-seqs", "1", "--sse-keep-alive", "0.2"]))
}

#[test]
fn unsupported_vllm_fields_are_refused_by_name() {
    let s = small_server();
    let chat = |extra: serde_json::Value| {
        let mut body = json!({"messages": hello(), "max_tokens": 1});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s.post("/v1/chat/completions", &body)
    };
    let r = chat(json!({"prompt_logprobs": 1}));
    assert_error(&r, 400, "BadRequestError", Some("prompt_logprobs"));
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not supported")
    );
    assert_error(
        &chat(json!({"use_beam_search": true})),
        400,
        "BadRequestError",
        Some("use_beam_search"),
    );
    // Neutral values ask for nothing and pass.
    let r = chat(json!({"prompt_logprobs": null, "use_beam_search": false, "length_penalty": 1}));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.post(
        "/v1/completions",
        &json!({"prompt": "hi", "max_tokens": 1, "guided_regex": "a+"}),
    );
    assert_error(&r, 400, "BadRequestError", Some("guided_regex"));
}

#[test]
fn one_request_cannot_fan_out_over_the_queue() {
    let s = small_server();
    let prompts: Vec<String> = (0..64).map(|i| format!("prompt {i}")).collect();
    let r = s.post(
        "/v1/completions",
        &json!({"prompt": prompts, "n": 16, "max_tokens": 1}),
    );
    assert_error(&r, 400, "BadRequestError", Some("n"));
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("1024") && message.contains("128"),
        "{message}"
    );
}

#[test]
fn a_collected_response_cannot_hold_unbounded_logprobs() {
    let s = small_server();
    // 16 choices × 21 entries × ~4090 tokens: over a million entries.
    let body = json!({"messages": hello(), "n": 16, "logprobs": true, "top_logprobs": 20});
    let r = s.post("/v1/chat/completions", &body);
    assert_error(&r, 400, "BadRequestError", Some("top_logprobs"));
    assert!(r.body.contains("1048576"), "{}", r.body);
    let r = s.post(
        "/v1/completions",
        &json!({"prompt": "hi", "n": 16, "logprobs": 20, "max_tokens": 4000}),
    );
    assert_error(&r, 400, "BadRequestError", Some("logprobs"));
    // Bounded by max_tokens, the same request is fine.
    let r = server().post(
        "/v1/chat/completions",
        &json!({"messages": hello(), "n": 2, "logprobs": true, "top_logprobs": 2, "max_tokens": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Words that tokenize slowly (no long merges): about 1.3 MB, under the byte bound of a
/// 4096-token context but far over its token count.
fn heavy_text() -> String {
    let words = [
        "alpha", "beta", "gamma", "delta", "épsilon", "zeta", "ηta", "theta",
    ];
    let mut text = String::with_capacity(1 << 21);
    let mut i = 0usize;
    while text.len() < 1_300_000 {
        text.push_str(words[i % words.len()]);
        text.push_str(&(i % 97).to_string());
        text.push(' ');
        i += 1;
    }
    text
}

#[test]
fn certainly_too_long_prompts_are_refused_before_tokenizing() {
    let s = small_server();
    // 4096 tokens of at most 128 bytes, normalizers shrinking at most 3×: 1.5 MiB is the bound.
    let text = "a".repeat(2_000_000);
    let started = Instant::now();
    let r = s.post("/v1/completions", &json!({"prompt": text, "max_tokens": 1}));
    assert_error(&r, 400, "BadRequestError", Some("prompt"));
    assert!(r.body.contains("bytes long"), "{}", r.body);
    let r = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": text}]}),
    );
    assert_error(&r, 400, "BadRequestError", Some("messages"));
    assert!(r.body.contains("bytes long"), "{}", r.body);
    let r = s.post("/tokenize", &json!({"prompt": text}));
    assert_error(&r, 400, "BadRequestError", Some("prompt"));
    eprintln!("three refusals in {:?}", started.elapsed());
}

#[test]
fn health_answers_while_huge_prompts_are_tokenized() {
    let s = small_server();
    let text = heavy_text();
    let base = s.base.clone();
    let senders: Vec<_> = (0..4)
        .map(|i| {
            let url = format!("{base}/v1/completions");
            let body = json!({"prompt": text, "max_tokens": 1}).to_string();
            std::thread::spawn(move || {
                let started = Instant::now();
                let status = match ureq::post(&url)
                    .set("Content-Type", "application/json")
                    .send_string(&body)
                {
                    Ok(r) => r.status(),
                    Err(ureq::Error::Status(code, _)) => code,
                    Err(e) => panic!("request {i}: {e}"),
                };
                (status, started.elapsed())
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    let started = Instant::now();
    while senders.iter().any(|h| !h.is_finished()) {
        let t = Instant::now();
        assert_eq!(s.get("/health").status, 200);
        worst = worst.max(t.elapsed());
        probes += 1;
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "requests never ended"
        );
    }
    let mut slowest = Duration::ZERO;
    for h in senders {
        let (status, took) = h.join().unwrap();
        // The prompts are too long in tokens: refused after tokenizing.
        assert_eq!(status, 400);
        slowest = slowest.max(took);
    }
    eprintln!("{probes} /health probes, worst {worst:?}; slowest prompt took {slowest:?}");
    assert!(probes > 0);
    assert!(worst < Duration::from_secs(1), "/health took {worst:?}");
}

/// Reads SSE lines until one satisfies `want` (or the stream ends).
fn read_until(reader: &mut Box<dyn BufRead + Send>, want: impl Fn(&str) -> bool) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if want(line.trim_end()) => return true,
            Ok(_) => {}
        }
    }
}

fn waiting(s: &TestServer) -> Option<f64> {
    metric(&s.get("/metrics").body, "tealight:num_requests_waiting")
}

#[test]
fn a_client_that_leaves_while_queued_leaves_the_queue() {
    let s = queue_server();
    s.wait_idle();
    let long = json!({"messages": hello(), "max_tokens": 3000, "ignore_eos": true, "stream": true});
    let (status, _, mut running) = s.open_stream("/v1/chat/completions", &long);
    assert_eq!(status, 200);
    assert!(read_until(&mut running, |l| l.contains("\"content\":\"")
        && !l.contains("\"content\":\"\"")));
    let (status, _, mut queued) = s.open_stream("/v1/chat/completions", &long);
    assert_eq!(status, 200);
    // While it waits, the queued stream still gets bytes: keep-alive comments.
    assert!(read_until(&mut queued, |l| l.starts_with(": keep-alive")));
    assert_eq!(waiting(s), Some(1.0));
    drop(queued);
    let left = Instant::now();
    while waiting(s) != Some(0.0) {
        assert!(
            left.elapsed() < Duration::from_secs(5),
            "the departed client is still queued"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("left the queue {:?} after the disconnect", left.elapsed());
    // The running request was not disturbed.
    assert!(read_until(&mut running, |l| l.starts_with("data: {")));
    drop(running);
    s.wait_idle();
}

/// The published OpenAPI document is the file in the tree, and every route it names exists
/// with the methods it names (a fuzzer driven by it reaches the real handlers).
#[test]
fn the_openapi_document_names_real_routes() {
    let s = server();
    let r = s.get("/openapi.json");
    assert_eq!(r.status, 200);
    let doc = r.json();
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../../src/api/openapi.json")).unwrap();
    assert_eq!(doc, file);
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/responses/{response_id}",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/embeddings",
        "/v1/rerank",
        "/v1/score",
        "/tokenize",
        "/detokenize",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    for (path, methods) in paths {
        // A path parameter gets a value no stored object has: the handler answers, not the fallback.
        let path = path.replace("{response_id}", "resp_unknown");
        for method in methods.as_object().unwrap().keys() {
            let r = match method.as_str() {
                "post" => s.post(&path, &json!({})),
                "get" => s.get(&path),
                other => panic!("{other}"),
            };
            assert!(
                !r.body.contains("Route ") && r.status != 405,
                "{method} {path}: {} {}",
                r.status,
                r.body
            );
        }
    }
}
