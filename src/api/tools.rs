//! `tools`, `tool_choice`, `parallel_tool_calls` and `response_format`: what the template is
//! given, whether the output is parsed for calls, and which constraint (if any) the sampler
//! enforces.
//!
//! `auto` is the default when tools are given and needs the tool-call parser and automatic tool
//! choice, both on unless turned off (vLLM needs `--enable-auto-tool-choice --tool-call-parser
//! hermes` for it); `required` and a named function are forced by a grammar and
//! their output is always parsed; `none` renders the tools but parses nothing. Calls are read,
//! and forced, in the model's format ([`ToolCallFormat`]): hermes JSON, or Qwen3-Coder's
//! `<function=…>` markup, whose arguments are typed by the request's tool schemas.

use std::sync::Arc;

use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::field_names::FieldNames;
use super::grammar::{GuidedSpec, check_schema};
use super::state::ServerConfig;
use super::types::chat::ResponseFormat;
use crate::guided::{
    GuidedDecoding, SchemaBudget, ToolSpec, hermes_tool_call_grammar, qwen3_coder_tool_call_grammar,
};
use crate::parsers::{ToolCallFormat, ToolCallSyntax, ToolSchemas};

/// A function the request declares.
#[derive(Debug, Clone, PartialEq)]
struct FunctionSpec {
    /// Its place in `tools`, for errors.
    index: usize,
    name: String,
    /// The `parameters` JSON Schema; `Null` when the tool gives none (any object).
    parameters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Named(String),
}

#[derive(Debug, Clone)]
pub struct ToolPlan {
    pub choice: ToolChoice,
    /// How the output is parsed for tool calls (`None`: it is not).
    pub calls: Option<ToolCallSyntax>,
    /// The output constraint, its schemas checked against `--max-schema-*`.
    pub guided: Option<GuidedSpec>,
}

/// Checks the tool fields and decides how the request runs; `format`: how the model writes
/// calls; `fields`: the API's names, for errors about its schemas.
pub fn plan(
    tools: Option<&[Value]>,
    tool_choice: Option<&Value>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<&ResponseFormat>,
    config: &ServerConfig,
    format: ToolCallFormat,
    fields: &FieldNames,
) -> ApiResult<ToolPlan> {
    let tools = tools.unwrap_or_default();
    if tools.len() > config.limits.max_tools {
        return Err(ApiError::invalid(
            "tools",
            format!(
                "at most {} tools are allowed (--max-tools)",
                config.limits.max_tools
            ),
        ));
    }
    let functions = tools
        .iter()
        .enumerate()
        .map(|(i, t)| function_spec(i, t))
        .collect::<ApiResult<Vec<_>>>()?;
    let choice = parse_choice(tool_choice, !functions.is_empty())?;
    let guided_format = response_guided(response_format)?;
    let mut budget = SchemaBudget::new(&config.grammar.schema);

    let forced: Vec<FunctionSpec> = match &choice {
        ToolChoice::None | ToolChoice::Auto => Vec::new(),
        _ if functions.is_empty() => {
            return Err(ApiError::invalid(
                "tool_choice",
                "tool_choice requires tools to be given",
            ));
        }
        ToolChoice::Required => functions.clone(),
        ToolChoice::Named(name) => {
            let f = functions.iter().find(|f| &f.name == name).ok_or_else(|| {
                ApiError::invalid(
                    "tool_choice",
                    format!("tool_choice names the function {name:?}, which is not in tools"),
                )
            })?;
            vec![f.clone()]
        }
    };
    if choice == ToolChoice::Auto && !(config.auto_tool_choice && config.tool_parser) {
        return Err(ApiError::invalid(
            "tool_choice",
            "\"auto\" tool choice is turned off on this server (--disable-auto-tool-choice or --tool-call-parser none)",
        ));
    }
    let guided = if forced.is_empty() {
        if let Some(GuidedDecoding::JsonSchema(schema)) = &guided_format {
            check_schema(&mut budget, schema, fields.format)?;
        }
        guided_format.map(|spec| GuidedSpec {
            spec: Arc::new(spec),
            param: fields.format.to_owned(),
        })
    } else {
        if guided_format.is_some() {
            return Err(ApiError::invalid(
                "response_format",
                "response_format cannot be combined with a required or named tool_choice",
            ));
        }
        for f in forced.iter().filter(|f| !f.parameters.is_null()) {
            let param = format!("tools[{}].{}", f.index, fields.tool_schema);
            check_schema(&mut budget, &f.parameters, &param)?;
        }
        let parallel = parallel_tool_calls.unwrap_or(true) && choice == ToolChoice::Required;
        let specs: Vec<ToolSpec<'_>> = forced
            .iter()
            .map(|f| ToolSpec {
                name: &f.name,
                parameters: Some(&f.parameters).filter(|p| !p.is_null()),
            })
            .collect();
        let grammar = match format {
            ToolCallFormat::Hermes => hermes_tool_call_grammar(&specs, parallel),
            ToolCallFormat::Qwen3Coder => qwen3_coder_tool_call_grammar(&specs, parallel),
        }
        .map_err(|e| ApiError::invalid("tools", e))?;
        Some(GuidedSpec {
            spec: Arc::new(GuidedDecoding::Lark(grammar)),
            param: "tools".into(),
        })
    };
    let calls = (choice != ToolChoice::None).then(|| ToolCallSyntax {
        format,
        schemas: Arc::new(match format {
            // Only the Coder format types its arguments by the schemas.
            ToolCallFormat::Hermes => ToolSchemas::default(),
            ToolCallFormat::Qwen3Coder => {
                ToolSchemas::new(functions.iter().map(|f| (f.name.as_str(), &f.parameters)))
            }
        }),
    });
    Ok(ToolPlan {
        calls,
        choice,
        guided,
    })
}

fn function_spec(i: usize, tool: &Value) -> ApiResult<FunctionSpec> {
    let param = format!("tools[{i}]");
    let bad = |msg: &str| ApiError::invalid(param.clone(), format!("{param}: {msg}"));
    let kind = tool
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function");
    if kind != "function" {
        return Err(bad("only tools of type \"function\" are supported"));
    }
    let function = tool
        .get("function")
        .filter(|f| f.is_object())
        .ok_or_else(|| bad("missing the \"function\" object"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 256 && !n.chars().any(char::is_control))
        .ok_or_else(|| {
            bad("function.name must be a non-empty string without control characters")
        })?;
    let parameters = match function.get("parameters") {
        None | Some(Value::Null) => Value::Null,
        Some(p @ (Value::Object(_) | Value::Bool(true))) => p.clone(),
        Some(_) => return Err(bad("function.parameters must be a JSON Schema object")),
    };
    Ok(FunctionSpec {
        index: i,
        name: name.to_owned(),
        parameters,
    })
}

fn parse_choice(value: Option<&Value>, have_tools: bool) -> ApiResult<ToolChoice> {
    let bad = || {
        ApiError::invalid(
            "tool_choice",
            "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
        )
    };
    match value {
        None | Some(Value::Null) if have_tools => Ok(ToolChoice::Auto),
        None | Some(Value::Null) => Ok(ToolChoice::None),
        Some(Value::String(s)) => match s.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            _ => Err(bad()),
        },
        Some(obj @ Value::Object(_)) => obj
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Named(n.to_owned()))
            .ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

fn response_guided(format: Option<&ResponseFormat>) -> ApiResult<Option<GuidedDecoding>> {
    let Some(format) = format else {
        return Ok(None);
    };
    match format.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(GuidedDecoding::JsonObject)),
        "json_schema" => {
            let schema = format
                .json_schema
                .as_ref()
                .and_then(|s| s.schema.clone())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "response_format",
                        "response_format json_schema needs json_schema.schema",
                    )
                })?;
            match schema {
                Value::Object(_) | Value::Bool(_) => Ok(Some(GuidedDecoding::JsonSchema(schema))),
                _ => Err(ApiError::invalid(
                    "response_format",
                    "json_schema.schema must be a JSON Schema object",
                )),
            }
        }
        other => Err(ApiError::invalid(
            "response_format",
            format!(
                "response_format type {other:?} is not supported (text, json_object, json_schema)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(auto: bool) -> ServerConfig {
        ServerConfig {
            auto_tool_choice: auto,
            tool_parser: auto,
            ..Default::default()
        }
    }

    /// The plan under chat's field names.
    fn chat_plan(
        tools: Option<&[Value]>,
        tool_choice: Option<&Value>,
        parallel_tool_calls: Option<bool>,
        response_format: Option<&ResponseFormat>,
        config: &ServerConfig,
    ) -> ApiResult<ToolPlan> {
        plan(
            tools,
            tool_choice,
            parallel_tool_calls,
            response_format,
            config,
            ToolCallFormat::Hermes,
            &FieldNames::CHAT,
        )
    }

    fn tools() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}),
        ]
    }

    #[test]
    fn choices() {
        let t = tools();
        let p = chat_plan(Some(&t), None, None, None, &config(true)).unwrap();
        assert_eq!(p.choice, ToolChoice::Auto);
        assert!(p.calls.is_some() && p.guided.is_none());
        assert_eq!(
            chat_plan(Some(&t), None, None, None, &config(false))
                .unwrap_err()
                .param
                .as_deref(),
            Some("tool_choice")
        );
        let p = chat_plan(
            Some(&t),
            Some(&json!("required")),
            None,
            None,
            &config(false),
        )
        .unwrap();
        assert!(
            matches!(p.guided.as_ref().map(|g| &*g.spec), Some(GuidedDecoding::Lark(g)) if g.contains("(\"\\n\" call)*"))
        );
        let named = json!({"type": "function", "function": {"name": "f"}});
        let p = chat_plan(Some(&t), Some(&named), None, None, &config(false)).unwrap();
        assert!(
            matches!(p.guided.as_ref().map(|g| &*g.spec), Some(GuidedDecoding::Lark(g)) if g.starts_with("start: call\n"))
        );
        let p = chat_plan(Some(&t), Some(&json!("none")), None, None, &config(false)).unwrap();
        assert!(p.calls.is_none());
        let missing = json!({"type": "function", "function": {"name": "g"}});
        assert!(chat_plan(Some(&t), Some(&missing), None, None, &config(false)).is_err());
        assert!(chat_plan(None, Some(&json!("required")), None, None, &config(false)).is_err());
        assert!(
            chat_plan(
                Some(&t),
                Some(&json!("sometimes")),
                None,
                None,
                &config(false)
            )
            .is_err()
        );
        let bad = vec![json!({"type": "function", "function": {"parameters": {}}})];
        assert_eq!(
            chat_plan(Some(&bad), Some(&json!("none")), None, None, &config(false))
                .unwrap_err()
                .param
                .as_deref(),
            Some("tools[0]")
        );
    }

    #[test]
    fn the_coder_format_forces_and_reads_coder_calls() {
        let t = vec![
            json!({"type": "function", "function": {"name": "f", "parameters":
            {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}),
        ];
        let named = json!({"type": "function", "function": {"name": "f"}});
        let p = plan(
            Some(&t),
            Some(&named),
            None,
            None,
            &config(false),
            ToolCallFormat::Qwen3Coder,
            &FieldNames::CHAT,
        )
        .unwrap();
        assert!(
            matches!(p.guided.as_ref().map(|g| &*g.spec), Some(GuidedDecoding::Lark(g)) if g.contains("<function=f>"))
        );
        let syntax = p.calls.expect("calls are parsed");
        assert_eq!(syntax.format, ToolCallFormat::Qwen3Coder);
        let mut parser = syntax.parser();
        let mut out = parser.push(
            "<tool_call>\n<function=f>\n<parameter=n>\n5\n</parameter>\n</function>\n</tool_call>",
        );
        out.extend(parser.finish());
        let arguments: String = out.calls.iter().map(|c| c.arguments.as_str()).collect();
        assert_eq!(arguments, r#"{"n": 5}"#, "typed by the request's schema");
    }

    #[test]
    fn schemas_past_the_bounds_are_refused_naming_field_and_flag() {
        let props: serde_json::Map<String, Value> = (0..300)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        let wide = json!({"type": "object", "properties": props});
        let t = vec![
            json!({"type": "function", "function": {"name": "ok"}}),
            json!({"type": "function", "function": {"name": "f", "parameters": wide}}),
        ];
        let forced = json!({"type": "function", "function": {"name": "f"}});
        let e = chat_plan(Some(&t), Some(&forced), None, None, &config(false)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[1].function.parameters"));
        assert!(
            e.message.contains("--max-schema-properties"),
            "{}",
            e.message
        );
        // Rendered only (not forced): nothing compiles it, nothing to bound.
        assert!(chat_plan(Some(&t), Some(&json!("none")), None, None, &config(false)).is_ok());
        let format: ResponseFormat = serde_json::from_value(json!({
            "type": "json_schema", "json_schema": {"name": "x", "schema": wide}
        }))
        .unwrap();
        let e = plan(
            None,
            None,
            None,
            Some(&format),
            &config(false),
            ToolCallFormat::Hermes,
            &FieldNames::RESPONSES,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("text.format"));
    }
}
