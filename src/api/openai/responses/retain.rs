//! What of a request the store keeps: only what a later prompt reads. An item becomes the
//! fields [`super::input`] reads from it (a hosted-tool call or any other item the prompt drops
//! is not kept at all), and a hosted tool is echoed as its type alone, so a payload the model
//! never sees cannot take memory after its request ends.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::input::reasoning_text;
use crate::api::conversation::OMITTED_MEDIA;

/// A conversation's items as the store keeps them, written as JSON while they are added (so
/// the request's parsed values need not outlive the turn's preparation).
#[derive(Debug, Default)]
pub struct KeptItems {
    /// The items' JSON, comma-separated (an array without its brackets).
    json: String,
    ids: Vec<Box<str>>,
}

impl KeptItems {
    pub fn push(&mut self, item: &Value) {
        let Some(kept) = prompt_item(item) else {
            return;
        };
        if let Some(id) = kept.get("id").and_then(Value::as_str) {
            self.ids.push(id.into());
        }
        if !self.json.is_empty() {
            self.json.push(',');
        }
        self.json.push_str(&kept.to_string());
    }

    /// The JSON array and the ids of its items.
    pub fn finish(self) -> (Bytes, Vec<Box<str>>) {
        let mut array = String::with_capacity(self.json.len() + 2);
        array.push('[');
        array.push_str(&self.json);
        array.push(']');
        (Bytes::from(array), self.ids)
    }
}

/// The item as the store keeps it; `None` for an item no prompt reads.
pub fn prompt_item(item: &Value) -> Option<Value> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    let mut kept = Map::new();
    kept.insert("type".into(), Value::String(kind.to_owned()));
    let copy = |kept: &mut Map<String, Value>, field: &str| {
        if let Some(v @ Value::String(_)) = item.get(field) {
            kept.insert(field.to_owned(), v.clone());
        }
    };
    copy(&mut kept, "id");
    match kind {
        "message" => {
            copy(&mut kept, "role");
            kept.insert("content".into(), message_content(item.get("content")));
        }
        "reasoning" => {
            kept.insert("summary".into(), json!([]));
            kept.insert(
                "content".into(),
                json!([{"type": "reasoning_text", "text": reasoning_text(item)}]),
            );
        }
        "function_call" => {
            for field in ["call_id", "name", "namespace", "arguments"] {
                copy(&mut kept, field);
            }
        }
        "custom_tool_call" => {
            for field in ["call_id", "name", "namespace", "input"] {
                copy(&mut kept, field);
            }
        }
        "function_call_output" | "custom_tool_call_output" => {
            copy(&mut kept, "call_id");
            kept.insert("output".into(), tool_output(item.get("output")));
        }
        _ => return None,
    }
    Some(Value::Object(kept))
}

/// A message's content: a string, or its text parts (other parts are refused before storing).
fn message_content(content: Option<&Value>) -> Value {
    match content {
        Some(Value::Array(parts)) => Value::Array(
            parts
                .iter()
                .map(|p| {
                    let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
                    let field = if kind == "refusal" { "refusal" } else { "text" };
                    let text = p.get(field).and_then(Value::as_str).unwrap_or("");
                    json!({"type": kind, field: text})
                })
                .collect(),
        ),
        Some(s @ Value::String(_)) => s.clone(),
        _ => Value::String(String::new()),
    }
}

/// A tool output's text parts; a media part becomes the note the prompt shows instead.
fn tool_output(output: Option<&Value>) -> Value {
    match output {
        Some(Value::Array(parts)) => Value::Array(
            parts
                .iter()
                .map(|p| match p.get("type").and_then(Value::as_str) {
                    Some(kind @ ("input_text" | "output_text" | "text")) => {
                        let text = p.get("text").and_then(Value::as_str).unwrap_or("");
                        json!({"type": kind, "text": text})
                    }
                    _ => json!({"type": "input_text", "text": OMITTED_MEDIA}),
                })
                .collect(),
        ),
        Some(s @ Value::String(_)) => s.clone(),
        _ => Value::String(String::new()),
    }
}

/// A tool as the response echoes it: a function, custom or namespace tool as given (the
/// prompt shows it), a hosted tool as its type alone (it runs on OpenAI's side, not here).
pub fn echoed_tool(tool: &Value) -> Value {
    match tool.get("type").and_then(Value::as_str) {
        Some("function" | "custom" | "namespace") => tool.clone(),
        Some(kind) => json!({"type": kind}),
        None => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_prompt_reads_is_kept() {
        let junk: Vec<u32> = (0..100).collect();
        let item = json!({"type": "message", "id": "m1", "role": "user", "junk": junk,
            "content": [{"type": "input_text", "text": "hi", "annotations": junk}]});
        assert_eq!(
            prompt_item(&item).unwrap(),
            json!({"type": "message", "id": "m1", "role": "user",
                "content": [{"type": "input_text", "text": "hi"}]})
        );
        let call = json!({"type": "function_call", "call_id": "c", "name": "f",
            "arguments": "{}", "status": "completed", "junk": junk});
        assert_eq!(
            prompt_item(&call).unwrap(),
            json!({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"})
        );
        let output = json!({"type": "function_call_output", "call_id": "c",
            "output": [{"type": "input_image", "image_url": "data:..."}]});
        assert_eq!(
            prompt_item(&output).unwrap()["output"][0]["text"],
            OMITTED_MEDIA
        );
        let reasoning = json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}],
            "encrypted_content": "x".repeat(100)});
        assert_eq!(prompt_item(&reasoning).unwrap()["content"][0]["text"], "s");
        for dropped in [
            json!({"type": "web_search_call", "action": junk}),
            json!({"type": "image_generation_call", "result": "x".repeat(1000)}),
        ] {
            assert!(prompt_item(&dropped).is_none(), "{dropped}");
        }
    }

    #[test]
    fn kept_items_are_one_json_array() {
        let mut kept = KeptItems::default();
        kept.push(&json!({"role": "user", "content": "a", "id": "m1"}));
        kept.push(&json!({"type": "web_search_call", "id": "ws1"}));
        kept.push(
            &json!({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}),
        );
        let (array, ids) = kept.finish();
        let items: Vec<Value> = serde_json::from_slice(&array).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(ids, vec![Box::<str>::from("m1")]);
    }

    #[test]
    fn hosted_tools_echo_their_type_only() {
        let hosted = json!({"type": "web_search", "filters": {"allowed_domains": ["a", "b"]}});
        assert_eq!(echoed_tool(&hosted), json!({"type": "web_search"}));
        let f = json!({"type": "function", "name": "f", "parameters": {"type": "object"}});
        assert_eq!(echoed_tool(&f), f);
    }
}
