//! The hermes parser against fixed and randomly chunked outputs.

use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Collected result: content, and per call (name, concatenated arguments).
fn collect(deltas: impl IntoIterator<Item = ToolCallsDelta>) -> (String, Vec<(String, String)>) {
    let mut content = String::new();
    let mut calls: Vec<(String, String)> = Vec::new();
    for d in deltas {
        content.push_str(&d.content);
        for c in d.calls {
            if let Some(name) = c.name {
                assert_eq!(c.index, calls.len(), "indices are dense and in order");
                calls.push((name, String::new()));
            }
            calls[c.index].1.push_str(&c.arguments);
        }
    }
    (content, calls)
}

fn stream(text: &str, cuts: &[usize]) -> (String, Vec<(String, String)>) {
    let mut p = HermesToolParser::new();
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| c % (text.len() + 1))
        .filter(|&c| text.is_char_boundary(c))
        .collect();
    points.sort_unstable();
    points.dedup();
    points.push(text.len());
    let mut deltas = Vec::new();
    let mut last = 0;
    for c in points {
        if c >= last {
            deltas.push(p.push(&text[last..c]));
            last = c;
        }
    }
    deltas.push(p.finish());
    collect(deltas)
}

fn one_shot(text: &str) -> (String, Vec<(String, String)>) {
    collect([HermesToolParser::parse(text)])
}

fn by_char(text: &str) -> (String, Vec<(String, String)>) {
    let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    stream(text, &cuts)
}

#[test]
fn single_call_with_text_before() {
    let text = "Let me check.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    let want = (
        "Let me check.\n\n".to_owned(),
        vec![("get_weather".to_owned(), "{\"city\": \"Paris\"}".to_owned())],
    );
    assert_eq!(one_shot(text), want);
    assert_eq!(by_char(text), want);
}

#[test]
fn nested_unicode_and_braces_in_strings() {
    let args = r#"{"q": {"text": "a } b { \" c", "tags": ["x", {"y": [1, 2]}]}, "城市": "北京 🌧"}"#;
    let text = format!(
        "<tool_call>\n{{\"name\": \"search\", \"arguments\": {args}}}\n</tool_call>\n<tool_call>\n{{\"name\": \"b\", \"arguments\": {{}}}}\n</tool_call>"
    );
    let want = (
        String::new(),
        vec![
            ("search".to_owned(), args.to_owned()),
            ("b".to_owned(), "{}".to_owned()),
        ],
    );
    assert_eq!(one_shot(&text), want);
    assert_eq!(by_char(&text), want);
    let v: Value = serde_json::from_str(&want.1[0].1).unwrap();
    assert_eq!(v["城市"], "北京 🌧");
}

#[test]
fn first_delta_has_name_then_fragments() {
    let mut p = HermesToolParser::new();
    assert!(p.push("<tool_call>\n{\"name\": \"f\"").is_empty());
    let d = p.push(", \"arguments\": {\"a\"");
    assert_eq!(
        d.calls,
        vec![
            ToolCallDelta {
                index: 0,
                name: Some("f".into()),
                arguments: String::new()
            },
            ToolCallDelta {
                index: 0,
                name: None,
                arguments: "{\"a\"".into()
            }
        ]
    );
    let d = p.push(": 1}}\n</tool_call>");
    assert_eq!(d.calls[0].arguments, ": 1}");
    assert!(p.finish().is_empty());
}

#[test]
fn off_path_blocks_are_parsed_whole() {
    let text = "<tool_call>{\"arguments\": {\"x\": 1}, \"name\": \"f\"}</tool_call>";
    assert_eq!(
        one_shot(text),
        (String::new(), vec![("f".into(), "{\"x\":1}".into())])
    );
    let text = "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>";
    assert_eq!(
        one_shot(text),
        (String::new(), vec![("f".into(), "{\"x\": 1}".into())])
    );
    assert_eq!(by_char(text), one_shot(text));
}

#[test]
fn invalid_block_is_content() {
    let text = "a<tool_call>not json</tool_call>b";
    assert_eq!(one_shot(text), (text.to_owned(), vec![]));
    assert_eq!(by_char(text), one_shot(text));
    let text = "a<tool_call>{\"na";
    assert_eq!(one_shot(text), (text.to_owned(), vec![]));
    assert_eq!(by_char(text), one_shot(text));
}

#[test]
fn truncated_call_keeps_partial_arguments() {
    let text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1, 2";
    assert_eq!(
        one_shot(text),
        (String::new(), vec![("f".into(), "{\"a\": [1, 2".into())])
    );
    assert_eq!(by_char(text), one_shot(text));
}

#[test]
fn no_calls_is_plain_content() {
    for text in ["hello", "a < b", "<tool", "x <tool_cal y", ""] {
        assert_eq!(one_shot(text), (text.to_owned(), vec![]));
        assert_eq!(by_char(text), one_shot(text));
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        "[a-z{}\\[\\]\"\\\\ é你🌧<>/_]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z城]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn streamed_arguments_equal_one_shot(
        prefix in "[a-z <\n]{0,6}",
        calls in prop::collection::vec(
            ("[a-z_]{1,8}", prop::collection::btree_map("[a-z城]{1,5}", arb_json(), 0..4), any::<bool>()),
            0..4,
        ),
        cuts in prop::collection::vec(0usize..2000, 0..40),
    ) {
        let mut text = prefix.clone();
        let mut want = Vec::new();
        for (name, args, pretty) in &calls {
            let args = Value::Object(args.clone().into_iter().collect());
            let args_text = if *pretty {
                serde_json::to_string_pretty(&args).unwrap()
            } else {
                serde_json::to_string(&args).unwrap()
            };
            text.push_str(&format!(
                "<tool_call>\n{{\"name\": {}, \"arguments\": {args_text}}}\n</tool_call>\n",
                json!(name)
            ));
            want.push((name.clone(), args_text, args));
        }
        let whole = one_shot(&text);
        prop_assert_eq!(&stream(&text, &cuts), &whole);
        prop_assert_eq!(&by_char(&text), &whole);
        prop_assert_eq!(whole.1.len(), want.len());
        for ((name, args), (want_name, want_text, want_value)) in whole.1.iter().zip(&want) {
            prop_assert_eq!(name, want_name);
            prop_assert_eq!(args, want_text);
            let parsed: Value = serde_json::from_str(args).unwrap();
            prop_assert_eq!(&parsed, want_value);
        }
        if !calls.is_empty() {
            prop_assert_eq!(whole.0, prefix);
        }
    }
}

#[test]
fn a_cut_leaks_no_call_markup() {
    for (text, content, calls) in [
        ("Sure.<tool_call>\n{\"na", "Sure.", 0),
        ("Sure.<tool_c", "Sure.", 0),
        (
            "<tool_call>\n{\"arguments\": {\"a\": 1}, \"name\": \"f",
            "",
            0,
        ),
        (
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": ",
            "",
            1,
        ),
    ] {
        let mut p = HermesToolParser::new();
        let mut out = p.push(text);
        out.extend(p.finish_cut());
        assert_eq!(out.content, content, "{text:?}");
        let named = out.calls.iter().filter(|c| c.name.is_some()).count();
        assert_eq!(named, calls, "{text:?}");
        assert!(!out.content.contains('<'), "{text:?}");
    }
}
