//! What the Responses and Messages APIs are translated into before the chat template sees them:
//! chat-completions messages (`role`, string `content`, `reasoning_content`, `tool_calls`,
//! `tool_call_id`) and chat-shaped function tools, plus a [`ToolCatalog`] that maps the names
//! the model sees back to the tools the client declared.
//!
//! [`ConversationBuilder`] applies the rules both APIs share:
//! - leading system text (instructions, `system`, leading `system`/`developer` messages) becomes
//!   one system message, since Qwen3's template renders only the first message as the system
//!   prompt that the tool list joins; later system text stays a system turn where it was;
//! - reasoning is kept for the assistant turn that follows it;
//! - tool calls join the assistant turn they follow (text, then calls, as the model writes them);
//! - tool results become `tool` messages, which the template groups into one user turn.

use serde_json::{Value, json};

/// What a tool output that held an image or file says instead.
pub const OMITTED_MEDIA: &str = "[non-text content omitted: this model reads text only]";

/// Where a tool the model sees came from in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOrigin {
    /// A plain function tool.
    Function,
    /// A Responses `custom` tool (free-form text input), shown to the model as a function with
    /// one string argument, [`CUSTOM_INPUT_ARGUMENT`].
    Custom,
    /// A function inside a Responses `namespace` tool: the model sees `namespace.name`.
    Namespaced { namespace: String, name: String },
    /// A `custom` tool inside a namespace.
    NamespacedCustom { namespace: String, name: String },
}

/// The argument a custom tool's free-form input travels in.
pub const CUSTOM_INPUT_ARGUMENT: &str = "input";

/// The separator of a namespaced tool's flat name.
pub const NAMESPACE_SEPARATOR: char = '.';

/// The tools of one request, by the name the model sees.
#[derive(Debug, Clone, Default)]
pub struct ToolCatalog {
    entries: Vec<(String, ToolOrigin)>,
    /// Chat-shaped tools, in request order, for the template and the tool-choice planner.
    chat_tools: Vec<Value>,
}

impl ToolCatalog {
    /// Adds a function the model may call.
    pub fn add(
        &mut self,
        flat_name: String,
        description: Option<&str>,
        parameters: Option<Value>,
        origin: ToolOrigin,
    ) {
        let mut function = serde_json::Map::new();
        function.insert("name".into(), Value::String(flat_name.clone()));
        if let Some(d) = description.filter(|d| !d.is_empty()) {
            function.insert("description".into(), Value::String(d.to_owned()));
        }
        if let Some(p) = parameters.filter(|p| !p.is_null()) {
            function.insert("parameters".into(), p);
        }
        self.chat_tools
            .push(json!({"type": "function", "function": function}));
        self.entries.push((flat_name, origin));
    }

    pub fn chat_tools(&self) -> &[Value] {
        &self.chat_tools
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, flat_name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == flat_name)
    }

    /// The origin of a name the model called; unknown names are plain functions.
    pub fn origin(&self, flat_name: &str) -> ToolOrigin {
        self.entries
            .iter()
            .find(|(n, _)| n == flat_name)
            .map_or(ToolOrigin::Function, |(_, o)| o.clone())
    }

    /// Keeps only the tools whose flat names are in `names` (an `allowed_tools` choice).
    pub fn retain(&mut self, names: &[String]) {
        let keep: Vec<bool> = self
            .entries
            .iter()
            .map(|(n, _)| names.iter().any(|k| k == n))
            .collect();
        let mut i = 0;
        self.entries.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let mut j = 0;
        self.chat_tools.retain(|_| {
            j += 1;
            keep[j - 1]
        });
    }
}

/// The flat name of `name` inside `namespace`.
pub fn flat_name(namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}{NAMESPACE_SEPARATOR}{name}"),
        None => name.to_owned(),
    }
}

/// The JSON Schema of a custom tool's one string argument.
pub fn custom_tool_parameters(grammar_hint: Option<&str>) -> Value {
    let mut input = json!({"type": "string"});
    if let Some(hint) = grammar_hint {
        input["description"] = Value::String(hint.to_owned());
    }
    json!({
        "type": "object",
        "properties": {CUSTOM_INPUT_ARGUMENT: input},
        "required": [CUSTOM_INPUT_ARGUMENT],
    })
}

/// A custom tool's input from the arguments the model wrote: the string argument when the
/// arguments are the expected object, else the raw arguments text.
pub fn custom_tool_input(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .and_then(|v| {
            v.get(CUSTOM_INPUT_ARGUMENT)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| arguments.to_owned())
}

/// Builds chat messages in order; see the module doc for the rules.
#[derive(Debug, Default)]
pub struct ConversationBuilder {
    system: Vec<String>,
    messages: Vec<Value>,
    pending_reasoning: Option<String>,
}

impl ConversationBuilder {
    pub fn system(&mut self, text: &str) {
        if self.messages.is_empty() {
            if !text.is_empty() {
                self.system.push(text.to_owned());
            }
        } else {
            self.messages
                .push(json!({"role": "system", "content": text}));
        }
    }

    pub fn user(&mut self, text: &str) {
        self.messages.push(json!({"role": "user", "content": text}));
    }

    /// Reasoning of the next assistant turn.
    pub fn reasoning(&mut self, text: &str) {
        let pending = self.pending_reasoning.get_or_insert_with(String::new);
        if !pending.is_empty() && !text.is_empty() {
            pending.push('\n');
        }
        pending.push_str(text);
    }

    pub fn assistant(&mut self, text: &str) {
        let mut message = json!({"role": "assistant", "content": text});
        if let Some(r) = self.pending_reasoning.take() {
            message["reasoning_content"] = Value::String(r);
        }
        self.messages.push(message);
    }

    /// A call the assistant made; `arguments` is the JSON text (or object) it wrote.
    pub fn tool_call(&mut self, id: &str, name: &str, arguments: Value) {
        let call = json!({
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        });
        let joins_last = self.pending_reasoning.is_none()
            && self
                .messages
                .last()
                .is_some_and(|m| m["role"] == "assistant");
        if !joins_last {
            self.assistant("");
        }
        if let Some(last) = self.messages.last_mut() {
            match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                Some(calls) => calls.push(call),
                None => last["tool_calls"] = json!([call]),
            }
        }
    }

    pub fn tool_result(&mut self, call_id: &str, text: &str) {
        self.messages
            .push(json!({"role": "tool", "content": text, "tool_call_id": call_id}));
    }

    pub fn finish(self) -> Vec<Value> {
        let mut out = Vec::with_capacity(self.messages.len() + 1);
        if !self.system.is_empty() {
            out.push(json!({"role": "system", "content": self.system.join("\n\n")}));
        }
        out.extend(self.messages);
        out
    }
}

/// Tool arguments as the template wants them: the object the JSON text holds, else the text.
pub fn arguments_value(arguments: &str) -> Value {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::String(arguments.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_system_text_merges_and_calls_join_their_turn() {
        let mut b = ConversationBuilder::default();
        b.system("instructions");
        b.system("developer note");
        b.user("hi");
        b.reasoning("think");
        b.assistant("looking");
        b.tool_call("c1", "f", json!({"a": 1}));
        b.tool_call("c2", "g", json!({}));
        b.tool_result("c1", "one");
        b.tool_result("c2", "two");
        b.system("late system");
        b.reasoning("again");
        b.tool_call("c3", "f", json!({}));
        let m = b.finish();
        assert_eq!(
            m[0],
            json!({"role": "system", "content": "instructions\n\ndeveloper note"})
        );
        assert_eq!(m[2]["reasoning_content"], "think");
        assert_eq!(m[2]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(m[3]["role"], "tool");
        assert_eq!(m[5], json!({"role": "system", "content": "late system"}));
        assert_eq!(m[6]["reasoning_content"], "again");
        assert_eq!(m[6]["content"], "");
        assert_eq!(m[6]["tool_calls"][0]["id"], "c3");
        assert_eq!(m.len(), 7);
    }

    #[test]
    fn catalog_maps_names_back_and_filters() {
        let mut c = ToolCatalog::default();
        c.add("f".into(), Some("d"), None, ToolOrigin::Function);
        c.add(
            flat_name(Some("ns"), "g"),
            None,
            Some(custom_tool_parameters(None)),
            ToolOrigin::NamespacedCustom {
                namespace: "ns".into(),
                name: "g".into(),
            },
        );
        assert_eq!(
            c.chat_tools()[0],
            json!({"type": "function", "function": {"name": "f", "description": "d"}})
        );
        assert_eq!(c.chat_tools()[1]["function"]["name"], "ns.g");
        assert!(matches!(
            c.origin("ns.g"),
            ToolOrigin::NamespacedCustom { .. }
        ));
        assert_eq!(c.origin("unknown"), ToolOrigin::Function);
        c.retain(&["ns.g".to_owned()]);
        assert_eq!(c.chat_tools().len(), 1);
        assert!(!c.contains("f"));
        assert_eq!(
            custom_tool_input(r#"{"input": "*** Begin Patch"}"#),
            "*** Begin Patch"
        );
        assert_eq!(custom_tool_input("{broken"), "{broken");
        assert_eq!(arguments_value("{\"a\": 1}"), json!({"a": 1}));
        assert_eq!(arguments_value("[1]"), json!("[1]"));
    }
}
