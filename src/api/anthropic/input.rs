//! An Anthropic request's `system`, `messages`, `tools` and `tool_choice` → chat form.
//!
//! Blocks: `text`; `thinking` (kept as the assistant turn's reasoning; `redacted_thinking`
//! carries none); `tool_use` (a call, `input` as its arguments); `tool_result` (a tool message,
//! its content a string or text blocks, `is_error` noted in the text). `system` may be a string
//! or text blocks, and Claude Code also puts `role: "system"` entries inside `messages`.
//! Images and documents in a message are a 400 (the model reads text only); in a tool result
//! they are replaced by a note saying so. Tools with a `type` other than `custom` are
//! Anthropic-hosted (web search, code execution, ...) and are skipped.

use serde_json::{Value, json};

use crate::api::conversation::OMITTED_MEDIA;
use crate::api::conversation::{ConversationBuilder, ToolCatalog, ToolOrigin};
use crate::api::error::{ApiError, ApiResult};

#[derive(Debug)]
pub struct ChatForm {
    pub messages: Vec<Value>,
    pub catalog: ToolCatalog,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
}

pub fn chat_form(
    system: Option<&Value>,
    messages: &[Value],
    tools: Option<&[Value]>,
    tool_choice: Option<&Value>,
) -> ApiResult<ChatForm> {
    let mut catalog = ToolCatalog::default();
    for (i, tool) in tools.unwrap_or_default().iter().enumerate() {
        add_tool(&mut catalog, tool, &format!("tools[{i}]"))?;
    }
    let (tool_choice, parallel_tool_calls) = map_tool_choice(tool_choice)?;

    let mut c = ConversationBuilder::default();
    match system {
        None | Some(Value::Null) => {}
        Some(system) => c.system(&text_of(system, "system", false)?),
    }
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    for (i, message) in messages.iter().enumerate() {
        add_message(&mut c, message, &format!("messages[{i}]"))?;
    }
    Ok(ChatForm {
        messages: c.finish(),
        catalog,
        tool_choice,
        parallel_tool_calls,
    })
}

fn add_message(c: &mut ConversationBuilder, message: &Value, param: &str) -> ApiResult<()> {
    let bad = |msg: &str| ApiError::invalid(param, format!("{param}: {msg}"));
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("'role' must be a string"))?;
    let content = message.get("content").unwrap_or(&Value::Null);
    let blocks: Vec<Value> = match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(blocks) => blocks.clone(),
        _ => {
            return Err(bad(
                "'content' must be a string or a list of content blocks",
            ));
        }
    };
    match role {
        "user" => {
            let mut texts = Vec::new();
            for (j, block) in blocks.iter().enumerate() {
                let at = format!("{param}.content[{j}]");
                match block_type(block, &at)? {
                    "tool_result" => {
                        let id = block
                            .get("tool_use_id")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                ApiError::invalid(
                                    &at,
                                    format!("{at}: 'tool_use_id' must be a string"),
                                )
                            })?;
                        let mut text = match block.get("content") {
                            None | Some(Value::Null) => String::new(),
                            Some(content) => text_of(content, &at, true)?,
                        };
                        if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                            text = format!("Error: {text}");
                        }
                        c.tool_result(id, &text);
                    }
                    _ => texts.push(block_text(block, &at, false)?),
                }
            }
            let texts: Vec<String> = texts.into_iter().flatten().collect();
            if !texts.is_empty() {
                c.user(&texts.join("\n"));
            }
        }
        "assistant" => {
            let mut text = Vec::new();
            let mut calls = Vec::new();
            for (j, block) in blocks.iter().enumerate() {
                let at = format!("{param}.content[{j}]");
                match block_type(block, &at)? {
                    "thinking" => {
                        c.reasoning(block.get("thinking").and_then(Value::as_str).unwrap_or(""))
                    }
                    "redacted_thinking" => {}
                    "tool_use" => {
                        let field = |name: &str| {
                            block.get(name).and_then(Value::as_str).ok_or_else(|| {
                                ApiError::invalid(&at, format!("{at}: '{name}' must be a string"))
                            })
                        };
                        let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                        calls.push((field("id")?.to_owned(), field("name")?.to_owned(), input));
                    }
                    _ => text.extend(block_text(block, &at, false)?),
                }
            }
            if !text.is_empty() || calls.is_empty() {
                c.assistant(&text.join("\n"));
            }
            for (id, name, input) in calls {
                c.tool_call(&id, &name, input);
            }
        }
        "system" | "developer" => c.system(&text_of(content, param, false)?),
        other => {
            return Err(bad(&format!(
                "unknown role '{other}' (user, assistant, system)"
            )));
        }
    }
    Ok(())
}

fn block_type<'a>(block: &'a Value, at: &str) -> ApiResult<&'a str> {
    block
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(at, format!("{at} must be an object with a 'type'")))
}

/// The text of one block: `Some` for text, `None` for blocks with nothing to show; media is a
/// 400, or [`OMITTED_MEDIA`] where `media_note` (tool results).
fn block_text(block: &Value, at: &str, media_note: bool) -> ApiResult<Option<String>> {
    match block_type(block, at)? {
        "text" => block
            .get("text")
            .and_then(Value::as_str)
            .map(|t| Some(t.to_owned()))
            .ok_or_else(|| ApiError::invalid(at, format!("{at}.text must be a string"))),
        "image" | "document" | "search_result" if media_note => Ok(Some(OMITTED_MEDIA.to_owned())),
        kind @ ("image" | "document") => Err(ApiError::invalid(
            at,
            format!("{at}: '{kind}' blocks are not supported (this model reads text only)"),
        )),
        _ => Ok(None), // server-tool blocks and the like: nothing the template can show
    }
}

/// A string, or the texts of a list of blocks joined by newlines.
fn text_of(value: &Value, at: &str, media_note: bool) -> ApiResult<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, block) in blocks.iter().enumerate() {
                texts.extend(block_text(block, &format!("{at}[{j}]"), media_note)?);
            }
            Ok(texts.join("\n"))
        }
        _ => Err(ApiError::invalid(
            at,
            format!("{at} must be a string or a list of text blocks"),
        )),
    }
}

fn add_tool(catalog: &mut ToolCatalog, tool: &Value, param: &str) -> ApiResult<()> {
    let bad = |msg: &str| ApiError::invalid(param, format!("{param}: {msg}"));
    match tool.get("type").and_then(Value::as_str) {
        None | Some("custom") => {}
        Some(_) => return Ok(()), // Anthropic-hosted tools
    }
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 256 && !n.chars().any(char::is_control))
        .ok_or_else(|| bad("name must be a non-empty string without control characters"))?;
    let schema = match tool.get("input_schema") {
        None | Some(Value::Null) => None,
        Some(s @ Value::Object(_)) => Some(s.clone()),
        Some(_) => return Err(bad("input_schema must be a JSON Schema object")),
    };
    let description = tool.get("description").and_then(Value::as_str);
    catalog.add(name.to_owned(), description, schema, ToolOrigin::Function);
    Ok(())
}

/// `tool_choice` → chat's form, and `disable_parallel_tool_use` → `parallel_tool_calls`.
fn map_tool_choice(choice: Option<&Value>) -> ApiResult<(Option<Value>, Option<bool>)> {
    let Some(choice) = choice.filter(|c| !c.is_null()) else {
        return Ok((None, None));
    };
    let bad = || {
        ApiError::invalid(
            "tool_choice",
            "tool_choice must be {\"type\": \"auto\" | \"any\" | \"none\"} or {\"type\": \"tool\", \"name\": ...}",
        )
    };
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|d| !d);
    let mapped = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice.get("name").and_then(Value::as_str).ok_or_else(bad)?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => return Err(bad()),
    };
    Ok((Some(mapped), parallel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_become_chat_messages() {
        let system = json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        let messages = vec![
            json!({"role": "user", "content": "weather?"}),
            json!({"role": "assistant", "content": [
                {"type": "thinking", "thinking": "use the tool", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get", "input": {"city": "Rome"}}]}),
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                 "content": [{"type": "text", "text": "timeout"}, {"type": "image", "source": {}}]},
                {"type": "text", "text": "and tomorrow?"}]}),
            json!({"role": "system", "content": "late note"}),
        ];
        let f = chat_form(Some(&system), &messages, None, None).unwrap();
        let m = &f.messages;
        assert_eq!(m[0], json!({"role": "system", "content": "a\nb"}));
        assert_eq!(m[1], json!({"role": "user", "content": "weather?"}));
        assert_eq!(m[2]["content"], "Checking.");
        assert_eq!(m[2]["reasoning_content"], "use the tool");
        assert_eq!(
            m[2]["tool_calls"][1]["function"],
            json!({"name": "get", "arguments": {"city": "Rome"}})
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "content": "sunny", "tool_call_id": "toolu_1"})
        );
        assert_eq!(m[4]["content"], format!("Error: timeout\n{OMITTED_MEDIA}"));
        assert_eq!(m[5], json!({"role": "user", "content": "and tomorrow?"}));
        assert_eq!(m[6], json!({"role": "system", "content": "late note"}));
        assert_eq!(m.len(), 7);
    }

    #[test]
    fn tools_and_tool_choice() {
        let tools = vec![
            json!({"name": "get", "description": "d", "input_schema": {"type": "object"}}),
            json!({"type": "custom", "name": "put", "input_schema": {"type": "object"}}),
            json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 5}),
        ];
        let msgs = [json!({"role": "user", "content": "x"})];
        let f = chat_form(
            None,
            &msgs,
            Some(&tools),
            Some(&json!({"type": "any", "disable_parallel_tool_use": true})),
        )
        .unwrap();
        assert_eq!(f.catalog.chat_tools().len(), 2);
        assert_eq!(
            f.catalog.chat_tools()[0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(f.tool_choice, Some(json!("required")));
        assert_eq!(f.parallel_tool_calls, Some(false));
        let f = chat_form(
            None,
            &msgs,
            Some(&tools),
            Some(&json!({"type": "tool", "name": "put"})),
        )
        .unwrap();
        assert_eq!(
            f.tool_choice,
            Some(json!({"type": "function", "function": {"name": "put"}}))
        );
        let f = chat_form(None, &msgs, Some(&tools), Some(&json!({"type": "none"}))).unwrap();
        assert_eq!(f.tool_choice, Some(json!("none")));
        assert!(chat_form(None, &msgs, None, Some(&json!({"type": "sometimes"}))).is_err());
    }

    #[test]
    fn bad_messages_name_their_place() {
        let cases = [
            (
                json!({"role": "critic", "content": "x"}),
                "messages[0]",
                "critic",
            ),
            (
                json!({"role": "user", "content": [{"type": "image", "source": {}}]}),
                "messages[0].content[0]",
                "text only",
            ),
            (
                json!({"role": "user", "content": [{"type": "tool_result"}]}),
                "messages[0].content[0]",
                "tool_use_id",
            ),
            (
                json!({"role": "user", "content": 5}),
                "messages[0]",
                "content",
            ),
            (json!({"content": "x"}), "messages[0]", "role"),
        ];
        for (message, param, needle) in cases {
            let err = chat_form(None, std::slice::from_ref(&message), None, None).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{message}");
            assert!(err.message.contains(needle), "{}", err.message);
        }
        assert_eq!(
            chat_form(None, &[], None, None)
                .unwrap_err()
                .param
                .as_deref(),
            Some("messages")
        );
    }
}
