//! A Responses request's `instructions`, `input`, `tools` and `tool_choice` → chat messages,
//! chat-shaped tools and a chat `tool_choice`.
//!
//! Items: `message` (roles user/assistant/system/developer; a string or `input_text` /
//! `output_text` / `refusal` parts), `reasoning` (its `content` texts, else its `summary`),
//! `function_call` / `function_call_output`, `custom_tool_call` / `custom_tool_call_output`.
//! An `item_reference` is resolved against the store before this (one left is a 400). Items of
//! other types (hosted-tool calls) are dropped, as are hosted
//! tools (`web_search`, `image_generation`, `local_shell`, `file_search`, ...): they run on
//! OpenAI's side and a 400 for them breaks clients that always send them. Images and files in
//! a message are a 400 (the model reads text only); in a tool's output they are replaced by a
//! note saying so, so that an agent's turn can go on.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::api::conversation::{
    ConversationBuilder, OMITTED_MEDIA, ToolCatalog, ToolOrigin, arguments_value,
    custom_tool_parameters, flat_name,
};
use crate::api::error::{ApiError, ApiResult};

/// The request's conversation in chat form.
#[derive(Debug)]
pub struct ChatForm {
    pub messages: Vec<Value>,
    pub catalog: ToolCatalog,
    /// Chat-shaped `tool_choice` (`None`: the default for the tools given).
    pub tool_choice: Option<Value>,
}

/// The items a turn's prompt is made of: the chained-onto response's conversation, then the
/// request's `input` (borrowed from the request where it can be: it may be large).
#[derive(Debug, Default)]
pub struct Conversation<'a> {
    pub history: Vec<Value>,
    pub input: Vec<Cow<'a, Value>>,
}

impl Conversation<'_> {
    pub fn len(&self) -> usize {
        self.history.len() + self.input.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th item (history first) and the name errors about it use.
    pub fn item(&self, i: usize) -> (&Value, String) {
        match self.history.get(i) {
            Some(item) => (item, format!("previous_response[{i}]")),
            None => {
                let j = i - self.history.len();
                (&self.input[j], format!("input[{j}]"))
            }
        }
    }
}

/// The request's `input` as items: a string is one user message.
pub fn input_items(input: Option<&Value>) -> ApiResult<Vec<Cow<'_, Value>>> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![Cow::Owned(
            json!({"type": "message", "role": "user", "content": text}),
        )]),
        Some(Value::Array(items)) => Ok(items.iter().map(Cow::Borrowed).collect()),
        Some(_) => Err(ApiError::invalid(
            "input",
            "input must be a string or a list of items",
        )),
    }
}

/// The tools as a catalog of chat-shaped functions, and `tool_choice` in chat's form.
pub fn tool_catalog(
    tools: Option<&[Value]>,
    tool_choice: Option<&Value>,
) -> ApiResult<(ToolCatalog, Option<Value>)> {
    let mut catalog = ToolCatalog::default();
    for (i, tool) in tools.unwrap_or_default().iter().enumerate() {
        add_tool(&mut catalog, tool, &format!("tools[{i}]"))?;
    }
    let tool_choice = map_tool_choice(tool_choice, &mut catalog)?;
    Ok((catalog, tool_choice))
}

/// `instructions` and the conversation's items from `skip` on, as chat messages.
pub fn messages(
    instructions: Option<&str>,
    conversation: &Conversation<'_>,
    skip: usize,
) -> ApiResult<Vec<Value>> {
    let mut builder = ConversationBuilder::default();
    if let Some(text) = instructions {
        builder.system(text);
    }
    for i in skip..conversation.len() {
        let (item, param) = conversation.item(i);
        add_item(&mut builder, item, &param)?;
    }
    let messages = builder.finish();
    if messages.is_empty() {
        return Err(ApiError::invalid("input", "input is empty"));
    }
    Ok(messages)
}

/// The whole request in chat form (no item dropped).
pub fn chat_form(
    instructions: Option<&str>,
    input: Option<&Value>,
    tools: Option<&[Value]>,
    tool_choice: Option<&Value>,
    history: Vec<Value>,
) -> ApiResult<ChatForm> {
    let (catalog, tool_choice) = tool_catalog(tools, tool_choice)?;
    let conversation = Conversation {
        history,
        input: input_items(input)?,
    };
    Ok(ChatForm {
        messages: messages(instructions, &conversation, 0)?,
        catalog,
        tool_choice,
    })
}

fn add_item(c: &mut ConversationBuilder, item: &Value, param: &str) -> ApiResult<()> {
    let bad = |msg: &str| ApiError::invalid(param, format!("{param}: {msg}"));
    if !item.is_object() {
        return Err(bad("must be an object"));
    }
    // Easy input messages (`{"role", "content"}`) carry no `type`.
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    let str_field = |name: &str| -> ApiResult<&str> {
        item.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("'{name}' must be a string")))
    };
    match kind {
        "message" => {
            let role = str_field("role")?;
            let text = message_text(item.get("content"), param)?;
            match role {
                "user" => c.user(&text),
                "assistant" => c.assistant(&text),
                "system" | "developer" => c.system(&text),
                other => {
                    return Err(bad(&format!(
                        "unknown role '{other}' (user, assistant, system, developer)"
                    )));
                }
            }
        }
        "reasoning" => c.reasoning(&reasoning_text(item)),
        "function_call" => {
            let name = flat_name(
                item.get("namespace").and_then(Value::as_str),
                str_field("name")?,
            );
            let arguments = item
                .get("arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            c.tool_call(str_field("call_id")?, &name, arguments_value(arguments));
        }
        "custom_tool_call" => {
            let name = flat_name(
                item.get("namespace").and_then(Value::as_str),
                str_field("name")?,
            );
            let input = item.get("input").and_then(Value::as_str).unwrap_or("");
            c.tool_call(
                str_field("call_id")?,
                &name,
                json!({crate::api::conversation::CUSTOM_INPUT_ARGUMENT: input}),
            );
        }
        "function_call_output" | "custom_tool_call_output" => {
            let output = tool_output_text(item.get("output"))
                .ok_or_else(|| bad("'output' must be a string or a list of content parts"))?;
            c.tool_result(str_field("call_id")?, &output);
        }
        // Resolved against the store before this; one left names nothing stored.
        "item_reference" => {
            let id = item.get("id").and_then(Value::as_str).unwrap_or("");
            return Err(bad(&format!(
                "item_reference '{id}' names no stored item (items of stored responses can be \
                 referenced while they are kept)"
            )));
        }
        _ => {} // hosted-tool items: nothing the template can show
    }
    Ok(())
}

/// A message's text: a string, or its text parts joined.
fn message_text(content: Option<&Value>, param: &str) -> ApiResult<String> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::String(s)) => return Ok(s.clone()),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(ApiError::invalid(
                param,
                format!("{param}.content must be a string or a list of content parts"),
            ));
        }
    };
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "input_text" | "output_text" | "text" | "summary_text" | "reasoning_text" => {
                texts.push(part.get("text").and_then(Value::as_str).unwrap_or(""))
            }
            "refusal" => texts.push(part.get("refusal").and_then(Value::as_str).unwrap_or("")),
            other => {
                return Err(ApiError::invalid(
                    param,
                    format!(
                        "{param}.content[{j}]: content part type '{other}' is not supported (this model reads text only)"
                    ),
                ));
            }
        }
    }
    Ok(texts.join("\n"))
}

pub(super) fn reasoning_text(item: &Value) -> String {
    let texts = |field: &str| -> Vec<&str> {
        item.get(field)
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default()
    };
    let content = texts("content");
    if content.is_empty() {
        texts("summary").join("\n")
    } else {
        content.join("\n")
    }
}

/// A tool output's text; media parts become [`OMITTED_MEDIA`].
fn tool_output_text(output: Option<&Value>) -> Option<String> {
    match output? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .map(|p| match p.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => {
                        p.get("text").and_then(Value::as_str).unwrap_or("")
                    }
                    _ => OMITTED_MEDIA,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

fn add_tool(catalog: &mut ToolCatalog, tool: &Value, param: &str) -> ApiResult<()> {
    let bad = |msg: &str| ApiError::invalid(param, format!("{param}: {msg}"));
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "function" | "custom" => add_named_tool(catalog, tool, None, param),
        "namespace" => {
            let namespace = tool
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad("a namespace tool needs a name"))?;
            let inner = tool
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("a namespace tool needs a list of tools"))?;
            for (j, t) in inner.iter().enumerate() {
                let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
                if kind == "function" || kind == "custom" {
                    add_named_tool(catalog, t, Some(namespace), &format!("{param}.tools[{j}]"))?;
                }
            }
            Ok(())
        }
        "" => Err(bad("a tool needs a type")),
        _ => Ok(()), // hosted tools run on OpenAI's side
    }
}

fn add_named_tool(
    catalog: &mut ToolCatalog,
    tool: &Value,
    namespace: Option<&str>,
    param: &str,
) -> ApiResult<()> {
    let bad = |msg: &str| ApiError::invalid(param, format!("{param}: {msg}"));
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 256 && !n.chars().any(char::is_control))
        .ok_or_else(|| bad("name must be a non-empty string without control characters"))?;
    let description = tool.get("description").and_then(Value::as_str);
    let flat = flat_name(namespace, name);
    let custom = tool["type"] == "custom";
    let (parameters, origin) = if custom {
        let hint = tool
            .pointer("/format/definition")
            .and_then(Value::as_str)
            .map(|g| format!("Free-form text in this grammar:\n{g}"));
        let origin = match namespace {
            Some(ns) => ToolOrigin::NamespacedCustom {
                namespace: ns.to_owned(),
                name: name.to_owned(),
            },
            None => ToolOrigin::Custom,
        };
        (Some(custom_tool_parameters(hint.as_deref())), origin)
    } else {
        let parameters = match tool.get("parameters") {
            None | Some(Value::Null) => None,
            Some(p @ (Value::Object(_) | Value::Bool(true))) => Some(p.clone()),
            Some(_) => return Err(bad("parameters must be a JSON Schema object")),
        };
        let origin = match namespace {
            Some(ns) => ToolOrigin::Namespaced {
                namespace: ns.to_owned(),
                name: name.to_owned(),
            },
            None => ToolOrigin::Function,
        };
        (parameters, origin)
    };
    catalog.add(flat, description, parameters, origin);
    Ok(())
}

/// `tool_choice` → chat's form. `allowed_tools` narrows the catalog to its tools.
fn map_tool_choice(choice: Option<&Value>, catalog: &mut ToolCatalog) -> ApiResult<Option<Value>> {
    let bad = |msg: String| ApiError::invalid("tool_choice", msg);
    let Some(choice) = choice.filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    if let Value::String(mode) = choice {
        return Ok(Some(Value::String(mode.clone())));
    }
    let kind = choice.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "function" | "custom" => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("a {kind} tool_choice needs a name")))?;
            let flat = flat_name(choice.get("namespace").and_then(Value::as_str), name);
            Ok(Some(
                json!({"type": "function", "function": {"name": flat}}),
            ))
        }
        "allowed_tools" => {
            let names: Vec<String> = choice
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("allowed_tools needs a list of tools".into()))?
                .iter()
                .filter_map(|t| {
                    let name = t.get("name").and_then(Value::as_str)?;
                    Some(flat_name(t.get("namespace").and_then(Value::as_str), name))
                })
                .collect();
            catalog.retain(&names);
            let mode = choice.get("mode").and_then(Value::as_str).unwrap_or("auto");
            Ok(Some(Value::String(mode.to_owned())))
        }
        other => Err(bad(format!(
            "tool_choice type '{other}' names a hosted tool, which this server does not run"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(input: Value, tools: Value, choice: Option<Value>) -> ApiResult<ChatForm> {
        let tools = tools.as_array().cloned().unwrap_or_default();
        chat_form(
            Some("be brief"),
            Some(&input),
            Some(&tools),
            choice.as_ref(),
            Vec::new(),
        )
    }

    #[test]
    fn items_become_chat_messages() {
        let input = json!([
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
            {"role": "user", "content": "weather?"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "call it"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get", "namespace": "wx", "arguments": "{\"city\": \"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "sunny"}, {"type": "input_image", "image_url": "x"}]},
            {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin"},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": "ok"},
            {"type": "web_search_call", "id": "ws", "action": {"query": "q"}},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
        ]);
        let f = form(input, json!([]), None).unwrap();
        let m = &f.messages;
        assert_eq!(
            m[0],
            json!({"role": "system", "content": "be brief\n\ndev"})
        );
        assert_eq!(m[1], json!({"role": "user", "content": "weather?"}));
        assert_eq!(m[2]["reasoning_content"], "call it");
        assert_eq!(
            m[2]["tool_calls"][0]["function"],
            json!({"name": "wx.get", "arguments": {"city": "Paris"}})
        );
        assert_eq!(m[3]["content"], format!("sunny\n{OMITTED_MEDIA}"));
        assert_eq!(
            m[4]["tool_calls"][0]["function"]["arguments"],
            json!({"input": "*** Begin"})
        );
        assert_eq!(
            m[5],
            json!({"role": "tool", "content": "ok", "tool_call_id": "call_2"})
        );
        assert_eq!(m[6], json!({"role": "assistant", "content": "Sunny."}));
        assert_eq!(m.len(), 7);
    }

    #[test]
    fn tools_are_flattened_mapped_or_skipped() {
        let tools = json!([
            {"type": "function", "name": "exec", "description": "run", "parameters": {"type": "object"}, "strict": false},
            {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
            {"type": "namespace", "name": "agents", "description": "d", "tools": [
                {"type": "function", "name": "spawn", "parameters": {"type": "object"}}]},
            {"type": "web_search", "external_web_access": false},
            {"type": "image_generation"}, {"type": "local_shell"}, {"type": "tool_search"},
        ]);
        let f = form(json!("hi"), tools, None).unwrap();
        let names: Vec<&str> = f
            .catalog
            .chat_tools()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["exec", "apply_patch", "agents.spawn"]);
        assert_eq!(f.catalog.origin("apply_patch"), ToolOrigin::Custom);
        let patch = &f.catalog.chat_tools()[1]["function"]["parameters"];
        assert_eq!(patch["required"], json!(["input"]));
        assert!(
            patch["properties"]["input"]["description"]
                .as_str()
                .unwrap()
                .contains("start: x")
        );
        assert_eq!(
            f.catalog.origin("agents.spawn"),
            ToolOrigin::Namespaced {
                namespace: "agents".into(),
                name: "spawn".into()
            }
        );
        assert_eq!(f.messages[1], json!({"role": "user", "content": "hi"}));
    }

    #[test]
    fn tool_choice_forms() {
        let tools = json!([{"type": "function", "name": "a"}, {"type": "function", "name": "b"}]);
        let f = form(
            json!("x"),
            tools.clone(),
            Some(json!({"type": "function", "name": "a"})),
        )
        .unwrap();
        assert_eq!(
            f.tool_choice,
            Some(json!({"type": "function", "function": {"name": "a"}}))
        );
        let f = form(json!("x"), tools.clone(), Some(json!("required"))).unwrap();
        assert_eq!(f.tool_choice, Some(json!("required")));
        let allowed = json!({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "b"}]});
        let f = form(json!("x"), tools.clone(), Some(allowed)).unwrap();
        assert_eq!(f.catalog.chat_tools().len(), 1);
        assert_eq!(f.tool_choice, Some(json!("required")));
        let err = form(json!("x"), tools, Some(json!({"type": "web_search"}))).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn bad_items_name_their_place() {
        let cases = [
            (
                json!([{"role": "critic", "content": "x"}]),
                "input[0]",
                "critic",
            ),
            (
                json!([{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]),
                "input[0]",
                "text only",
            ),
            (
                json!([{"type": "function_call", "name": "f", "arguments": "{}"}]),
                "input[0]",
                "call_id",
            ),
            (
                json!([{"type": "function_call_output", "call_id": "c", "output": 3}]),
                "input[0]",
                "output",
            ),
            (
                json!([{"type": "item_reference", "id": "msg_gone"}]),
                "input[0]",
                "msg_gone",
            ),
            (json!(7), "input", "string"),
            (json!([]), "input", "empty"),
        ];
        for (input, param, needle) in cases {
            let err = chat_form(None, Some(&input), None, None, Vec::new()).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{input}");
            assert!(err.message.contains(needle), "{}", err.message);
        }
        let tools = [json!({"type": "function"})];
        let err = chat_form(None, Some(&json!("x")), Some(&tools), None, Vec::new()).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tools[0]"));
    }
}
