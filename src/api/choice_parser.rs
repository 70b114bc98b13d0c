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
        self.route_content(reasoning, &content)
    }

    pub fn finish(&mut self) -> ChoiceDelta {
        self.end(false)
    }

    /// Ends an output cut by the token limit: no partial tool-call markup becomes content.
    pub fn finish_cut(&mut self) -> ChoiceDelta {
        self.end(true)
    }

    /// Whether any tool call was found.
    pub fn called_tools(&self) -> bool {
        !self.ids.is_empty()
    }

    fn end(&mut self, cut: bool) -> ChoiceDelta {
        let (reasoning, content) = match &mut self.reasoning {
            Some(p) => {
                let d = p.finish();
                (d.reasoning, d.content)
            }
            None => (String::new(), String::new()),
        };
        let Some(tools) = &mut self.tools else {
            return ChoiceDelta {
                reasoning,
                content,
                tool_calls: Vec::new(),
            };
        };
        let mut d = tools.push(&content);
        d.extend(if cut {
            tools.finish_cut()
        } else {
            tools.finish()
        });
        self.delta_from(reasoning, d)
    }

    fn route_content(&mut self, reasoning: String, content: &str) -> ChoiceDelta {
        let Some(tools) = &mut self.tools else {
            return ChoiceDelta {
                reasoning,
                content: content.to_owned(),
                tool_calls: Vec::new(),
            };
        };
        let d = tools.push(content);
        self.delta_from(reasoning, d)
    }

    /// Gives each new call its `call_…` id.
    fn delta_from(&mut self, reasoning: String, d: crate::parsers::HermesDelta) -> ChoiceDelta {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(text: &str, cuts: &[usize]) -> MessageBuilder {
        let mut parser = ChoiceParser::new(Some(false), true);
        let mut message = MessageBuilder::default();
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|&c| c % (text.len() + 1))
            .filter(|&c| text.is_char_boundary(c))
            .collect();
        points.sort_unstable();
        points.push(text.len());
        let mut last = 0;
        for c in points {
            if c >= last {
                message.add(parser.push(&text[last..c]));
                last = c;
            }
        }
        message.add(parser.finish());
        message
    }

    fn summary(m: &MessageBuilder) -> (String, String, Vec<(String, String)>) {
        let calls = m
            .tool_calls
            .iter()
            .map(|c| (c.function.name.clone(), c.function.arguments.clone()))
            .collect();
        (m.reasoning.clone(), m.content.clone(), calls)
    }

    #[test]
    fn reasoning_then_calls() {
        let text = "<think>\nI should call it.\n</think>\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"}\"}}\n</tool_call>";
        let m = run(text, &[]);
        assert_eq!(
            summary(&m),
            (
                "I should call it.".into(),
                String::new(),
                vec![("f".into(), "{\"a\": \"}\"}".into())]
            )
        );
        assert!(m.tool_calls[0].id.starts_with("call_"));
    }

    proptest! {
        /// Streamed and one-shot parsing of a reasoning block plus tool calls agree.
        #[test]
        fn chunking_does_not_change_the_message(
            cuts in prop::collection::vec(0usize..400, 0..30),
            nested in any::<bool>(),
        ) {
            let args = if nested { r#"{"q": {"x": [1, {"y": "你好 }"}]}, "z": "\u00e9"}"# } else { "{}" };
            let text = format!(
                "<think>\nplan\n</think>\n\nSure.<tool_call>\n{{\"name\": \"a\", \"arguments\": {args}}}\n</tool_call>\n<tool_call>\n{{\"name\": \"b\", \"arguments\": {{\"k\": 1}}}}\n</tool_call>"
            );
            prop_assert_eq!(summary(&run(&text, &cuts)), summary(&run(&text, &[])));
            prop_assert_eq!(&run(&text, &cuts).tool_calls[0].function.arguments, args);
        }
    }
}
