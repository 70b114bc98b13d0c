//! The Messages API (`/v1/messages`, `/v1/messages/count_tokens`) over real HTTP, as Claude
//! Code and the Anthropic SDKs use it: `x-api-key`, `?beta=true`, named SSE events with an early
//! `ping`, Anthropic-shaped errors, `max_tokens` clamped to the context.

use crate::http_client;

use http_client::*;
use serde_json::{Value, json};
use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--api-key", KEY, "--served-model-name", "tiny"]))
}

fn strict() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--served-model-name", "tiny", "--strict-model-name"]))
}

/// A request with `headers`, returning status, content type and body.
fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let mut req = agent.request(method, &s.url(path));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.set("content-type", "application/json").send_string(b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let ct = response.header("content-type").unwrap_or("").to_owned();
    let mut text = String::new();
    response.into_reader().read_to_string(&mut text).unwrap();
    (status, ct, text)
}

fn messages(body: &Value) -> (u16, String, String) {
    call(
        server(),
        "POST",
        "/v1/messages?beta=true",
        &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        Some(&body.to_string()),
    )
}

fn anthropic_error(text: &str, kind: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("{text}"));
    assert_eq!(v["type"], "error", "{text}");
    assert_eq!(v["error"]["type"], kind, "{text}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[test]
fn keys_routes_and_error_shapes() {
    let s = server();
    let ok = json!({"model": "claude-haiku-4-5", "max_tokens": 2, "messages": user("hi")});
    let (status, _, text) = messages(&ok);
    assert_eq!(status, 200, "{text}");
    let m: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["model"], "claude-haiku-4-5", "any model name is served");
    assert_eq!(
        (m["type"].as_str(), m["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    let bearer = format!("Bearer {KEY}");
    let (status, _, _) = call(
        s,
        "POST",
        "/v1/messages",
        &[("authorization", &bearer)],
        Some(&ok.to_string()),
    );
    assert_eq!(status, 200);
    let (status, _, text) = call(
        s,
        "POST",
        "/v1/messages",
        &[("x-api-key", "wrong")],
        Some(&ok.to_string()),
    );
    assert_eq!(status, 401);
    anthropic_error(&text, "authentication_error");
    let (status, _, text) = call(s, "POST", "/v1/messages", &[], Some(&ok.to_string()));
    assert_eq!(status, 401);
    anthropic_error(&text, "authentication_error");
    // Claude Code's first request: HEAD / without credentials.
    let (status, _, _) = call(s, "HEAD", "/", &[], None);
    assert_eq!(status, 200);

    let key = [("x-api-key", KEY)];
    let (status, _, text) = call(s, "POST", "/v1/messages", &key, Some("{not json"));
    assert_eq!(status, 400);
    anthropic_error(&text, "invalid_request_error");
    let (status, _, text) = call(
        s,
        "POST",
        "/v1/messages",
        &key,
        Some(&json!({"model": "m", "messages": user("x")}).to_string()),
    );
    assert_eq!(status, 400, "max_tokens is required");
    anthropic_error(&text, "invalid_request_error");
    let (status, _, text) = call(
        s,
        "POST",
        "/v1/messages",
        &key,
        Some(&json!({"model": "m", "max_tokens": 0, "messages": user("x")}).to_string()),
    );
    assert_eq!(status, 400);
    anthropic_error(&text, "invalid_request_error");
    // A sampling field of the wrong type is named, though the sampling fields are a view of
    // their own.
    let hot = json!({"model": "m", "max_tokens": 1, "messages": user("x"), "temperature": "hot"});
    let (status, _, text) = call(s, "POST", "/v1/messages", &key, Some(&hot.to_string()));
    assert_eq!(status, 400);
    anthropic_error(&text, "invalid_request_error");
    assert!(text.contains("temperature"), "{text}");
    let (status, _, text) = call(s, "GET", "/v1/messages", &key, None);
    assert_eq!(status, 405);
    anthropic_error(&text, "invalid_request_error");

    let (status, _, text) = call(strict(), "POST", "/v1/messages", &[], Some(&ok.to_string()));
    assert_eq!(status, 404);
    anthropic_error(&text, "not_found_error");
    let tiny = json!({"model": "tiny", "max_tokens": 1, "messages": user("hi")});
    let (status, _, _) = call(
        strict(),
        "POST",
        "/v1/messages",
        &[],
        Some(&tiny.to_string()),
    );
    assert_eq!(status, 200);
}

#[test]
fn streams_are_named_ping_early_and_match_the_json_answer() {
    let body = json!({"model": "m", "max_tokens": 10, "temperature": 0, "system": "Be brief.",
                      "messages": user("Tell me about the sea.")});
    let (_, _, text) = messages(&body);
    let whole: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(whole["stop_reason"], "max_tokens");
    assert_eq!(whole["usage"]["output_tokens"], 10);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (status, ct, raw) = messages(&streamed);
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/event-stream"));
    let evs = parse_named_sse(&raw);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["message_start", "ping", "content_block_start"]);
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let text: String = evs
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, e)| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, whole["content"][0]["text"].as_str().unwrap());
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 10);
}

#[test]
fn forced_tool_use_streams_its_input_and_results_go_back() {
    let tool = json!({"name": "get_weather", "description": "Weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
                         "required": ["city"], "additionalProperties": false}});
    let body = json!({"model": "m", "max_tokens": 100, "temperature": 0, "tools": [tool],
                      "tool_choice": {"type": "tool", "name": "get_weather"}, "messages": user("Weather in Paris?")});
    let (_, _, text) = messages(&body);
    let whole: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(whole["stop_reason"], "tool_use", "{whole}");
    let block = whole["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap()
        .clone();
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (_, _, raw) = messages(&streamed);
    let evs = parse_named_sse(&raw);
    let start = evs
        .iter()
        .find(|(n, e)| n == "content_block_start" && e["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(start.1["content_block"]["input"], json!({}));
    let partial: String = evs
        .iter()
        .filter(|(_, e)| e["delta"]["type"] == "input_json_delta")
        .map(|(_, e)| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        block["input"]
    );

    let follow = json!({"model": "m", "max_tokens": 2, "tools": [tool], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": whole["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "sunny"}]}]});
    let (status, _, text) = messages(&follow);
    assert_eq!(status, 200, "{text}");
}

#[test]
fn max_tokens_is_clamped_to_the_context_and_count_tokens_agrees() {
    // Claude Code asks for 32000 output tokens; here the context (4096) has ~30 left.
    let long = "hello ".repeat(4060);
    let counted = call(
        server(),
        "POST",
        "/v1/messages/count_tokens",
        &[("x-api-key", KEY)],
        Some(&json!({"model": "m", "messages": user(&long)}).to_string()),
    );
    assert_eq!(counted.0, 200, "{}", counted.2);
    let prompt = serde_json::from_str::<Value>(&counted.2).unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(prompt < 4096 && prompt > 4000, "{prompt}");
    let (status, _, text) =
        messages(&json!({"model": "m", "max_tokens": 32000, "messages": user(&long)}));
    assert_eq!(status, 200, "{text}");
    let m: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["stop_reason"], "max_tokens");
    let usage = &m["usage"];
    let input = usage["input_tokens"].as_u64().unwrap()
        + usage["cache_read_input_tokens"].as_u64().unwrap();
    assert_eq!(input, prompt);
    assert_eq!(usage["output_tokens"].as_u64().unwrap(), 4096 - prompt);

    let (status, _, text) =
        messages(&json!({"model": "m", "max_tokens": 5, "messages": user(&"hello ".repeat(5000))}));
    assert_eq!(status, 400);
    anthropic_error(&text, "invalid_request_error");
    prompt_too_long(&text);
}

/// Anthropic's words for a prompt over the context, which Claude Code reads to compact.
fn prompt_too_long(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    let rest = message
        .strip_prefix("prompt is too long: ")
        .unwrap_or_else(|| panic!("{text}"));
    let (tokens, max) = rest
        .strip_suffix(" maximum")
        .and_then(|r| r.split_once(" tokens > "))
        .unwrap_or_else(|| panic!("{text}"));
    let tokens: u64 = tokens.parse().unwrap();
    assert_eq!(max, "4096", "{text}");
    assert!(tokens > 4096, "{text}");
}

#[test]
fn prompts_over_the_context_are_too_long_in_anthropic_words() {
    // Over the token count (tokenized), then over the byte bound (refused before tokenizing).
    for text in ["hello ".repeat(5000), "a".repeat(2_000_000)] {
        let body = json!({"model": "m", "max_tokens": 5, "messages": user(&text)});
        for stream in [false, true] {
            let mut body = body.clone();
            body["stream"] = json!(stream);
            let (status, _, text) = messages(&body);
            assert_eq!(status, 400, "{text}");
            anthropic_error(&text, "invalid_request_error");
            prompt_too_long(&text);
        }
    }
    let (status, _, text) = call(
        server(),
        "POST",
        "/v1/messages/count_tokens",
        &[("x-api-key", KEY)],
        Some(&json!({"model": "m", "messages": user(&"a".repeat(2_000_000))}).to_string()),
    );
    assert_eq!(status, 400, "{text}");
    prompt_too_long(&text);
}
