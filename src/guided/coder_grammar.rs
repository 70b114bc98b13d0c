//! The Lark grammar for forced tool calls in Qwen3-Coder's format, as its chat template renders
//! calls:
//!
//! ```text
//! <tool_call>
//! <function=get_weather>
//! <parameter=city>
//! Beijing
//! </parameter>
//! <parameter=days>
//! 3
//! </parameter>
//! </function>
//! </tool_call>
//! ```
//!
//! Parameters come in the schema's order, required ones always, optional ones maybe. A value
//! that may be a string (or declares no type) is free text, but never any of the tags that end
//! a value in the parser (`</parameter>`, `<parameter=`, `</function>`, `</tool_call>`), so what
//! the model writes is what the parser reads back; any other value is JSON following the
//! property's schema, with the bounded whitespace of [`super::grammar`]. A tool without
//! declared properties takes any parameters with free-text values.

use serde_json::{Map, Value, json};

use super::grammar::{ToolSpec, bounded_json_schema};
use crate::parsers::qwen3_coder::is_text_valued;

/// The free-text value: any text without the tags that end a value, then the template's
/// newline and end tag. A lazy rule, so the value ends at the first `\n</parameter>\n`.
const TEXT_RULES: &str = r#"text_value[suffix="\n</parameter>\n"]: VALUE_TEXT
VALUE_TEXT: /(?s:.*)/ & ~/(?s:.*)(<\/parameter>|<parameter=|<\/function>|<\/tool_call>)(?s:.*)/
PARAM_NAME: /[^<>\n]+/
"#;

/// A Lark grammar for one call, or with `parallel` one or more calls separated by a newline, of
/// the given tools in Qwen3-Coder's format (see the module docs).
///
/// ```
/// use tealight::guided::{ToolSpec, qwen3_coder_tool_call_grammar};
/// let params = serde_json::json!({"type": "object", "properties": {"days": {"type": "integer"}}});
/// let lark = qwen3_coder_tool_call_grammar(
///     &[ToolSpec { name: "get_weather", parameters: Some(&params) }],
///     false,
/// ).unwrap();
/// assert!(lark.contains(r#""<tool_call>\n<function=get_weather>\n""#));
/// ```
pub fn qwen3_coder_tool_call_grammar(
    tools: &[ToolSpec<'_>],
    parallel: bool,
) -> Result<String, String> {
    let mut out = super::grammar::tool_call_start(tools, parallel)?;
    for (i, tool) in tools.iter().enumerate() {
        if tool.name.contains(['>', '\n', '<']) {
            return Err(format!(
                "tool {:?}: a name with '<', '>' or a newline cannot be written in this format",
                tool.name
            ));
        }
        let head = format!("<tool_call>\n<function={}>\n", tool.name);
        let mut body = vec![lit(&head)];
        let mut rules = Vec::new();
        match tool.parameters.and_then(declared_properties) {
            None => body.push("any_param*".into()),
            Some((properties, required)) => {
                for (j, (name, schema)) in properties.iter().enumerate() {
                    let rule = format!("call_{i}_{j}");
                    let value = if let Some(choices) = string_choices(schema) {
                        format!("({}) {}", choices.join(" | "), lit("\n</parameter>\n"))
                    } else if is_text_valued(Some(schema)) {
                        "text_value".to_owned()
                    } else {
                        let schema = bounded_json_schema(schema).map_err(|e| {
                            format!("tool {:?}, parameter {name:?}: {e}", tool.name)
                        })?;
                        format!("%json {schema} {}", lit("\n</parameter>\n"))
                    };
                    if name.contains(['>', '\n', '<']) {
                        return Err(format!(
                            "tool {:?}: the parameter name {name:?} cannot be written in this format",
                            tool.name
                        ));
                    }
                    let head = format!("<parameter={name}>\n");
                    rules.push(format!("{rule}: {} {value}\n", lit(&head)));
                    let optional = if required.contains(name) { "" } else { "?" };
                    body.push(format!("{rule}{optional}"));
                }
            }
        }
        body.push(lit("</function>\n</tool_call>"));
        out.push_str(&format!("call_{i}: {}\n", body.join(" ")));
        for rule in rules {
            out.push_str(&rule);
        }
    }
    out.push_str("any_param: \"<parameter=\" PARAM_NAME \">\\n\" text_value\n");
    out.push_str(TEXT_RULES);
    Ok(out)
}

/// The literals a string property is limited to (`enum` or `const`), when it has such a list
/// and none of them holds a tag that would end the value early.
fn string_choices(schema: &Value) -> Option<Vec<String>> {
    let values: Vec<&Value> = match (schema.get("enum"), schema.get("const")) {
        (Some(Value::Array(values)), _) if !values.is_empty() => values.iter().collect(),
        (_, Some(value)) => vec![value],
        _ => return None,
    };
    values
        .into_iter()
        .map(|v| {
            let s = v.as_str()?;
            let tagged = ["</parameter>", "<parameter=", "</function>", "</tool_call>"]
                .iter()
                .any(|t| s.contains(t));
            (!tagged).then(|| lit(s))
        })
        .collect()
}

/// A Lark string literal (Lark string literals are JSON string literals).
fn lit(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// The properties a parameters schema declares (required ones without a declaration get an
/// untyped one) and the required names; `None` when it declares none (any parameters).
fn declared_properties(schema: &Value) -> Option<(Map<String, Value>, Vec<String>)> {
    let mut properties = match schema.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        _ => Map::new(),
    };
    let required: Vec<String> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for name in &required {
        if !properties.contains_key(name) {
            properties.insert(name.clone(), json!({}));
        }
    }
    (!properties.is_empty()).then_some((properties, required))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_shape() {
        let p = json!({"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}
        }, "required": ["days"]});
        let g = qwen3_coder_tool_call_grammar(
            &[
                ToolSpec {
                    name: "get_weather",
                    parameters: Some(&p),
                },
                ToolSpec {
                    name: "ping",
                    parameters: None,
                },
            ],
            true,
        )
        .unwrap();
        assert!(g.starts_with("start: call (\"\\n\" call)*\ncall: call_0 | call_1\n"));
        assert!(g.contains(
            r#"call_0: "<tool_call>\n<function=get_weather>\n" call_0_0? call_0_1 "</function>\n</tool_call>""#
        ), "{g}");
        assert!(
            g.contains(r#"call_0_0: "<parameter=city>\n" text_value"#),
            "{g}"
        );
        assert!(
            g.contains(r#"call_0_1: "<parameter=days>\n" %json {"#),
            "{g}"
        );
        assert!(
            g.contains(r#"call_1: "<tool_call>\n<function=ping>\n" any_param* "#),
            "{g}"
        );
        let modes = json!({"type": "object", "properties": {"mode": {"enum": ["fast", "safe"]}}});
        let g = qwen3_coder_tool_call_grammar(
            &[ToolSpec {
                name: "set",
                parameters: Some(&modes),
            }],
            false,
        )
        .unwrap();
        assert!(
            g.contains(r#"call_0_0: "<parameter=mode>\n" ("fast" | "safe") "\n</parameter>\n""#),
            "{g}"
        );
        assert!(qwen3_coder_tool_call_grammar(&[], false).is_err());
        let bad = ToolSpec {
            name: "a>b",
            parameters: None,
        };
        assert!(qwen3_coder_tool_call_grammar(&[bad], false).is_err());
    }
}

/// The grammar compiled by the server's compiler over the real Qwen3 vocabulary, checked
/// token by token against outputs, and read back by the Coder parser.
#[cfg(test)]
mod compile_tests {
    use std::sync::Arc;

    use super::*;
    use crate::guided::{GuidedDecoding, GuidedFactory};
    use crate::parsers::{Qwen3CoderToolParser, ToolSchemas};
    use crate::tokenizer::Tokenizer;

    /// `<|im_end|>`, where a generation ends.
    const EOS: u32 = 151_645;

    fn setup() -> (Tokenizer, GuidedFactory) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/qwen3-tiny/tokenizer.json"
        );
        let tok = Tokenizer::from_file(path).expect("tokenizer");
        let factory = GuidedFactory::new(&tok, 151_936, &[EOS]).expect("factory");
        (tok, factory)
    }

    /// Whether the grammar accepts exactly `text` as a whole output.
    fn accepts(tok: &Tokenizer, factory: &GuidedFactory, grammar: &str, text: &str) -> bool {
        let mut m = factory
            .compile(&GuidedDecoding::Lark(grammar.to_owned()))
            .unwrap_or_else(|e| panic!("compiles: {e}\n{grammar}"));
        for id in tok.encode(text, false).expect("encodes") {
            if !m.allows(id) {
                return false;
            }
            if m.commit(id).is_err() {
                return false;
            }
        }
        m.is_complete() || m.allows(EOS)
    }

    #[test]
    fn forced_outputs_compile_match_and_parse_back() {
        let (tok, factory) = setup();
        let weather = json!({"type": "object", "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1},
            "metric": {"type": "boolean"},
            "unit": {"type": "string", "enum": ["C", "F"]},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
        }, "required": ["city", "days"]});
        let tools = [
            ToolSpec {
                name: "get_weather",
                parameters: Some(&weather),
            },
            ToolSpec {
                name: "ping",
                parameters: None,
            },
        ];
        let named = qwen3_coder_tool_call_grammar(&tools[..1], false).unwrap();
        let any = qwen3_coder_tool_call_grammar(&tools, true).unwrap();

        let one = "<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York <NY> \"x\"\n\n</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=unit>\nF\n</parameter>\n<parameter=where>\n{\"lat\": 40.7}\n</parameter>\n</function>\n</tool_call>";
        assert!(accepts(&tok, &factory, &named, one));
        let two = format!(
            "{one}\n<tool_call>\n<function=ping>\n<parameter=host>\nexample.com\n</parameter>\n</function>\n</tool_call>"
        );
        assert!(accepts(&tok, &factory, &any, &two));
        assert!(!accepts(&tok, &factory, &named, &two), "one call only");

        // A required parameter left out, a value of the wrong type, an unknown parameter, a
        // tag inside a free-text value: all refused.
        for bad in [
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\nthree\n</parameter>\n</function>\n</tool_call>",
            "<tool_call>\n<function=get_weather>\n<parameter=town>\nParis\n</parameter>\n</function>\n</tool_call>",
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis</function>\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>",
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=unit>\nK\n</parameter>\n</function>\n</tool_call>",
        ] {
            assert!(!accepts(&tok, &factory, &named, bad), "{bad}");
        }

        // What the grammar lets through, the parser reads back typed by the same schemas.
        let schemas = Arc::new(ToolSchemas::new([("get_weather", &weather)]));
        let parsed = Qwen3CoderToolParser::parse(&two, schemas);
        assert_eq!(parsed.content, "");
        let calls: Vec<(&str, Value)> = parsed
            .calls
            .iter()
            .filter(|c| c.name.is_some())
            .map(|c| {
                let args: String = parsed
                    .calls
                    .iter()
                    .filter(|d| d.index == c.index)
                    .map(|d| d.arguments.as_str())
                    .collect();
                (
                    c.name.as_deref().unwrap_or_default(),
                    serde_json::from_str(&args).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            calls,
            vec![
                (
                    "get_weather",
                    json!({"city": "New York <NY> \"x\"\n", "days": 3, "unit": "F", "where": {"lat": 40.7}})
                ),
                ("ping", json!({"host": "example.com"})),
            ]
        );
    }
}
