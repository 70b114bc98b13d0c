//! The HTTP API end to end over real HTTP, against the tiny model served in-process.

#[path = "api_common/mod.rs"]
mod api_common;

use api_common::*;
use serde_json::{Value, json};
use std::io::BufRead;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The vLLM-style setup most users run: key, reasoning and tool parsers, two served names.
fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| {
        start(&[
            "--api-key",
            KEY,
            "--served-model-name",
            "tiny",
            "tiny-alias",
            "--reasoning-parser",
            "qwen3",
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "hermes",
        ])
    })
}

/// No key, no parsers: one running sequence and one waiting slot, to provoke 429.
fn small_server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--max-num-seqs", "1", "--max-waiting", "1"]))
}

fn fixture_case(name: &str) -> Value {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference.json"),
    )
    .unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    let model = all["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["shape"] == "tiny")
        .unwrap();
    model["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
        .clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn hello() -> Value {
    json!([{"role": "user", "content": "Hello there"}])
}

fn assert_error(reply: &Reply, status: u16, kind: &str, param: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    let err = &body["error"];
    assert_eq!(err["type"], kind, "{}", reply.body);
    assert_eq!(err["code"], status, "{}", reply.body);
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        reply.body
    );
    match param {
        Some(p) => assert_eq!(err["param"], p, "{}", reply.body),
        None => assert!(err.get("param").is_some(), "param key present"),
    }
}

/// System "你是一个小助手" + user "你好", greedy, 40 tokens: exactly the reference tokens.
#[test]
fn greedy_chat_matches_the_reference() {
    let s = server();
    let case = fixture_case("chinese_system_user");
    let want_ids = ids(&case["greedy"]);
    let want = tokenizer().decode(&want_ids, true).unwrap();
    let body = json!({
        "model": "tiny",
        "messages": case["messages"],
        "temperature": 0,
        "max_tokens": 40,
        "ignore_eos": true,
    });
    let r = s.chat(body.clone());
    assert_eq!(r["object"], "chat.completion");
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(r["model"], "tiny");
    let choice = &r["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], want.as_str());
    assert_eq!(choice["finish_reason"], "length");
    let usage = &r["usage"];
    assert_eq!(
        usage["prompt_tokens"],
        case["prompt_ids"].as_array().unwrap().len()
    );
    assert_eq!(usage["completion_tokens"], 40);
    assert_eq!(
        usage["total_tokens"],
        usage["prompt_tokens"].as_u64().unwrap() + 40
    );
    assert!(usage["prompt_tokens_details"]["cached_tokens"].is_u64());

    // The same request streamed gives the same text, in order, with the usage chunk.
    let mut streamed = body;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (chunks, done) = s.stream("/v1/chat/completions", &streamed);
    assert!(done);
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"].get(0)?["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, want);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 40);
    assert_eq!(last["usage"]["prompt_tokens"], usage["prompt_tokens"]);
}

#[test]
fn prompt_tokens_equal_the_template_and_tokenizer_count() {
    let s = server();
    let messages = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]},
        {"role": "assistant", "content": "ok", "reasoning_content": "thinking"},
        {"role": "user", "content": "again"}
    ]);
    let t = s.post("/tokenize", &json!({"messages": messages}));
    assert_eq!(t.status, 200, "{}", t.body);
    let t = t.json();
    assert_eq!(t["count"], t["tokens"].as_array().unwrap().len());
    assert_eq!(t["max_model_len"], 4096);
    let r = s.chat(json!({"messages": messages, "max_tokens": 7, "ignore_eos": true}));
    assert_eq!(r["usage"]["prompt_tokens"], t["count"]);
    assert_eq!(r["usage"]["completion_tokens"], 7);

    // detokenize inverts tokenize.
    let d = s
        .post("/detokenize", &json!({"tokens": t["tokens"]}))
        .json();
    assert!(d["prompt"].as_str().unwrap().contains("part one\npart two"));
    let p = s
        .post(
            "/tokenize",
            &json!({"prompt": "hello world", "return_token_strs": true}),
        )
        .json();
    assert_eq!(p["count"], 2);
    assert_eq!(p["token_strs"], json!(["hello", "Ġworld"]));
}

#[test]
fn stream_framing_role_first_no_empty_chunks_usage_last() {
    let s = server();
    let body = json!({
        "messages": hello(), "max_tokens": 12, "ignore_eos": true, "stream": true,
        "stream_options": {"include_usage": true, "continuous_usage_stats": true},
    });
    let (chunks, done) = s.stream("/v1/chat/completions", &body);
    assert!(done);
    let first = &chunks[0]["choices"][0];
    assert_eq!(first["delta"], json!({"role": "assistant", "content": ""}));
    assert!(first["finish_reason"].is_null());
    let id = chunks[0]["id"].as_str().unwrap();
    let mut finish_seen = false;
    let mut completion = 0;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c["usage"].is_object(), "continuous usage on every chunk");
        completion = c["usage"]["completion_tokens"].as_u64().unwrap();
        let choices = c["choices"].as_array().unwrap();
        if choices.is_empty() {
            assert_eq!(i, chunks.len() - 1, "the usage chunk is last");
            continue;
        }
        let ch = &choices[0];
        if i > 0 && ch["finish_reason"].is_null() {
            let content = ch["delta"]["content"].as_str().unwrap_or("");
            assert!(
                !content.is_empty() || ch["delta"].get("reasoning_content").is_some(),
                "empty delta chunk: {c}"
            );
        }
        if !ch["finish_reason"].is_null() {
            assert_eq!(ch["finish_reason"], "length");
            finish_seen = true;
        }
    }
    assert!(finish_seen);
    assert_eq!(completion, 12);
}

#[test]
fn n_choices_with_seeds_are_distinct_and_reproducible() {
    let s = server();
    let body = json!({"messages": hello(), "max_tokens": 8, "ignore_eos": true, "n": 3,
                      "seed": 7, "temperature": 1.0});
    let a = s.chat(body.clone());
    let b = s.chat(body.clone());
    let texts = |r: &Value| -> Vec<String> {
        r["choices"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                assert_eq!(c["index"], i);
                c["message"]["content"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(texts(&a), texts(&b), "seeded choices are reproducible");
    let t = texts(&a);
    assert!(t[0] != t[1] || t[1] != t[2], "choices use different seeds");
    assert_eq!(a["usage"]["completion_tokens"], 24);

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (chunks, done) = s.stream("/v1/chat/completions", &streamed);
    assert!(done);
    let mut per_choice = vec![String::new(); 3];
    for c in &chunks {
        for ch in c["choices"].as_array().unwrap() {
            let i = ch["index"].as_u64().unwrap() as usize;
            per_choice[i].push_str(ch["delta"]["content"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(per_choice, t, "streamed choices carry their index");
}

#[test]
fn logprobs_shapes() {
    let s = server();
    let r = s.chat(
        json!({"messages": hello(), "max_tokens": 5, "ignore_eos": true,
                          "logprobs": true, "top_logprobs": 3}),
    );
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 5);
    let text: String = content
        .iter()
        .map(|e| e["token"].as_str().unwrap())
        .collect();
    assert_eq!(
        text,
        r["choices"][0]["message"]["content"].as_str().unwrap()
    );
    for e in content {
        assert!(e["logprob"].as_f64().unwrap() <= 0.0);
        assert!(e["bytes"].is_array());
        assert_eq!(e["top_logprobs"].as_array().unwrap().len(), 3);
    }
    let c = s.post(
        "/v1/completions",
        &json!({"prompt": "Once upon", "max_tokens": 4,
                                              "ignore_eos": true, "logprobs": 2}),
    );
    assert_eq!(c.status, 200, "{}", c.body);
    let c = c.json();
    let lp = &c["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 4);
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), 4);
    assert_eq!(lp["text_offset"][0], 0);
    assert!(lp["top_logprobs"][0].as_object().unwrap().len() <= 2);
}

#[test]
fn completions_prompt_forms_echo_and_stream() {
    let s = server();
    let tok = tokenizer();
    let ids = tok.encode("The quick brown fox", false).unwrap();
    let forms = [
        json!("The quick brown fox"),
        json!(["The quick brown fox"]),
        json!(ids),
        json!([ids]),
    ];
    let mut texts = Vec::new();
    for prompt in forms {
        let r = s.post(
            "/v1/completions",
            &json!({"model": "tiny-alias", "prompt": prompt,
            "max_tokens": 6, "temperature": 0, "ignore_eos": true}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let r = r.json();
        assert_eq!(r["object"], "text_completion");
        assert!(r["id"].as_str().unwrap().starts_with("cmpl-"));
        assert_eq!(r["model"], "tiny-alias");
        assert_eq!(r["usage"]["prompt_tokens"], ids.len());
        assert_eq!(r["usage"]["completion_tokens"], 6);
        texts.push(r["choices"][0]["text"].as_str().unwrap().to_owned());
    }
    assert!(texts.windows(2).all(|w| w[0] == w[1]), "{texts:?}");

    let r = s.post(
        "/v1/completions",
        &json!({"prompt": ["a b", "c d e"], "n": 2,
        "max_tokens": 3, "ignore_eos": true, "echo": true}),
    );
    let r = r.json();
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    assert!(choices[0]["text"].as_str().unwrap().starts_with("a b"));
    assert!(choices[3]["text"].as_str().unwrap().starts_with("c d e"));
    assert_eq!(r["usage"]["prompt_tokens"], 2 + 3);
    assert_eq!(r["usage"]["completion_tokens"], 12);

    let (chunks, done) = s.stream(
        "/v1/completions",
        &json!({"prompt": "The quick brown fox",
        "max_tokens": 6, "temperature": 0, "ignore_eos": true, "stream": true,
        "stream_options": {"include_usage": true}}),
    );
    assert!(done);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, texts[0]);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 6);
}

#[test]
fn stop_strings_end_the_output() {
    let s = server();
    let base = s.chat(
        json!({"messages": hello(), "max_tokens": 12, "temperature": 0,
                             "ignore_eos": true}),
    );
    let text = base["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let chars: Vec<char> = text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let cut = s.chat(
        json!({"messages": hello(), "max_tokens": 12, "temperature": 0,
                            "ignore_eos": true, "stop": [stop.clone()]}),
    );
    let choice = &cut["choices"][0];
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["stop_reason"], stop.as_str());
    let got = choice["message"]["content"].as_str().unwrap();
    assert_eq!(got, &text[..text.find(&stop).unwrap()]);
    let kept = s.chat(
        json!({"messages": hello(), "max_tokens": 12, "temperature": 0,
        "ignore_eos": true, "stop": stop, "include_stop_str_in_output": true}),
    );
    assert!(
        kept["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .ends_with(&stop)
    );
}

#[test]
fn reasoning_is_split_when_the_prompt_opens_thinking() {
    let s = server();
    // An assistant prefill that opens the block: everything generated is reasoning.
    let body = json!({
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "<think>\n"}],
        "add_generation_prompt": false, "continue_final_message": true,
        "max_tokens": 6, "temperature": 0, "ignore_eos": true,
    });
    let r = s.chat(body.clone());
    let m = &r["choices"][0]["message"];
    let reasoning = m["reasoning_content"].as_str().expect("reasoning_content");
    assert!(!reasoning.is_empty());
    assert_eq!(m["reasoning"], m["reasoning_content"]);
    assert_eq!(m["content"], "");

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (chunks, _) = s.stream("/v1/chat/completions", &streamed);
    let mut a = String::new();
    let mut b = String::new();
    for c in &chunks {
        if let Some(ch) = c["choices"].get(0) {
            a.push_str(ch["delta"]["reasoning_content"].as_str().unwrap_or(""));
            b.push_str(ch["delta"]["reasoning"].as_str().unwrap_or(""));
            assert!(ch["delta"]["content"].as_str().unwrap_or("").is_empty());
        }
    }
    assert_eq!(a, reasoning);
    assert_eq!(b, reasoning);

    // enable_thinking false: the template closes an empty block; the output is content.
    let t = s
        .post(
            "/tokenize",
            &json!({"messages": hello(), "return_token_strs": true,
        "chat_template_kwargs": {"enable_thinking": false}}),
        )
        .json();
    let prompt = tokenizer().decode(&ids(&t["tokens"]), false).unwrap();
    assert!(prompt.ends_with("<think>\n\n</think>\n\n"), "{prompt:?}");
    let r = s.chat(
        json!({"messages": hello(), "max_tokens": 5, "ignore_eos": true,
        "chat_template_kwargs": {"enable_thinking": false}}),
    );
    assert!(
        r["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );
    assert!(
        !r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}})
}

#[test]
fn tool_round_trip_and_tool_choice_modes() {
    let s = server();
    let messages = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}
    ]);
    let t = s
        .post(
            "/tokenize",
            &json!({"messages": messages, "tools": [weather_tool()]}),
        )
        .json();
    let prompt = tokenizer().decode(&ids(&t["tokens"]), false).unwrap();
    assert!(prompt.contains("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
    assert!(prompt.contains("<tool_response>\n{\"temp\": 21}\n</tool_response>"));
    for choice in [
        json!("auto"),
        json!("none"),
        json!("required"),
        json!({"type": "function", "function": {"name": "get_weather"}}),
    ] {
        let r = s.chat(json!({"messages": messages, "tools": [weather_tool()],
            "tool_choice": choice, "max_tokens": 4, "ignore_eos": true}));
        assert_eq!(r["usage"]["prompt_tokens"], t["count"]);
        let finish = r["choices"][0]["finish_reason"].as_str().unwrap();
        assert!(finish == "length" || finish == "tool_calls", "{finish}");
    }
    // Without --enable-auto-tool-choice, "auto" is refused like vLLM does.
    let r = small_server().post(
        "/v1/chat/completions",
        &json!({"messages": hello(),
        "tools": [weather_tool()], "tool_choice": "auto", "max_tokens": 2}),
    );
    assert_error(&r, 400, "BadRequestError", Some("tool_choice"));
}

#[test]
fn auth_and_open_routes() {
    let s = server();
    for path in ["/health", "/version", "/metrics", "/ping"] {
        let r = s.get_with_key(path, None);
        assert_eq!(r.status, 200, "{path} needs no key");
    }
    assert_eq!(
        s.get_with_key("/version", None).json()["version"],
        env!("CARGO_PKG_VERSION")
    );
    let r = s.get_with_key("/v1/models", None);
    assert_error(&r, 401, "AuthenticationError", None);
    let r = s.get_with_key("/v1/models", Some("wrong-key"));
    assert_error(&r, 401, "AuthenticationError", None);
    let r = s.get_with_key("/v1/models", Some(KEY));
    assert_eq!(r.status, 200);
    let models = r.json();
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], "tiny");
    assert_eq!(data[1]["id"], "tiny-alias");
    for m in data {
        assert_eq!(m["object"], "model");
        assert_eq!(m["owned_by"], "tealight");
        assert_eq!(m["max_model_len"], 4096);
        assert!(m["created"].is_i64() && m["root"].is_string());
    }
    let r = s.get_with_key("/tokenize", None);
    assert_eq!(r.status, 401, "tokenize needs the key");
}

#[test]
fn metrics_expose_engine_and_http_counters() {
    let s = server();
    s.chat(json!({"messages": hello(), "max_tokens": 2}));
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    for name in [
        "tealight:num_requests_running",
        "tealight:num_requests_waiting",
        "tealight:kv_cache_blocks_used",
        "tealight:kv_cache_capacity_blocks",
        "tealight:kv_cache_usage_perc",
        "tealight:prefix_cache_hit_rate",
        "tealight:prefix_cache_queries_total",
        "tealight:prompt_tokens_total",
        "tealight:generation_tokens_total",
        "tealight:time_to_first_token_seconds_bucket",
        "tealight:e2e_request_latency_seconds_count",
    ] {
        assert!(m.body.contains(name), "{name} missing");
    }
    assert!(m.body.contains(
        "tealight:http_requests_total{method=\"POST\",route=\"/v1/chat/completions\",status=\"200\"}"
    ));
}

/// Each bad input gets the right status, type and param, and the server keeps answering.
#[test]
fn bad_inputs_table() {
    let s = server();
    let chat = "/v1/chat/completions";
    let msgs = hello();
    let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
        (chat, json!({}), 400, "BadRequestError", Some("messages")),
        (
            chat,
            json!({"messages": "hi"}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            chat,
            json!({"messages": []}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            chat,
            json!({"messages": [{"content": "no role"}]}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            chat,
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            chat,
            json!({"messages": msgs, "model": "nope"}),
            404,
            "NotFoundError",
            Some("model"),
        ),
        (
            chat,
            json!({"messages": msgs, "temperature": -1}),
            400,
            "BadRequestError",
            Some("temperature"),
        ),
        (
            chat,
            json!({"messages": msgs, "temperature": 2.5}),
            400,
            "BadRequestError",
            Some("temperature"),
        ),
        (
            chat,
            json!({"messages": msgs, "temperature": "hot"}),
            400,
            "BadRequestError",
            Some("temperature"),
        ),
        (
            chat,
            json!({"messages": msgs, "top_p": 0}),
            400,
            "BadRequestError",
            Some("top_p"),
        ),
        (
            chat,
            json!({"messages": msgs, "top_p": 1.5}),
            400,
            "BadRequestError",
            Some("top_p"),
        ),
        (
            chat,
            json!({"messages": msgs, "top_k": -2}),
            400,
            "BadRequestError",
            Some("top_k"),
        ),
        (
            chat,
            json!({"messages": msgs, "min_p": 2}),
            400,
            "BadRequestError",
            Some("min_p"),
        ),
        (
            chat,
            json!({"messages": msgs, "presence_penalty": 3}),
            400,
            "BadRequestError",
            Some("presence_penalty"),
        ),
        (
            chat,
            json!({"messages": msgs, "frequency_penalty": -3}),
            400,
            "BadRequestError",
            Some("frequency_penalty"),
        ),
        (
            chat,
            json!({"messages": msgs, "repetition_penalty": 0}),
            400,
            "BadRequestError",
            Some("repetition_penalty"),
        ),
        (
            chat,
            json!({"messages": msgs, "max_tokens": 0}),
            400,
            "BadRequestError",
            Some("max_tokens"),
        ),
        (
            chat,
            json!({"messages": msgs, "max_completion_tokens": -5}),
            400,
            "BadRequestError",
            Some("max_completion_tokens"),
        ),
        (
            chat,
            json!({"messages": msgs, "max_tokens": 100000}),
            400,
            "BadRequestError",
            Some("max_tokens"),
        ),
        (
            chat,
            json!({"messages": msgs, "n": 0}),
            400,
            "BadRequestError",
            Some("n"),
        ),
        (
            chat,
            json!({"messages": msgs, "n": 17}),
            400,
            "BadRequestError",
            Some("n"),
        ),
        (
            chat,
            json!({"messages": msgs, "stop": vec!["x"; 17]}),
            400,
            "BadRequestError",
            Some("stop"),
        ),
        (
            chat,
            json!({"messages": msgs, "stop": 5}),
            400,
            "BadRequestError",
            Some("stop"),
        ),
        (
            chat,
            json!({"messages": msgs, "logprobs": true, "top_logprobs": 21}),
            400,
            "BadRequestError",
            Some("top_logprobs"),
        ),
        (
            chat,
            json!({"messages": msgs, "top_logprobs": 2}),
            400,
            "BadRequestError",
            Some("top_logprobs"),
        ),
        (
            chat,
            json!({"messages": msgs, "logit_bias": {"abc": 1}}),
            400,
            "BadRequestError",
            Some("logit_bias"),
        ),
        (
            chat,
            json!({"messages": msgs, "logit_bias": {"999999999": 1}}),
            400,
            "BadRequestError",
            Some("logit_bias"),
        ),
        (
            chat,
            json!({"messages": msgs, "stop_token_ids": [-1]}),
            400,
            "BadRequestError",
            Some("stop_token_ids"),
        ),
        (
            chat,
            json!({"messages": msgs, "min_tokens": 10, "max_tokens": 5}),
            400,
            "BadRequestError",
            Some("min_tokens"),
        ),
        (
            chat,
            json!({"messages": msgs, "stream": "yes"}),
            400,
            "BadRequestError",
            Some("stream"),
        ),
        (
            chat,
            json!({"messages": msgs, "stream_options": {"include_usage": 1}}),
            400,
            "BadRequestError",
            Some("stream_options.include_usage"),
        ),
        (
            chat,
            json!({"messages": msgs, "tool_choice": "required"}),
            400,
            "BadRequestError",
            Some("tool_choice"),
        ),
        (
            chat,
            json!({"messages": msgs, "tools": [weather_tool()], "tool_choice": "sometimes"}),
            400,
            "BadRequestError",
            Some("tool_choice"),
        ),
        (
            chat,
            json!({"messages": msgs, "tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "other"}}}),
            400,
            "BadRequestError",
            Some("tool_choice"),
        ),
        (
            chat,
            json!({"messages": msgs, "tools": [{"type": "function", "function": {}}]}),
            400,
            "BadRequestError",
            Some("tools[0]"),
        ),
        (
            chat,
            json!({"messages": msgs, "response_format": {"type": "xml"}}),
            400,
            "BadRequestError",
            Some("response_format"),
        ),
        (
            chat,
            json!({"messages": msgs, "response_format": {"type": "json_schema"}}),
            400,
            "BadRequestError",
            Some("response_format"),
        ),
        (
            chat,
            json!({"messages": msgs, "continue_final_message": true}),
            400,
            "BadRequestError",
            Some("continue_final_message"),
        ),
        (
            chat,
            json!({"messages": [{"role": "user", "content": "x ".repeat(5000)}]}),
            400,
            "BadRequestError",
            Some("messages"),
        ),
        (
            "/v1/completions",
            json!({}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [-1]}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [[1, 2], [999999999]]}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": []}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "suffix": "y"}),
            400,
            "BadRequestError",
            Some("suffix"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "logprobs": 21}),
            400,
            "BadRequestError",
            Some("logprobs"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "best_of": 3}),
            400,
            "BadRequestError",
            Some("best_of"),
        ),
        (
            "/tokenize",
            json!({}),
            400,
            "BadRequestError",
            Some("prompt"),
        ),
        (
            "/detokenize",
            json!({"tokens": [-5]}),
            400,
            "BadRequestError",
            Some("tokens"),
        ),
    ];
    for (path, body, status, kind, param) in cases {
        let r = s.post(path, &body);
        assert_error(&r, status, kind, param);
    }
    // Bodies that are not JSON, wrong content types, methods and routes.
    assert_error(
        &s.post_raw(chat, Some("application/json"), b"{not json"),
        400,
        "BadRequestError",
        None,
    );
    assert_error(
        &s.post_raw(chat, Some("application/json"), b""),
        400,
        "BadRequestError",
        None,
    );
    assert_error(
        &s.post_raw(chat, Some("application/json"), b"[1, 2]"),
        400,
        "BadRequestError",
        None,
    );
    assert_error(
        &s.post_raw(chat, Some("text/plain"), b"{}"),
        400,
        "BadRequestError",
        None,
    );
    let no_ct = s.post_raw(
        chat,
        None,
        json!({"messages": msgs, "max_tokens": 1})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        no_ct.status, 200,
        "a body without Content-Type is read as JSON"
    );
    let r = s.method("GET", chat);
    assert_error(&r, 405, "MethodNotAllowedError", None);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_error(
        &s.method("DELETE", "/v1/models"),
        405,
        "MethodNotAllowedError",
        None,
    );
    assert_error(&s.get("/v1/nothing"), 404, "NotFoundError", None);
    assert_error(&too_large(s), 413, "RequestTooLargeError", None);
    // Unknown fields are ignored.
    let r = s.post(
        chat,
        &json!({"messages": msgs, "max_tokens": 1, "frobnicate": {"x": 1},
        "user": "u1", "parallel_tool_calls": false}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Still healthy.
    assert_eq!(s.get("/health").status, 200);
}

/// A request announcing a 33 MiB body: refused from its headers, before the body is read
/// (raw TCP, since a client still writing the body would see the connection close).
fn too_large(s: &TestServer) -> Reply {
    use std::io::{Read, Write};
    let addr = s.base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"messages\": ",
        33 << 20
    );
    conn.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = conn.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines().nth(1).unwrap_or_default().to_owned()
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers: Vec::new(),
        body,
    }
}

#[test]
fn structured_output_requests_are_accepted() {
    let s = server();
    for format in [
        json!({"type": "text"}),
        json!({"type": "json_object"}),
        json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}),
    ] {
        let r = s.post(
            "/v1/chat/completions",
            &json!({"messages": hello(), "max_tokens": 2,
            "response_format": format}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

/// Dropping the connection mid-stream cancels the request: the engine frees its sequence.
#[test]
fn client_disconnect_cancels_the_request() {
    let s = small_server();
    let body = json!({"messages": hello(), "max_tokens": 3000, "ignore_eos": true, "stream": true});
    let (status, _, mut reader) = s.open_stream("/v1/chat/completions", &body);
    assert_eq!(status, 200);
    let mut line = String::new();
    for _ in 0..6 {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    drop(reader);
    let start = Instant::now();
    s.wait_idle();
    assert!(start.elapsed() < Duration::from_secs(20));

    // A non-streamed request whose client gives up is cancelled too.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(300))
        .build();
    let r = agent
        .post(&s.url("/v1/chat/completions"))
        .send_json(json!({"messages": hello(), "max_tokens": 3000, "ignore_eos": true}));
    assert!(r.is_err(), "the client timed out");
    s.wait_idle();
}

/// With one running slot and one waiting slot, the third request is refused with 429.
#[test]
fn overload_is_429() {
    let s = small_server();
    s.wait_idle();
    let body = json!({"messages": hello(), "max_tokens": 3000, "ignore_eos": true, "stream": true});
    let (sa, _, mut a) = s.open_stream("/v1/chat/completions", &body);
    assert_eq!(sa, 200);
    // The role chunk comes before the engine runs; the first content chunk proves `a` runs.
    let mut line = String::new();
    for _ in 0..4 {
        a.read_line(&mut line).unwrap();
    }
    // `a` now runs (it produced output); `b` has to wait.
    let (sb, _, b) = s.open_stream("/v1/chat/completions", &body);
    assert_eq!(sb, 200);

    let r = s.post(
        "/v1/chat/completions",
        &json!({"messages": hello(), "max_tokens": 1}),
    );
    assert_error(&r, 429, "RateLimitError", None);
    drop(a);
    drop(b);
    s.wait_idle();
    // The freed slots are usable again.
    let start = Instant::now();
    loop {
        let r = s.post(
            "/v1/chat/completions",
            &json!({"messages": hello(), "max_tokens": 1}),
        );
        if r.status == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{}", r.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}
