//! The Coder parser against fixed outputs, typed values, and generated outputs cut at random.

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// Content, and per call (name, concatenated arguments).
type Message = (String, Vec<(String, String)>);

fn collect(deltas: impl IntoIterator<Item = ToolCallsDelta>) -> Message {
    let mut content = String::new();
    let mut calls: Vec<(String, String)> = Vec::new();
    for d in deltas {
        content.push_str(&d.content);
        for c in d.calls {
            if let Some(name) = c.name {
                assert_eq!(c.index, calls.len(), "indices are dense and in order");
                assert!(c.arguments.is_empty(), "the name comes alone");
                calls.push((name, String::new()));
            }
            calls[c.index].1.push_str(&c.arguments);
        }
    }
    (content, calls)
}

fn schemas() -> Arc<ToolSchemas> {
    let weather = json!({"type": "object", "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "scale": {"type": "number"},
        "metric": {"type": "boolean"},
        "where": {"type": "object"},
        "hours": {"type": "array"},
        "unit": {"type": ["null", "string"]},
        "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    }});
    let write = json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}});
    Arc::new(ToolSchemas::new([
        ("get_weather", &weather),
        ("write_file", &write),
    ]))
}

/// Feeds `text` cut at `cuts` (byte offsets, any order), then finishes.
fn stream_at(text: &str, cuts: &[usize], cut_end: bool) -> Message {
    let mut p = Qwen3CoderToolParser::new(schemas());
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
        deltas.push(p.push(&text[last..c]));
        last = c;
    }
    deltas.push(if cut_end { p.finish_cut() } else { p.finish() });
    collect(deltas)
}

fn one_shot(text: &str) -> Message {
    collect([Qwen3CoderToolParser::parse(text, schemas())])
}

fn by_char(text: &str) -> Message {
    let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    stream_at(text, &cuts, false)
}

/// One call as Qwen3-Coder's template renders it.
fn call(name: &str, params: &[(&str, &str)]) -> String {
    let mut s = format!("<tool_call>\n<function={name}>\n");
    for (k, v) in params {
        s.push_str(&format!("<parameter={k}>\n{v}\n</parameter>\n"));
    }
    s.push_str("</function>\n</tool_call>");
    s
}

fn args(m: &Message, i: usize) -> Value {
    serde_json::from_str(&m.1[i].1).unwrap_or_else(|e| panic!("{e}: {:?}", m.1[i].1))
}

#[test]
fn the_template_example_with_text_before() {
    let text = format!(
        "I'll check.\n{}",
        call("get_weather", &[("city", "Beijing"), ("days", "3")])
    );
    let want = (
        "I'll check.\n".to_owned(),
        vec![(
            "get_weather".to_owned(),
            r#"{"city": "Beijing", "days": 3}"#.to_owned(),
        )],
    );
    assert_eq!(one_shot(&text), want);
    assert_eq!(by_char(&text), want);
}

#[test]
fn values_are_typed_by_the_schema() {
    let text = call(
        "get_weather",
        &[
            ("city", "3"),
            ("days", " 7 "),
            ("scale", "2.5"),
            ("metric", "True"),
            ("where", r#"{"lat": 1.5, "tags": ["a", "b"]}"#),
            ("hours", "[1, 2]"),
            ("unit", "null"),
            ("limit", "12"),
            ("extra", "42"),
        ],
    );
    let m = one_shot(&text);
    assert_eq!(
        args(&m, 0),
        json!({"city": "3", "days": 7, "scale": 2.5, "metric": true,
               "where": {"lat": 1.5, "tags": ["a", "b"]}, "hours": [1, 2],
               "unit": null, "limit": 12, "extra": "42"})
    );
    // Written as vLLM writes it: Python's separators, object keys in the model's order.
    assert!(
        m.1[0]
            .1
            .contains(r#""where": {"lat": 1.5, "tags": ["a", "b"]}, "hours": [1, 2]"#),
        "{}",
        m.1[0].1
    );
    assert_eq!(by_char(&text), m);
}

#[test]
fn values_that_do_not_fit_their_type_stay_strings() {
    let text = call(
        "get_weather",
        &[
            ("days", "three"),
            ("scale", "NaN"),
            ("metric", "yes"),
            ("where", "{not json"),
            ("hours", "{\"a\": 1}"),
            ("limit", "none"),
        ],
    );
    assert_eq!(
        args(&one_shot(&text), 0),
        json!({"days": "three", "scale": "NaN", "metric": "yes", "where": "{not json",
               "hours": "{\"a\": 1}", "limit": "none"})
    );
    // Integral numbers are integers; `null` is null for any typed value.
    let text = call("get_weather", &[("scale", "3.0"), ("days", "NULL")]);
    assert_eq!(args(&one_shot(&text), 0), json!({"scale": 3, "days": null}));
}

#[test]
fn strings_keep_all_but_one_newline_each_side() {
    let text = "<tool_call>\n<function=write_file>\n<parameter=path>\n/tmp/a.py\n</parameter>\n<parameter=content>\n\n  def f():\n      return \"}\" \\ 1\n\n\n</parameter>\n</function>\n</tool_call>";
    let m = one_shot(text);
    assert_eq!(
        args(&m, 0),
        json!({"path": "/tmp/a.py", "content": "\n  def f():\n      return \"}\" \\ 1\n\n"})
    );
    assert_eq!(by_char(text), m);
    // A value without the newlines is taken as it is; `null` is text in a string parameter.
    let text =
        "<tool_call><function=write_file><parameter=path>null</parameter></function></tool_call>";
    assert_eq!(args(&one_shot(text), 0), json!({"path": "null"}));
    // Unknown functions are still calls, their values strings.
    let text = call("other", &[("n", "1"), ("城市", "北京 🌧")]);
    let m = one_shot(&text);
    assert_eq!(m.1[0].0, "other");
    assert_eq!(args(&m, 0), json!({"n": "1", "城市": "北京 🌧"}));
}

#[test]
fn several_calls_and_text_around_them() {
    let text = format!(
        "Two calls:\n\n{}\n{}\nDone.",
        call("get_weather", &[("city", "Paris")]),
        call("write_file", &[])
    );
    let want = (
        "Two calls:\n\n\nDone.".to_owned(),
        vec![
            ("get_weather".to_owned(), r#"{"city": "Paris"}"#.to_owned()),
            ("write_file".to_owned(), "{}".to_owned()),
        ],
    );
    assert_eq!(one_shot(&text), want);
    assert_eq!(by_char(&text), want);
    // Two functions in one block are two calls.
    let text = "<tool_call>\n<function=a>\n</function>\n<function=b>\n<parameter=x>\n1\n</parameter>\n</function>\n</tool_call>";
    assert_eq!(
        one_shot(text).1,
        vec![
            ("a".into(), "{}".into()),
            ("b".into(), r#"{"x": "1"}"#.into())
        ]
    );
}

#[test]
fn first_delta_has_the_name_then_argument_text() {
    let mut p = Qwen3CoderToolParser::new(schemas());
    assert!(p.push("<tool_call>\n<function=get_wea").is_empty());
    let d = p.push("ther>\n<parameter=city>\nPar");
    assert_eq!(
        d.calls,
        vec![
            ToolCallDelta {
                index: 0,
                name: Some("get_weather".into()),
                arguments: String::new()
            },
            ToolCallDelta {
                index: 0,
                name: None,
                arguments: "{\"city\": \"Par".into()
            }
        ]
    );
    // A string streams as written; its last newline and a possible end tag wait.
    assert_eq!(p.push("is\n</para").calls[0].arguments, "is");
    assert_eq!(p.push("meter>\n").calls[0].arguments, "\"");
    // A typed value comes whole.
    assert!(p.push("<parameter=days>\n1").is_empty());
    assert_eq!(
        p.push("4\n</parameter>\n</function>").calls[0].arguments,
        ", \"days\": 14}"
    );
    assert!(p.push("\n</tool_call>").is_empty());
    assert!(p.finish().is_empty());
    assert_eq!(p.num_calls(), 1);
}

#[test]
fn missing_end_tags_end_values_where_vllm_ends_them() {
    let text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n<parameter=days>\n2\n</function>\n</tool_call>";
    let m = one_shot(text);
    assert_eq!(args(&m, 0), json!({"city": "Paris", "days": 2}));
    assert_eq!(by_char(text), m);
    let text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</tool_call>after";
    let m = one_shot(text);
    assert_eq!(args(&m, 0), json!({"city": "Paris"}));
    assert_eq!(m.0, "after");
    assert_eq!(by_char(text), m);
}

#[test]
fn blocks_that_are_not_calls_are_content() {
    for text in [
        "a<tool_call>not a call</tool_call>b",
        "a<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
        "a<tool_call>\n<function=\n",
        "a<tool_call>\n<func",
        "x < y <tool_cal",
        "",
    ] {
        assert_eq!(one_shot(text), (text.to_owned(), vec![]), "{text:?}");
        assert_eq!(by_char(text), one_shot(text), "{text:?}");
    }
}

#[test]
fn an_unterminated_call_is_closed_with_what_it_has() {
    let text = "Sure.<tool_call>\n<function=get_weather>\n<parameter=city>\nPar";
    let m = one_shot(text);
    assert_eq!(m.0, "Sure.");
    assert_eq!(args(&m, 0), json!({"city": "Par"}));
    assert_eq!(by_char(text), m);
    let text = "<tool_call>\n<function=get_weather>\n<parameter=days>\n4\n</parameter>\n";
    assert_eq!(args(&one_shot(text), 0), json!({"days": 4}));
}

#[test]
fn a_cut_leaks_no_call_markup() {
    for (text, content, want) in [
        ("Sure.<tool_call>\n<function=get", "Sure.", None),
        ("Sure.<tool_c", "Sure.", None),
        (
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</param",
            "",
            Some(json!({"city": "Paris"})),
        ),
        (
            "<tool_call>\n<function=get_weather>\n<parameter=days>\n3",
            "",
            Some(json!({"days": 3})),
        ),
    ] {
        let m = stream_at(text, &[7, 30, 45], true);
        assert_eq!(m.0, content, "{text:?}");
        match want {
            None => assert!(m.1.is_empty(), "{text:?}"),
            Some(v) => assert_eq!(args(&m, 0), v, "{text:?}"),
        }
    }
}

/// A random output: text, calls of known and unknown tools with values of every kind (tags,
/// braces, quotes, backslashes, newlines and multi-byte characters in strings), whitespace.
fn generated(rng: &mut ChaCha8Rng) -> (String, Vec<(String, Value)>) {
    const PIECES: [&str; 14] = [
        "a", " ", "\n", "\"", "\\", "}", "{", "<", ">", "</", "é", "北京", "🌧", "x=1;",
    ];
    let piece_text = |rng: &mut ChaCha8Rng, max: usize| -> String {
        let n = rng.random_range(0..max);
        (0..n)
            .map(|_| PIECES[rng.random_range(0..PIECES.len())])
            .collect()
    };
    let mut text = String::new();
    if rng.random_bool(0.5) {
        text.push_str(piece_text(rng, 6).replace('<', "(").as_str());
    }
    let mut want = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        let function = ["get_weather", "write_file", "unknown"][rng.random_range(0..3)];
        let mut params: Vec<(String, String, Value)> = Vec::new();
        for _ in 0..rng.random_range(0..4) {
            let (name, raw, value) = match rng.random_range(0..4) {
                0 if function == "get_weather" => {
                    let n = rng.random_range(-50i64..50);
                    ("days".to_owned(), n.to_string(), json!(n))
                }
                1 if function == "get_weather" => {
                    let b = rng.random_bool(0.5);
                    ("metric".to_owned(), b.to_string(), json!(b))
                }
                2 if function == "get_weather" => {
                    let v = json!({"k": [1, "}", {"z": null}]});
                    ("where".to_owned(), v.to_string(), v)
                }
                _ => {
                    let s = piece_text(rng, 12);
                    let name = if function == "write_file" {
                        "content"
                    } else {
                        "city"
                    };
                    (name.to_owned(), s.clone(), json!(s))
                }
            };
            // One value per name: a repeated key would make the expected object ambiguous.
            if params.iter().all(|(n, _, _)| n != &name) {
                params.push((name, raw, value));
            }
        }
        let rendered: Vec<(&str, &str)> = params
            .iter()
            .map(|(n, r, _)| (n.as_str(), r.as_str()))
            .collect();
        text.push_str(&call(function, &rendered));
        text.push('\n');
        let object: serde_json::Map<String, Value> =
            params.into_iter().map(|(n, _, v)| (n, v)).collect();
        want.push((function.to_owned(), Value::Object(object)));
    }
    (text, want)
}

#[test]
fn streamed_deltas_under_random_cuts_equal_the_whole() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut calls_seen = 0;
    for round in 0..400 {
        let (text, want) = generated(&mut rng);
        let whole = one_shot(&text);
        assert_eq!(whole.1.len(), want.len(), "round {round}: {text:?}");
        for (i, (name, value)) in want.iter().enumerate() {
            assert_eq!(&whole.1[i].0, name, "round {round}");
            assert_eq!(&args(&whole, i), value, "round {round}: {text:?}");
        }
        calls_seen += want.len();
        assert_eq!(by_char(&text), whole, "round {round}: {text:?}");
        for _ in 0..8 {
            let n = rng.random_range(0..40);
            let cuts: Vec<usize> = (0..n).map(|_| rng.random_range(0..=text.len())).collect();
            assert_eq!(
                stream_at(&text, &cuts, false),
                whole,
                "round {round} cuts {cuts:?}: {text:?}"
            );
        }
    }
    assert!(calls_seen > 300, "{calls_seen}");
}
