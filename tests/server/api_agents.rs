//! The agent-facing behaviour over real HTTP: Qwen3 defaults on chat completions, and the
//! Responses API (`/v1/responses`) as Codex and the OpenAI SDKs use it. The Messages API is in
//! `api_anthropic.rs`.

use crate::http_client;

use http_client::*;
use serde_json::{Value, json};
use std::io::Read;
use std::sync::OnceLock;

/// The seed's own command: a key and nothing else (no parser flags).
fn plain() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--api-key", KEY]))
}

/// Qwen3's parsers turned off.
fn parsers_off() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--tool-call-parser", "none", "--reasoning-parser", "none"]))
}

fn sse(s: &TestServer, path: &str, body: &Value) -> Vec<(String, Value)> {
    let (status, ct, mut reader) = s.open_stream(path, body);
    let mut raw = String::new();
    reader.read_to_string(&mut raw).unwrap();
    assert_eq!(status, 200, "{raw}");
    assert!(ct.unwrap_or_default().starts_with("text/event-stream"));
    parse_named_sse(&raw)
}

fn forced_weather() -> Value {
    json!({"type": "function", "name": "get_weather"})
}

fn weather() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
                          "required": ["city"], "additionalProperties": false}})
}

#[test]
fn qwen3_parsers_are_on_without_flags_and_can_be_turned_off() {
    let tools = json!([weather_tool()]);
    let r = plain().post(
        "/v1/chat/completions",
        &json!({"messages": hello(), "tools": tools, "max_tokens": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = parsers_off().post(
        "/v1/chat/completions",
        &json!({"messages": hello(), "tools": tools, "max_tokens": 2}),
    );
    assert_error(&r, 400, "BadRequestError", Some("tool_choice"));

    // A prefill that opens the thinking block: reasoning by default, content when off.
    let body = json!({
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>\n"}],
        "add_generation_prompt": false, "continue_final_message": true,
        "max_tokens": 4, "temperature": 0, "ignore_eos": true,
    });
    let on = plain().chat(body.clone());
    assert!(
        !on["choices"][0]["message"]["reasoning_content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let off = parsers_off().chat(body);
    assert!(
        off["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );
    assert!(
        !off["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn developer_is_system_unknown_roles_and_lone_stream_options_are_refused() {
    let s = plain();
    let t = s
        .post(
            "/tokenize",
            &json!({"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]}),
        )
        .json();
    let prompt = tokenizer().decode(&ids(&t["tokens"]), false).unwrap();
    assert!(
        prompt.starts_with("<|im_start|>system\nBe brief.<|im_end|>"),
        "{prompt:?}"
    );
    let r = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "critic", "content": "x"}]}),
    );
    assert_error(&r, 400, "BadRequestError", Some("messages"));
    assert!(r.body.contains("critic"), "{}", r.body);
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"messages": hello(), "stream_options": {"include_usage": true}}),
        ),
        (
            "/v1/completions",
            json!({"prompt": "hi", "stream": false, "stream_options": {"include_usage": true}}),
        ),
    ] {
        assert_error(
            &s.post(path, &body),
            400,
            "BadRequestError",
            Some("stream_options"),
        );
    }
}

#[test]
fn a_length_cut_inside_a_call_leaks_no_markup() {
    let s = plain();
    let body = json!({"messages": hello(), "tools": [weather_tool()], "tool_choice": "required",
                      "max_tokens": 3});
    let r = s.chat(body.clone());
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "length");
    let content = choice["message"]["content"].as_str().unwrap_or("");
    assert!(!content.contains('<'), "{content:?}");
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (chunks, _) = s.stream("/v1/chat/completions", &streamed);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.contains('<'), "{text:?}");
}

/// What the OpenAI SDK's stream helper and Codex rely on; returns the done items.
fn check_response_stream(events: &[(String, Value)]) -> Vec<Value> {
    assert_eq!(events[0].0, "response.created");
    assert_eq!(events[1].0, "response.in_progress");
    let mut added: Vec<Value> = Vec::new();
    let mut done = Vec::new();
    for (n, (name, e)) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], n as u64);
        match name.as_str() {
            "response.output_item.added" => {
                assert_eq!(e["output_index"], added.len() as u64);
                added.push(e["item"].clone());
            }
            "response.output_text.delta" | "response.function_call_arguments.delta" => {
                let i = e["output_index"].as_u64().unwrap() as usize;
                assert_eq!(e["item_id"], added[i]["id"]);
                assert_eq!(done.len(), i, "a delta belongs to the open item");
            }
            "response.output_item.done" => {
                let i = e["output_index"].as_u64().unwrap() as usize;
                assert_eq!(e["item"]["id"], added[i]["id"]);
                done.push(e["item"].clone());
            }
            _ => {}
        }
    }
    let (last, terminal) = events.last().unwrap();
    assert!(
        last == "response.completed" || last == "response.incomplete",
        "{last}"
    );
    assert_eq!(terminal["response"]["output"], Value::Array(done.clone()));
    done
}

#[test]
fn responses_stream_and_json_agree() {
    let s = plain();
    let body = json!({"model": "gpt-5-codex", "input": "Say something.", "temperature": 0,
                      "max_output_tokens": 12, "reasoning": {"effort": "none"}});
    let r = s.post("/v1/responses", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let plain_json = r.json();
    assert_eq!(
        plain_json["model"], "gpt-5-codex",
        "any model name is served"
    );
    assert_eq!(plain_json["status"], "incomplete");
    assert_eq!(plain_json["usage"]["output_tokens"], 12);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = sse(s, "/v1/responses", &streamed);
    let items = check_response_stream(&events);
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, e)| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(
        text,
        plain_json["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
    );
    assert_eq!(items[0]["content"], plain_json["output"][0]["content"]);

    // A forced call: the arguments stream in pieces that add up to the final arguments.
    let call = json!({"input": "Weather in Paris?", "tools": [weather()], "tool_choice": forced_weather(),
                      "temperature": 0, "stream": true});
    let events = sse(s, "/v1/responses", &call);
    let items = check_response_stream(&events);
    let args: String = events
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, e)| e["delta"].as_str().unwrap())
        .collect();
    let fc = items.iter().find(|i| i["type"] == "function_call").unwrap();
    assert_eq!(fc["arguments"].as_str().unwrap(), args);
    assert!(serde_json::from_str::<Value>(&args).unwrap()["city"].is_string());
    assert_eq!(events.last().unwrap().1["response"]["status"], "completed");
}

#[test]
fn codex_shaped_requests_are_served() {
    let s = plain();
    let body = json!({
        "model": "gpt-5-codex", "stream": true, "store": false, "parallel_tool_calls": true,
        "tool_choice": "auto", "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k",
        "max_output_tokens": 4,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "run ls"}]},
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\": \"ls\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "README.md"},
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "strict": false,
             "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
            {"type": "custom", "name": "apply_patch", "description": "Edit files",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
            {"type": "namespace", "name": "agents", "description": "Sub-agents",
             "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}]},
            {"type": "web_search", "external_web_access": false},
            {"type": "image_generation"},
        ],
    });
    let events = sse(s, "/v1/responses", &body);
    check_response_stream(&events);
    // The prompt holds the history in Qwen3's form.
    let input = events.last().unwrap().1["response"]["usage"]["input_tokens"]
        .as_u64()
        .unwrap();
    assert!(input > 100, "{input}");

    // A forced custom tool comes back as a custom_tool_call with its free-form input.
    let mut forced = body.clone();
    forced["tool_choice"] = json!({"type": "custom", "name": "apply_patch"});
    forced["max_output_tokens"] = json!(60);
    forced["stream"] = json!(false);
    let r = s.post("/v1/responses", &forced).json();
    let call = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "custom_tool_call");
    let call = call.unwrap_or_else(|| panic!("{r}"));
    assert_eq!(call["name"], "apply_patch");
    assert!(call["input"].is_string() && call["call_id"].as_str().unwrap().starts_with("call_"));
}

#[test]
fn responses_are_stored_chained_and_retrieved() {
    let s = plain();
    let first = s
        .post(
            "/v1/responses",
            &json!({"input": "Remember blue.", "max_output_tokens": 3}),
        )
        .json();
    let id = first["id"].as_str().unwrap();
    let got = s.get(&format!("/v1/responses/{id}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), first);
    let second = s
        .post(
            "/v1/responses",
            &json!({"input": "Which colour?", "previous_response_id": id, "max_output_tokens": 3}),
        )
        .json();
    let alone = s
        .post(
            "/v1/responses",
            &json!({"input": "Which colour?", "max_output_tokens": 3}),
        )
        .json();
    assert!(second["usage"]["input_tokens"].as_u64() > alone["usage"]["input_tokens"].as_u64());
    assert_error(
        &s.get("/v1/responses/resp_nope"),
        404,
        "NotFoundError",
        Some("response_id"),
    );
    let r = s.post(
        "/v1/responses",
        &json!({"input": "x", "previous_response_id": "resp_nope"}),
    );
    assert_error(&r, 404, "NotFoundError", Some("previous_response_id"));
    let unstored = s
        .post(
            "/v1/responses",
            &json!({"input": "x", "store": false, "max_output_tokens": 1}),
        )
        .json();
    let gone = s.get(&format!(
        "/v1/responses/{}",
        unstored["id"].as_str().unwrap()
    ));
    assert_eq!(gone.status, 404);
}

#[test]
fn responses_bad_requests_are_400s() {
    let s = plain();
    let many: Vec<Value> = (0..129)
        .map(|i| json!({"type": "function", "name": format!("f{i}")}))
        .collect();
    for (body, param) in [
        (
            json!({"input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"input": "x", "max_output_tokens": 5000}),
            "max_output_tokens",
        ),
        (
            json!({"input": [{"role": "critic", "content": "x"}]}),
            "input[0]",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]}),
            "input[0]",
        ),
        (json!({"input": 3}), "input"),
        (json!({"input": "x", "tools": many}), "tools"),
        (
            json!({"input": "x", "tool_choice": {"type": "web_search"}}),
            "tool_choice",
        ),
        (
            json!({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}),
            "text.format",
        ),
        (json!({"input": "x", "temperature": "hot"}), "temperature"),
    ] {
        assert_error(
            &s.post("/v1/responses", &body),
            400,
            "BadRequestError",
            Some(param),
        );
    }
}

#[test]
fn responses_disconnect_cancels_and_is_counted() {
    let s = plain();
    let body = json!({"input": "Tell a long story.", "stream": true});
    s.hang_up_after("/v1/responses", &body, 12);
    let metrics = s.get("/metrics").body;
    assert!(
        metrics.contains(r#"route="/v1/responses",status="200""#),
        "{metrics}"
    );
}

/// A Responses error coded `context_length_exceeded` (the string Codex looks for).
fn context_error(r: &Reply, param: &str) {
    assert_eq!(r.status, 400, "{}", r.body);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "context_length_exceeded", "{}", r.body);
    assert_eq!(e["type"], "BadRequestError", "{}", r.body);
    assert_eq!(e["param"], param, "{}", r.body);
}

/// Twenty user turns of about 300 tokens: about 6,000 tokens against a 4,096-token context.
fn long_conversation() -> Vec<Value> {
    (0..20)
        .map(|i| json!({"role": "user", "content": format!("turn {i}: {}", "hello ".repeat(300))}))
        .collect()
}

#[test]
fn context_overflows_are_coded_and_truncation_auto_drops_the_oldest_items() {
    let s = plain();
    let input = long_conversation();
    let r = s.post(
        "/v1/responses",
        &json!({"input": input, "max_output_tokens": 2}),
    );
    context_error(&r, "input");
    let r = s.post(
        "/v1/responses",
        &json!({"input": "x", "max_output_tokens": 5000}),
    );
    context_error(&r, "max_output_tokens");
    let r = s.post(
        "/v1/chat/completions",
        &json!({"messages": hello(), "max_tokens": 100000}),
    );
    context_error(&r, "max_tokens");
    let r = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "x ".repeat(5000)}]}),
    );
    context_error(&r, "messages");

    // The oldest turns go; the instructions and the newest turns stay.
    for stream in [false, true] {
        let body = json!({"input": input, "truncation": "auto", "max_output_tokens": 50,
            "instructions": "Answer briefly.", "stream": stream});
        let done = if stream {
            let events = sse(s, "/v1/responses", &body);
            events.last().unwrap().1["response"].clone()
        } else {
            let r = s.post("/v1/responses", &body);
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()
        };
        assert_eq!(done["truncation"], "auto");
        let used = done["usage"]["input_tokens"].as_u64().unwrap();
        assert!(used + 50 <= 4096 && used > 3000, "{used}");
    }
    // The stored conversation is what the prompt held: chaining onto it still fits.
    let first = s
        .post(
            "/v1/responses",
            &json!({"input": input, "truncation": "auto", "max_output_tokens": 2}),
        )
        .json();
    let r = s.post(
        "/v1/responses",
        &json!({"input": "and?", "previous_response_id": first["id"], "truncation": "auto",
            "max_output_tokens": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // A last item that cannot fit alone is still an overflow.
    let r = s.post(
        "/v1/responses",
        &json!({"input": "hello ".repeat(5000), "truncation": "auto"}),
    );
    context_error(&r, "input");
}

#[test]
fn responses_report_logprobs_when_asked() {
    let s = plain();
    for stream in [false, true] {
        let body = json!({"input": "x", "max_output_tokens": 4, "top_logprobs": 2, "temperature": 0,
            "include": ["message.output_text.logprobs"], "reasoning": {"effort": "none"},
            "stream": stream});
        let (done, deltas) = if stream {
            let events = sse(s, "/v1/responses", &body);
            let deltas: Vec<Value> = events
                .iter()
                .filter(|(kind, _)| kind == "response.output_text.delta")
                .flat_map(|(_, e)| e["logprobs"].as_array().unwrap().clone())
                .collect();
            (events.last().unwrap().1["response"].clone(), Some(deltas))
        } else {
            (s.post("/v1/responses", &body).json(), None)
        };
        assert_eq!(done["top_logprobs"], 2);
        let part = &done["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "message")
            .unwrap_or_else(|| panic!("{done}"))["content"][0];
        let entries = part["logprobs"].as_array().unwrap();
        assert!(!entries.is_empty(), "{done}");
        let spelled: String = entries
            .iter()
            .map(|e| e["token"].as_str().unwrap())
            .collect();
        assert_eq!(spelled, part["text"], "one entry a token of the text");
        for e in entries {
            assert!(e["logprob"].as_f64().unwrap() <= 0.0);
            assert_eq!(e["top_logprobs"].as_array().unwrap().len(), 2);
        }
        if let Some(deltas) = deltas {
            assert_eq!(&deltas, entries, "the deltas carry the same entries");
        }
    }
    let plain_text = s
        .post(
            "/v1/responses",
            &json!({"input": "x", "max_output_tokens": 2, "reasoning": {"effort": "none"}}),
        )
        .json();
    assert_eq!(plain_text["output"][0]["content"][0]["logprobs"], json!([]));
}

#[test]
fn unimplemented_responses_fields_are_refused_by_name() {
    let s = plain();
    for (field, value, param) in [
        ("conversation", json!("conv_1"), "conversation"),
        ("background", json!(true), "background"),
        ("top_logprobs", json!(99), "top_logprobs"),
        (
            "include",
            json!(["reasoning.encrypted_content", "web_search_call.results"]),
            "include[1]",
        ),
        ("truncation", json!("middle"), "truncation"),
        ("metadata", json!({"k": [1, 2, 3]}), "metadata"),
    ] {
        let mut body = json!({"input": "x", "max_output_tokens": 1});
        body[field] = value;
        assert_error(
            &s.post("/v1/responses", &body),
            400,
            "BadRequestError",
            Some(param),
        );
    }
    let neutral = json!({"input": "x", "max_output_tokens": 1, "conversation": null,
        "background": false, "top_logprobs": 0, "include": ["reasoning.encrypted_content"],
        "truncation": "disabled"});
    assert_eq!(s.post("/v1/responses", &neutral).status, 200);
}

#[test]
fn item_references_resolve_against_the_store_or_are_refused() {
    let s = plain();
    let first = s
        .post(
            "/v1/responses",
            &json!({"input": [{"type": "message", "id": "msg_mine", "role": "user",
                "content": "Remember blue, the colour of the sea and of the sky at noon."}],
                "max_output_tokens": 3}),
        )
        .json();
    let said = first["output"][0]["id"].as_str().unwrap().to_owned();
    let alone = s
        .post(
            "/v1/responses",
            &json!({"input": "Which colour?", "max_output_tokens": 1}),
        )
        .json();
    let referenced = s.post(
        "/v1/responses",
        &json!({"input": [
            {"type": "item_reference", "id": "msg_mine", "payload": vec![7; 1000]},
            {"type": "item_reference", "id": said},
            {"role": "user", "content": "Which colour?"}],
            "max_output_tokens": 1}),
    );
    assert_eq!(referenced.status, 200, "{}", referenced.body);
    let grew = referenced.json()["usage"]["input_tokens"].as_u64().unwrap()
        - alone["usage"]["input_tokens"].as_u64().unwrap();
    assert!(grew > 15, "the referenced items are in the prompt: {grew}");
    let r = s.post(
        "/v1/responses",
        &json!({"input": [{"role": "user", "content": "hi"},
            {"type": "item_reference", "id": "msg_never_stored"}]}),
    );
    assert_error(&r, 400, "BadRequestError", Some("input[1]"));
    assert!(r.body.contains("msg_never_stored"), "{}", r.body);
}

#[test]
fn stored_responses_are_served_as_stored_and_echo_hosted_tools_by_type() {
    let s = plain();
    let junk: Vec<u32> = (0..1000).collect();
    let r = s
        .post(
            "/v1/responses",
            &json!({"input": [{"role": "user", "content": "hi"},
                {"type": "web_search_call", "id": "ws_1", "action": {"junk": junk}}],
                "tools": [{"type": "web_search", "filters": {"junk": junk}}],
                "max_output_tokens": 2}),
        )
        .json();
    assert_eq!(r["tools"], json!([{"type": "web_search"}]));
    let got = s.get(&format!("/v1/responses/{}", r["id"].as_str().unwrap()));
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.json(), r);
    // The dropped hosted-tool call was not kept: it cannot be referenced.
    let ref_dropped = s.post(
        "/v1/responses",
        &json!({"input": [{"type": "item_reference", "id": "ws_1"}, {"role": "user", "content": "x"}]}),
    );
    assert_error(&ref_dropped, 400, "BadRequestError", Some("input[0]"));
}

#[test]
fn the_tool_count_is_a_flag() {
    static S: OnceLock<TestServer> = OnceLock::new();
    let s = S.get_or_init(|| start(&["--max-tools", "2"]));
    let tools: Vec<Value> = (0..3)
        .map(|i| json!({"type": "function", "function": {"name": format!("f{i}")}}))
        .collect();
    let r = s.post(
        "/v1/chat/completions",
        &json!({"messages": hello(), "tools": tools, "max_tokens": 1}),
    );
    assert_error(&r, 400, "BadRequestError", Some("tools"));
    assert!(r.body.contains("--max-tools"), "{}", r.body);
    let hosted: Vec<Value> = (0..3).map(|_| json!({"type": "web_search"})).collect();
    let r = s.post("/v1/responses", &json!({"input": "x", "tools": hosted}));
    assert_error(&r, 400, "BadRequestError", Some("tools"));
}
