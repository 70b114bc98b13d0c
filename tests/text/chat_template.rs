//! Chat templates render exactly what transformers renders, and tokenize to the same ids.
//!
//! The expected prompts and ids come from `scripts/fixtures/template_fixtures.py` (HF transformers on
//! the real Qwen3 tokenizer), committed in `tests/fixtures/templates/cases.json`.

use std::path::PathBuf;

use serde_json::{Map, Value, json};
use tealight::Error;
use tealight::tokenizer::{ChatTemplate, Tokenizer, prepare_messages, special_tokens_from_config};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny")
}

fn fixtures() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates/cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn qwen3_template() -> ChatTemplate {
    ChatTemplate::from_tokenizer_config(model_dir().join("tokenizer_config.json")).unwrap()
}

fn config_special_tokens() -> Map<String, Value> {
    let text = std::fs::read_to_string(model_dir().join("tokenizer_config.json")).unwrap();
    special_tokens_from_config(&serde_json::from_str(&text).unwrap())
}

/// Renders one fixture case the way the server would: prepare, then render.
fn render_case(template: &ChatTemplate, case: &Value) -> tealight::Result<String> {
    let messages = prepare_messages(case["messages"].as_array().unwrap())?;
    let tools = case["tools"].as_array().map(Vec::as_slice);
    let kwargs = case["kwargs"].as_object().unwrap();
    if case["continue_final_message"].as_bool().unwrap() {
        template.render_continue_final_message(&messages, tools, kwargs)
    } else {
        let add_generation_prompt = case["add_generation_prompt"].as_bool().unwrap();
        template.render(&messages, tools, add_generation_prompt, kwargs)
    }
}

#[test]
fn every_fixture_case_renders_byte_identical_and_tokenizes_identically() {
    let doc = fixtures();
    let qwen3 = qwen3_template();
    let tokenizer = Tokenizer::from_file(model_dir().join("tokenizer.json")).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 25, "fixture has only {} cases", cases.len());

    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let custom;
        let template = match case["template"].as_str() {
            Some(source) => {
                custom = ChatTemplate::new(source, config_special_tokens()).unwrap();
                &custom
            }
            None => &qwen3,
        };
        let rendered = render_case(template, case);
        if case["error"].as_bool().unwrap() {
            if let Ok(prompt) = rendered {
                failures.push(format!(
                    "{name}: transformers fails, but rendered {prompt:?}"
                ));
            }
            continue;
        }
        let expected = case["prompt"].as_str().unwrap();
        let prompt = match rendered {
            Ok(prompt) => prompt,
            Err(e) => {
                failures.push(format!("{name}: render failed: {e}"));
                continue;
            }
        };
        if prompt != expected {
            failures.push(format!(
                "{name}: prompt differs\n--- transformers\n{expected:?}\n--- tealight\n{prompt:?}"
            ));
            continue;
        }
        let ids = tokenizer.encode(&prompt, false).unwrap();
        let expected_ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        if ids != expected_ids {
            failures.push(format!("{name}: token ids differ"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn fixture_covers_the_required_shapes() {
    let doc = fixtures();
    let cases = doc["cases"].as_array().unwrap();
    let find = |name: &str| {
        cases
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("missing case {name}"))
    };
    let zh = find("zh_system_user");
    assert_eq!(
        zh["prompt"],
        "<|im_start|>system\n你是一个小助手<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    );
    let long = find("long_prompt");
    assert!(long["ids"].as_array().unwrap().len() >= 300);
    let no_think = find("enable_thinking_false");
    assert!(
        no_think["prompt"]
            .as_str()
            .unwrap()
            .ends_with("<think>\n\n</think>\n\n")
    );
}

#[test]
fn special_tokens_come_from_the_tokenizer_config() {
    let template = qwen3_template();
    let tokens = template.special_tokens();
    assert_eq!(tokens["eos_token"], "<|im_end|>");
    assert_eq!(tokens["pad_token"], "<|endoftext|>");
    // bos_token is null in Qwen3's config: undefined in the template, as in transformers.
    assert!(!tokens.contains_key("bos_token"));
    // The fixture records transformers' own special_tokens_map.
    let doc = fixtures();
    assert_eq!(&Value::Object(tokens.clone()), &doc["special_tokens_map"]);

    let config = json!({
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
        "eos_token": "</s>",
        "unk_token": null,
        "pad_token": 5
    });
    let tokens = special_tokens_from_config(&config);
    assert_eq!(
        Value::Object(tokens),
        json!({"bos_token": "<s>", "eos_token": "</s>"})
    );
}

#[test]
fn template_loads_from_model_dir_flag_file_and_literal() {
    let dir = std::env::temp_dir().join(format!("tealight-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        model_dir().join("tokenizer_config.json"),
        dir.join("tokenizer_config.json"),
    )
    .unwrap();
    let messages = [json!({"role": "user", "content": "hi"})];
    let none = Map::new();

    // Without chat_template.jinja the config's template is used.
    let from_dir = ChatTemplate::from_model_dir(&dir).unwrap();
    assert_eq!(from_dir.source(), qwen3_template().source());

    // chat_template.jinja takes priority, and still sees the config's special tokens.
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{{ messages[0].content }}{{ eos_token }}\n",
    )
    .unwrap();
    let from_dir = ChatTemplate::from_model_dir(&dir).unwrap();
    assert_eq!(
        from_dir.render(&messages, None, true, &none).unwrap(),
        "hi<|im_end|>"
    );

    let flag_file = dir.join("custom.jinja");
    std::fs::write(&flag_file, "[{{ messages | length }}]").unwrap();
    let from_file = ChatTemplate::from_flag(flag_file.to_str().unwrap(), Map::new()).unwrap();
    assert_eq!(
        from_file.render(&messages, None, true, &none).unwrap(),
        "[1]"
    );

    let literal = ChatTemplate::from_flag(
        "{% for m in messages %}{{ m.role }}{% endfor %}",
        Map::new(),
    )
    .unwrap();
    assert_eq!(
        literal.render(&messages, None, true, &none).unwrap(),
        "user"
    );

    match ChatTemplate::from_flag("/no/such/template.jinja", Map::new()) {
        Err(Error::Checkpoint { path, .. }) => {
            assert_eq!(path, PathBuf::from("/no/such/template.jinja"))
        }
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
    assert!(matches!(
        ChatTemplate::new("{% if %}", Map::new()),
        Err(Error::Template(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_list_of_templates_picks_tool_use_when_tools_are_given() {
    let dir = std::env::temp_dir().join(format!("tealight-templates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer_config.json");
    let config = json!({
        "eos_token": "<eos>",
        "chat_template": [
            {"name": "default", "template": "plain{{ eos_token }}"},
            {"name": "tool_use", "template": "tools={{ tools | length }}"}
        ]
    });
    std::fs::write(&path, config.to_string()).unwrap();
    let template = ChatTemplate::from_tokenizer_config(&path).unwrap();
    let messages = [json!({"role": "user", "content": "x"})];
    let tools = [json!({"type": "function"})];
    assert_eq!(
        template
            .render(&messages, None, false, &Map::new())
            .unwrap(),
        "plain<eos>"
    );
    assert_eq!(
        template
            .render(&messages, Some(&tools), false, &Map::new())
            .unwrap(),
        "tools=1"
    );

    std::fs::write(&path, "{not json").unwrap();
    match ChatTemplate::from_tokenizer_config(&path) {
        Err(Error::Checkpoint { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
    std::fs::write(&path, "{}").unwrap();
    assert!(matches!(
        ChatTemplate::from_tokenizer_config(&path),
        Err(Error::Checkpoint { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn user_input_that_breaks_the_template_is_an_error_not_a_panic() {
    let template = qwen3_template();
    let none = Map::new();
    // Empty conversation.
    assert!(matches!(
        template.render(&[], None, true, &none),
        Err(Error::InvalidRequest { .. })
    ));
    // A user message whose content is not a string: the template calls .startswith on it.
    let odd = [json!({"role": "user", "content": {"nested": true}})];
    assert!(template.render(&odd, None, true, &none).is_err());
    // A non-object message.
    assert!(matches!(
        template.render(&[json!(42)], None, true, &none),
        Err(Error::InvalidRequest { .. })
    ));
    // continue_final_message without text content to continue.
    let no_content = [json!({"role": "assistant", "tool_calls": []})];
    assert!(matches!(
        template.render_continue_final_message(&no_content, None, &none),
        Err(Error::InvalidRequest { .. })
    ));
    // raise_exception in a custom template surfaces its message.
    let strict = ChatTemplate::new("{{ raise_exception('only users here') }}", Map::new()).unwrap();
    match strict.render(
        &[json!({"role": "user", "content": "x"})],
        None,
        true,
        &none,
    ) {
        Err(Error::Template(message)) => assert!(message.contains("only users here"), "{message}"),
        other => panic!("expected a template error, got {other:?}"),
    }
}

#[test]
fn kwargs_override_special_tokens_but_not_render_arguments() {
    let template = ChatTemplate::new(
        "{{ eos_token }}|{{ add_generation_prompt }}|{{ messages | length }}|{{ tools }}",
        config_special_tokens(),
    )
    .unwrap();
    let mut extra = Map::new();
    extra.insert("eos_token".into(), json!("<override>"));
    extra.insert("add_generation_prompt".into(), json!(false));
    extra.insert("messages".into(), json!([]));
    let messages = [json!({"role": "user", "content": "x"})];
    assert_eq!(
        template.render(&messages, None, true, &extra).unwrap(),
        "<override>|True|1|None"
    );
}

#[test]
fn shared_types_can_cross_threads() {
    // One template and one tokenizer serve every request handler; each sequence's
    // detokenizer lives on the engine thread.
    fn shared<T: Send + Sync>() {}
    fn owned<T: Send>() {}
    shared::<ChatTemplate>();
    shared::<Tokenizer>();
    owned::<tealight::tokenizer::IncrementalDetokenizer>();
}
