//! Qwen3-Coder's tool-call format chosen by the chat template alone: a server whose template is
//! Qwen3-Coder's (no `--tool-call-parser`) renders tools and past calls as `<function=…>`
//! markup, forces calls in that format, and answers them as `tool_calls`, streamed and not.

use crate::http_client;

use http_client::*;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// A server over the tiny model with Qwen3-Coder's chat template and no parser flags.
fn coder() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| {
        let template = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/templates/qwen3_coder.jinja"
        );
        start(&["--chat-template", template, "--reasoning-parser", "none"])
    })
}

/// Every value bounded, so that even the random tiny model finishes the call quickly.
fn mode_tool() -> Value {
    json!({"type": "function", "function": {"name": "set_mode", "description": "Sets the mode",
        "parameters": {"type": "object", "properties": {
            "mode": {"type": "string", "enum": ["fast", "safe", "off"]},
            "level": {"type": "integer", "minimum": 0, "maximum": 9},
            "verbose": {"type": "boolean"}
        }, "required": ["mode", "level", "verbose"]}}})
}

fn check_arguments(arguments: &str) -> Value {
    let args: Value = serde_json::from_str(arguments)
        .unwrap_or_else(|e| panic!("arguments are JSON ({e}): {arguments:?}"));
    let mode = args["mode"].as_str().expect("mode is a string");
    assert!(["fast", "safe", "off"].contains(&mode), "{args}");
    let level = args["level"].as_i64().expect("level is an integer");
    assert!((0..=9).contains(&level), "{args}");
    assert!(args["verbose"].is_boolean(), "{args}");
    assert_eq!(args.as_object().map(|o| o.len()), Some(3), "{args}");
    args
}

#[test]
fn the_coder_template_selects_its_format() {
    let s = coder();
    // Tools and a past call render in the Coder format.
    let messages = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}
    ]);
    let t = s.post(
        "/tokenize",
        &json!({"messages": messages, "tools": [weather_tool()]}),
    );
    assert_eq!(t.status, 200, "{}", t.body);
    let t = t.json();
    let prompt = tokenizer().decode(&ids(&t["tokens"]), false).unwrap();
    assert!(
        prompt.contains(
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"
        ),
        "{prompt}"
    );
    assert!(prompt.contains("<name>get_weather</name>"), "{prompt}");

    // A forced call comes back as a tool call whose arguments follow the schema.
    let body = json!({
        "messages": [{"role": "user", "content": "Set the mode."}],
        "tools": [mode_tool()],
        "tool_choice": {"type": "function", "function": {"name": "set_mode"}},
        "temperature": 0, "max_tokens": 200,
    });
    let r = s.chat(body.clone());
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{r}");
    let calls = choice["message"]["tool_calls"]
        .as_array()
        .expect("tool_calls");
    assert_eq!(calls.len(), 1, "{r}");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "set_mode");
    assert!(calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()));
    let whole = calls[0]["function"]["arguments"]
        .as_str()
        .unwrap()
        .to_owned();
    check_arguments(&whole);
    let content = choice["message"]["content"].as_str().unwrap_or_default();
    assert!(
        !content.contains("<function="),
        "markup leaked: {content:?}"
    );

    // Streamed: the name first, then argument pieces adding up to the same arguments.
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (chunks, done) = s.stream("/v1/chat/completions", &streamed);
    assert!(done);
    let mut name = None;
    let mut arguments = String::new();
    let mut finish = None;
    for chunk in &chunks {
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(call["index"], 0);
            if let Some(n) = call["function"]["name"].as_str() {
                assert!(name.is_none(), "the name comes once");
                assert!(arguments.is_empty(), "the name comes first");
                name = Some(n.to_owned());
            }
            if let Some(piece) = call["function"]["arguments"].as_str() {
                arguments.push_str(piece);
            }
        }
    }
    assert_eq!(name.as_deref(), Some("set_mode"));
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    // Greedy decoding: the same output as the non-streamed request.
    assert_eq!(arguments, whole);
}

#[test]
fn required_tool_choice_forces_coder_calls() {
    let body = json!({
        "messages": [{"role": "user", "content": "Set the mode."}],
        "tools": [mode_tool(), weather_tool()],
        "tool_choice": "required", "parallel_tool_calls": false,
        "temperature": 0.8, "seed": 5, "max_tokens": 300,
    });
    let r = coder().chat(body);
    let calls = r["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("tool_calls: {r}"));
    // The random model may pick either tool; a weather call's free-text city may run to the
    // token limit, a mode call always completes and follows its schema.
    assert_eq!(calls.len(), 1, "{r}");
    let name = calls[0]["function"]["name"].as_str().unwrap();
    assert!(name == "set_mode" || name == "get_weather", "{r}");
    let arguments = calls[0]["function"]["arguments"].as_str().unwrap();
    let args: Value = serde_json::from_str(arguments).unwrap_or_else(|e| panic!("{e}: {r}"));
    if name == "set_mode" {
        check_arguments(arguments);
    } else {
        assert!(args["city"].is_string(), "{r}");
    }
}
