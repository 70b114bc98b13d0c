//! Shaping request messages into what chat templates expect.
//!
//! Two steps, kept apart because they belong to different layers:
//!
//! * [`prepare_messages`] is the server's job (vLLM does the same): OpenAI clients may send
//!   `content` as an array of parts, or `null`/nothing on an assistant message that only makes
//!   tool calls. Templates concatenate `content` as a string, so parts are joined and a missing
//!   content becomes `""`.
//! * [`template_messages`] is what transformers' `apply_chat_template` does before rendering,
//!   and [`super::ChatTemplate::render`] applies it: keys whose value is `null` are dropped,
//!   and the reasoning of a message is offered under every name templates read it by.

use serde_json::{Map, Value};

use crate::error::{Error, RequestPart, Result};

/// Separator between the text parts of one message's content, as vLLM joins them.
pub const CONTENT_PART_SEPARATOR: &str = "\n";

/// Names a message's reasoning is passed under, in transformers' order of preference.
/// `reasoning_content` is what Qwen3's template reads; vLLM now emits `reasoning`.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// Checks the messages of a chat request and flattens their content to strings.
///
/// Each message must be an object with a known string `role` (`developer` is passed on as
/// `system`). `content` may be a string, `null` or
/// missing (→ `""`), or an array of `{"type": "text", "text": ...}` parts (→ their texts joined
/// with `"\n"`). Any other part type (images, audio, files) is rejected: this server only
/// runs text models. Other fields (`tool_calls`, `tool_call_id`, `reasoning_content`, ...) are
/// passed through untouched.
pub fn prepare_messages(messages: &[Value]) -> Result<Vec<Value>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let Value::Object(fields) = message else {
                return Err(invalid(format!("messages[{i}] must be an object")));
            };
            let role = match fields.get("role") {
                Some(Value::String(role)) => template_role(role).ok_or_else(|| {
                    invalid(format!(
                        "messages[{i}].role: unknown role '{role}' (expected one of {})",
                        KNOWN_ROLES.join(", ")
                    ))
                })?,
                Some(_) => return Err(invalid(format!("messages[{i}].role must be a string"))),
                None => return Err(invalid(format!("messages[{i}] is missing 'role'"))),
            };
            let content = match fields.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(content) => flatten_content(content)
                    .map_err(|reason| invalid(format!("messages[{i}].content{reason}")))?,
            };
            let mut fields = fields.clone();
            fields.insert("role".into(), Value::String(role.to_owned()));
            fields.insert("content".into(), Value::String(content));
            Ok(Value::Object(fields))
        })
        .collect()
}

/// Roles a chat request may use.
const KNOWN_ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// The role the template is given: `developer` (OpenAI's newer name for instructions) is
/// `system`, since Qwen3's template has no `developer` role and would drop the message
/// silently. `None` for a role no template knows.
fn template_role(role: &str) -> Option<&'static str> {
    match role {
        "developer" => Some("system"),
        known => KNOWN_ROLES.iter().find(|r| **r == known).copied(),
    }
}

/// The text of one `content` value: a string, or an array of text parts. The error is the
/// rest of a message that starts with the field's name.
fn flatten_content(content: &Value) -> std::result::Result<String, String> {
    let parts = match content {
        Value::String(s) => return Ok(s.clone()),
        Value::Array(parts) => parts,
        _ => return Err(" must be a string or an array of content parts".into()),
    };
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str);
        match (kind, part.get("text")) {
            (Some("text"), Some(Value::String(text))) => texts.push(text.as_str()),
            (Some("text"), _) => return Err(format!("[{j}].text must be a string")),
            (Some(other), _) => {
                return Err(format!(
                    "[{j}]: content part type '{other}' is not supported (text only)"
                ));
            }
            (None, _) => return Err(format!("[{j}] must be an object with a 'type'")),
        }
    }
    Ok(texts.join(CONTENT_PART_SEPARATOR))
}

/// The messages as transformers hands them to the template: `null`-valued keys removed, and
/// when a message carries reasoning under any of `reasoning_content`, `thinking` or
/// `reasoning`, it is also set as `reasoning_content` (and as `thinking`, unless present).
pub fn template_messages(messages: &[Value]) -> Result<Vec<Value>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let Value::Object(fields) = message else {
                return Err(invalid(format!("messages[{i}] must be an object")));
            };
            let fields: Map<String, Value> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let reasoning = REASONING_FIELDS
                .iter()
                .find_map(|name| fields.get(*name))
                .cloned();
            let Some(reasoning) = reasoning else {
                return Ok(Value::Object(fields));
            };
            // Python: {"thinking": reasoning, **message, "reasoning_content": reasoning}
            let mut aliased = Map::with_capacity(fields.len() + 2);
            aliased.insert("thinking".into(), reasoning.clone());
            aliased.extend(fields);
            aliased.insert("reasoning_content".into(), reasoning);
            Ok(Value::Object(aliased))
        })
        .collect()
}

/// Replaces each assistant tool call's `arguments` given as a JSON object string by the object,
/// as vLLM does before rendering. For templates that walk the arguments as a mapping
/// (Qwen3-Coder's `tool_call.arguments|items`); a string that is not a JSON object is kept.
pub fn parse_call_arguments(chat: &mut [Value]) {
    for message in chat {
        if message.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        let Some(Value::Array(calls)) = message.get_mut("tool_calls") else {
            continue;
        };
        for call in calls {
            let holder = match call.get("function") {
                Some(Value::Object(_)) => call.get_mut("function"),
                _ => Some(call),
            };
            let Some(Value::Object(holder)) = holder else {
                continue;
            };
            if let Some(Value::String(text)) = holder.get("arguments")
                && let Ok(object @ Value::Object(_)) = serde_json::from_str::<Value>(text)
            {
                holder.insert("arguments".into(), object);
            }
        }
    }
}

fn invalid(message: String) -> Error {
    Error::invalid(RequestPart::Prompt, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_arguments_strings_become_objects() {
        let mut chat = vec![
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "f", "arguments": "{\"a\": [1]}"}},
                {"type": "function", "function": {"name": "g", "arguments": "not json"}},
                {"name": "h", "arguments": "{}"}
            ]}),
            json!({"role": "tool", "content": "{\"a\": 1}"}),
        ];
        parse_call_arguments(&mut chat);
        let calls = &chat[0]["tool_calls"];
        assert_eq!(calls[0]["function"]["arguments"], json!({"a": [1]}));
        assert_eq!(calls[1]["function"]["arguments"], "not json");
        assert_eq!(calls[2]["arguments"], json!({}));
        assert_eq!(chat[1]["content"], "{\"a\": 1}");
    }

    #[test]
    fn content_parts_are_joined_and_null_content_is_empty() {
        let out = prepare_messages(&[
            json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
            json!({"role": "assistant", "content": null, "tool_calls": []}),
            json!({"role": "assistant"}),
            json!({"role": "user", "content": []}),
        ])
        .unwrap();
        assert_eq!(out[0]["content"], "a\nb");
        assert_eq!(out[1]["content"], "");
        assert_eq!(out[1]["tool_calls"], json!([]));
        assert_eq!(out[2]["content"], "");
        assert_eq!(out[3]["content"], "");
    }

    #[test]
    fn non_text_parts_and_malformed_messages_are_invalid_requests() {
        let bad = [
            json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}),
            json!({"role": "user", "content": [{"type": "text"}]}),
            json!({"role": "user", "content": ["bare string"]}),
            json!({"role": "user", "content": 5}),
            json!({"content": "no role"}),
            json!({"role": 1, "content": "x"}),
            json!({"role": "critic", "content": "x"}),
            json!("not an object"),
        ];
        for message in bad {
            match prepare_messages(std::slice::from_ref(&message)) {
                Err(Error::InvalidRequest {
                    part,
                    message: text,
                }) => {
                    assert_eq!(part, RequestPart::Prompt, "{text}");
                }
                other => panic!("{message}: expected InvalidRequest, got {other:?}"),
            }
        }
    }

    #[test]
    fn developer_messages_are_system_messages() {
        let out = prepare_messages(&[json!({"role": "developer", "content": "be brief"})]).unwrap();
        assert_eq!(out[0], json!({"role": "system", "content": "be brief"}));
        let err = prepare_messages(&[json!({"role": "critic", "content": "x"})]).unwrap_err();
        assert!(err.to_string().contains("'critic'"), "{err}");
    }

    #[test]
    fn template_messages_drop_nulls_and_alias_reasoning() {
        let out = template_messages(&[json!({
            "role": "assistant", "content": "x", "tool_calls": null, "reasoning": "r"
        })])
        .unwrap();
        let keys: Vec<&str> = out[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "thinking",
                "role",
                "content",
                "reasoning",
                "reasoning_content"
            ]
        );
        assert_eq!(out[0]["reasoning_content"], "r");

        let out = template_messages(&[
            json!({"role": "assistant", "reasoning_content": null, "thinking": "t"}),
        ])
        .unwrap();
        assert_eq!(out[0]["reasoning_content"], "t");
    }
}
