//! From a request's [`GuidedDecoding`] to an llguidance grammar, and the grammars the API layer
//! builds for forced tool calls.
//!
//! JSON is compiled with bounded whitespace: no free whitespace between tokens and the
//! separators Python's `json.dumps` writes (`", "` and `": "`), which is also how Qwen3's chat
//! template renders tool-call arguments. llguidance's default allows any run of whitespace
//! between JSON tokens; a weak model then wanders into endless newlines and indentation, gets
//! cut by `max_tokens`, and the output does not parse. A schema's own `x-guidance` options
//! (llguidance's per-schema compile options) still win over these defaults.

use llguidance::api::TopLevelGrammar;
use serde_json::{Map, Value, json};

use super::spec::GuidedDecoding;

/// The JSON compile options every schema gets unless it sets its own (see the module docs).
pub fn json_defaults() -> Value {
    json!({
        "whitespace_flexible": false,
        "item_separator": ", ",
        "key_separator": ": ",
    })
}

/// `schema` with the bounded-whitespace options attached (as its `x-guidance` member), ready
/// to compile on its own or to embed in a Lark grammar as `%json { ... }`.
pub fn bounded_json_schema(schema: &Value) -> Result<Value, String> {
    let mut schema = match schema {
        Value::Object(o) => o.clone(),
        // `true` accepts any JSON value; `false` nothing, which is no output a model can give.
        Value::Bool(true) => Map::new(),
        Value::Bool(false) => return Err("the JSON schema `false` accepts no value".into()),
        other => {
            return Err(format!(
                "a JSON schema must be an object or a boolean, not {}",
                kind(other)
            ));
        }
    };
    let mut options = json_defaults();
    if let Some(own) = schema.get("x-guidance") {
        let Value::Object(own) = own else {
            return Err("`x-guidance` must be an object".into());
        };
        for (k, v) in own {
            options[k] = v.clone();
        }
    }
    schema.insert("x-guidance".into(), options);
    Ok(Value::Object(schema))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The llguidance grammar for a request's constraint.
pub fn top_level_grammar(spec: &GuidedDecoding) -> Result<TopLevelGrammar, String> {
    Ok(match spec {
        GuidedDecoding::JsonObject => {
            TopLevelGrammar::from_json_schema(bounded_json_schema(&json!({"type": "object"}))?)
        }
        GuidedDecoding::JsonSchema(schema) => {
            TopLevelGrammar::from_json_schema(bounded_json_schema(schema)?)
        }
        GuidedDecoding::Lark(text) => {
            if text.trim().is_empty() {
                return Err("the grammar is empty".into());
            }
            TopLevelGrammar::from_lark(text.clone())
        }
    })
}

/// One function a forced tool call may name.
#[derive(Debug, Clone, Copy)]
pub struct ToolSpec<'a> {
    pub name: &'a str,
    /// The function's `parameters` JSON schema (`None`: any JSON object).
    pub parameters: Option<&'a Value>,
}

/// The rules every forced tool-call grammar starts with: one call (or, with `parallel`, one or
/// more separated by newlines), each an alternative `call_{i}` per tool, which the caller defines.
pub(crate) fn tool_call_start(tools: &[ToolSpec<'_>], parallel: bool) -> Result<String, String> {
    if tools.is_empty() {
        return Err("a forced tool call needs at least one tool".into());
    }
    let mut out = String::from(if parallel {
        "start: call (\"\\n\" call)*\n"
    } else {
        "start: call\n"
    });
    let alternatives: Vec<String> = (0..tools.len()).map(|i| format!("call_{i}")).collect();
    out.push_str(&format!("call: {}\n", alternatives.join(" | ")));
    Ok(out)
}

/// A Lark grammar for Qwen3's (hermes) tool-call output: one call, or with `parallel` one or
/// more calls separated by a newline, each exactly as the chat template renders calls:
///
/// ```text
/// <tool_call>
/// {"name": "get_weather", "arguments": {"city": "Paris"}}
/// </tool_call>
/// ```
///
/// The arguments follow the tool's schema with bounded whitespace. Pass one tool for a named
/// `tool_choice`, all of them for `"required"`.
///
/// ```
/// use tealight::guided::{ToolSpec, hermes_tool_call_grammar};
/// let params = serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}});
/// let lark = hermes_tool_call_grammar(
///     &[ToolSpec { name: "get_weather", parameters: Some(&params) }],
///     false,
/// ).unwrap();
/// assert!(lark.contains("%json"));
/// ```
pub fn hermes_tool_call_grammar(tools: &[ToolSpec<'_>], parallel: bool) -> Result<String, String> {
    let mut out = tool_call_start(tools, parallel)?;
    for (i, tool) in tools.iter().enumerate() {
        let object = json!({"type": "object"});
        let schema = bounded_json_schema(tool.parameters.unwrap_or(&object))
            .map_err(|e| format!("tool {:?}: {e}", tool.name))?;
        let head = format!(
            "<tool_call>\n{{\"name\": {}, \"arguments\": ",
            Value::String(tool.name.to_owned())
        );
        // Lark string literals are JSON string literals.
        out.push_str(&format!(
            "call_{i}: {} %json {} {}\n",
            Value::String(head),
            schema,
            Value::String("}\n</tool_call>".into())
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_options_are_added_and_own_options_win() {
        let s = bounded_json_schema(&json!({"type": "string"})).unwrap();
        assert_eq!(s["x-guidance"]["whitespace_flexible"], false);
        assert_eq!(s["x-guidance"]["item_separator"], ", ");
        let own = bounded_json_schema(&json!({
            "type": "object",
            "x-guidance": {"whitespace_flexible": true}
        }))
        .unwrap();
        assert_eq!(own["x-guidance"]["whitespace_flexible"], true);
        assert_eq!(own["x-guidance"]["key_separator"], ": ");
        assert!(bounded_json_schema(&json!(true)).unwrap().is_object());
        assert!(bounded_json_schema(&json!(false)).is_err());
        assert!(bounded_json_schema(&json!([1])).is_err());
        assert!(bounded_json_schema(&json!({"x-guidance": 3})).is_err());
    }

    #[test]
    fn tool_grammar_shape() {
        let p = json!({"type": "object", "properties": {"q": {"type": "string"}}});
        let g = hermes_tool_call_grammar(
            &[
                ToolSpec {
                    name: "search",
                    parameters: Some(&p),
                },
                ToolSpec {
                    name: "say \"hi\"",
                    parameters: None,
                },
            ],
            true,
        )
        .unwrap();
        assert!(g.starts_with("start: call (\"\\n\" call)*\ncall: call_0 | call_1\n"));
        assert!(
            g.contains(r#"call_0: "<tool_call>\n{\"name\": \"search\", \"arguments\": " %json {"#)
        );
        assert!(g.contains(r#"\"name\": \"say \\\"hi\\\"\""#));
        assert!(hermes_tool_call_grammar(&[], false).is_err());
    }
}
