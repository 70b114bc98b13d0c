//! The HTTP API end to end over real HTTP, against the tiny model served in-process: generation,
//! streaming, logprobs, tools, reasoning, metrics.

use crate::http_client;

use http_client::*;
use serde_json::{Value, json};

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
    // Without any parser flag, tools without a tool_choice ("auto") are served: Qwen3's
    // hermes parser and automatic tool choice are on by default (--disable-auto-tool-choice
    // and --tool-call-parser none turn them off; see api_agents.rs).
    let r = small_server().post(
        "/v1/chat/completions",
        &json!({"messages": hello(), "tools": [weather_tool()], "max_tokens": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
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
