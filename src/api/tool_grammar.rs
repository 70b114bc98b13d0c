//! Grammars that force Hermes-style tool calls, for `tool_choice: "required"` or a named
//! function. They are in llguidance's Lark dialect: each call is the exact text Qwen3 was
//! trained to write,
//!
//! ```text
//! <tool_call>
//! {"name": "<function>", "arguments": <JSON valid under the function's parameters schema>}
//! </tool_call>
//! ```
//!
//! with the arguments embedded as `%json {...}`. The schema gets llguidance's `x-guidance`
//! options for compact separators and no free whitespace: a weak model that keeps emitting
//! spaces or newlines inside a flexible-whitespace grammar never closes the object and is cut
//! by `max_tokens`, and the output no longer parses. The tags are written as string literals,
//! not `<token>` references, because Qwen3's `<tool_call>` is an added but not a special token.

use serde_json::{Map, Value, json};

/// A function the model may be forced to call.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub name: String,
    /// The `parameters` JSON Schema (`{"type": "object"}` when the tool gives none).
    pub parameters: Value,
}

/// One call of any of `functions` (`parallel = false`), or one or more calls separated by a
/// newline (`parallel = true`). `functions` must not be empty.
pub fn forced_calls_grammar(functions: &[FunctionSpec], parallel: bool) -> String {
    let mut out = String::new();
    out.push_str(if parallel {
        "start: call (\"\\n\" call)*\n"
    } else {
        "start: call\n"
    });
    let alternatives: Vec<String> = (0..functions.len()).map(|i| format!("call_{i}")).collect();
    out.push_str(&format!("call: {}\n", alternatives.join(" | ")));
    for (i, f) in functions.iter().enumerate() {
        let head = format!(
            "<tool_call>\n{{\"name\": {}, \"arguments\": ",
            json_string(&f.name)
        );
        out.push_str(&format!(
            "call_{i}: {} args_{i} {}\n",
            json_string(&head),
            json_string("}\n</tool_call>")
        ));
        out.push_str(&format!(
            "args_{i}: %json {}\n",
            arguments_schema(&f.parameters)
        ));
    }
    out
}

/// The parameters schema with llguidance's formatting options added at its root.
fn arguments_schema(parameters: &Value) -> String {
    let mut schema = match parameters {
        Value::Object(map) if !map.is_empty() => map.clone(),
        // `true`, `{}` or nothing: any object.
        _ => Map::from_iter([("type".to_owned(), json!("object"))]),
    };
    let options = schema
        .entry("x-guidance")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(options) = options {
        options
            .entry("whitespace_flexible")
            .or_insert(Value::Bool(false));
        options.entry("key_separator").or_insert(json!(": "));
        options.entry("item_separator").or_insert(json!(", "));
    }
    Value::Object(schema).to_string()
}

/// A double-quoted literal with JSON escapes, valid both as JSON and as a Lark string.
fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> FunctionSpec {
        FunctionSpec {
            name: "get_weather".into(),
            parameters: json!({
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"]
            }),
        }
    }

    #[test]
    fn named_function_grammar() {
        let g = forced_calls_grammar(&[weather()], false);
        let expected = concat!(
            "start: call\n",
            "call: call_0\n",
            r#"call_0: "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " args_0 "}\n</tool_call>""#,
            "\n",
            r#"args_0: %json {"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"x-guidance":{"whitespace_flexible":false,"key_separator":": ","item_separator":", "}}"#,
            "\n",
        );
        assert_eq!(g, expected);
    }

    #[test]
    fn required_with_several_tools_and_parallel_calls() {
        let other = FunctionSpec {
            name: "say \"hi\"".into(),
            parameters: Value::Null,
        };
        let g = forced_calls_grammar(&[weather(), other], true);
        assert!(g.starts_with("start: call (\"\\n\" call)*\ncall: call_0 | call_1\n"));
        assert!(g.contains(
            r#"call_1: "<tool_call>\n{\"name\": \"say \\\"hi\\\"\", \"arguments\": " args_1"#
        ));
        assert!(g.contains(r#"args_1: %json {"type":"object","x-guidance":"#));
    }

    #[test]
    fn user_formatting_options_are_kept() {
        let f = FunctionSpec {
            name: "f".into(),
            parameters: json!({"type": "object", "x-guidance": {"whitespace_flexible": true}}),
        };
        let g = forced_calls_grammar(&[f], false);
        assert!(g.contains(r#""whitespace_flexible":true"#));
    }
}
