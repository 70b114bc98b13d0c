//! One chat choice's output: raw text deltas → reasoning, content and tool-call deltas.
//!
//! The same object serves streamed and non-streamed responses (a non-streamed message is the
//! concatenation of the deltas), so both always agree.

use super::request_builder::random_id;
use super::types::chat::{FunctionCall, FunctionChunk, ToolCall, ToolCallChunk};
use crate::parsers::{HermesToolParser, Qwen3ReasoningParser};

#[derive(Debug, Default)]
pub struct ChoiceDelta {
    pub reasoning: String,
    pub content: String,
    pub tool_calls: Vec<ToolCallChunk>,
}

impl ChoiceDelta {
    pub fn is_empty(&self) -> bool {
        self.reasoning.is_empty() && self.content.is_empty() && self.tool_calls.is_empty()
    }
}

pub struct ChoiceParser {
    reasoning: Option<Qwen3ReasoningParser>,
    tools: Option<HermesToolParser>,
    /// `call_…` id of each call, by index.
    ids: Vec<String>,
}

impl ChoiceParser {
    /// `reasoning`: split `<think>` blocks (`Some(prompt_opened)`); `tools`: parse tool calls.
    pub fn new(reasoning: Option<bool>, tools: bool) -> Self {
        Self {
            reasoning: reasoning.map(Qwen3ReasoningParser::new),
            tools: tools.then(HermesToolParser::new),
            ids: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> ChoiceDelta {
        let (reasoning, content) = match &mut self.reasoning {
            Some(p) => {
                let d = p.push(text);
                (d.reasoning, d.content)
            }
            None => (String::new(), text.to_owned()),
        };
        self.route_content(reasoning, &content, false)
    }

    pub fn finish(&mut self) -> ChoiceDelta {
        let (reasoning, content) = match &mut self.reasoning {
            Some(p) => {
                let d = p.finish();
                (d.reasoning, d.content)
            }
            None => (String::new(), String::new()),
        };
        self.route_content(reasoning, &content, true)
    }

    /// Whether any tool call was found.
    pub fn called_tools(&self) -> bool {
        !self.ids.is_empty()
    }

    fn route_content(&mut self, reasoning: String, content: &str, last: bool) -> ChoiceDelta {
        let Some(tools) = &mut self.tools else {
            return ChoiceDelta {
                reasoning,
                content: content.to_owned(),
                tool_calls: Vec::new(),
            };
        };
        let mut d = tools.push(content);
        if last {
            d.extend(tools.finish());
        }
        let tool_calls = d
            .calls
            .into_iter()
            .map(|c| {
                let id = match c.name {
                    Some(_) => {
                        let id = random_id("call_");
                        self.ids.push(id.clone());
                        Some(id)
                    }
                    None => None,
                };
                ToolCallChunk {
                    index: c.index,
                    kind: id.as_ref().map(|_| "function"),
                    id,
                    function: FunctionChunk {
                        name: c.name,
                        arguments: c.arguments,
                    },
                }
            })
            .collect();
        ChoiceDelta {
            reasoning,
            content: d.content,
            tool_calls,
        }
    }
}

/// Accumulates deltas into the non-streamed message fields.
#[derive(Debug, Default)]
pub struct MessageBuilder {
    pub reasoning: String,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
}

impl MessageBuilder {
    pub fn add(&mut self, delta: ChoiceDelta) {
        self.reasoning.push_str(&delta.reasoning);
        self.content.push_str(&delta.content);
        for chunk in delta.tool_calls {
            match chunk.id {
                Some(id) => self.tool_calls.push(ToolCall {
                    id,
                    kind: "function",
                    function: FunctionCall {
                        name: chunk.function.name.unwrap_or_default(),
                        arguments: chunk.function.arguments,
                    },
                }),
                None => {
                    if let Some(call) = self.tool_calls.get_mut(chunk.index) {
                        call.function.arguments.push_str(&chunk.function.arguments);
                    }
                }
            }
        }
    }
}
