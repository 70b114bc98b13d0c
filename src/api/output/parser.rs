//! One choice's output: raw text deltas → reasoning, content and tool-call deltas, the one
//! internal output delta every API renders ([`OutputDelta`]).
//!
//! The same object serves streamed and non-streamed responses (a non-streamed message is the
//! concatenation of the deltas), so both always agree. Tool calls carry their index and name but
//! no id: each protocol mints ids in its own style (`call_…`, `toolu_…`).

use crate::parsers::{
    Qwen3ReasoningParser, ToolCallDelta, ToolCallParser, ToolCallSyntax, ToolCallsDelta,
};

#[derive(Debug, Default)]
pub struct OutputDelta {
    pub reasoning: String,
    pub content: String,
    /// A call's first delta has its `name`; later ones carry argument text.
    pub tool_calls: Vec<ToolCallDelta>,
}

impl OutputDelta {
    pub fn is_empty(&self) -> bool {
        self.reasoning.is_empty() && self.content.is_empty() && self.tool_calls.is_empty()
    }
}

pub struct OutputParser {
    reasoning: Option<Qwen3ReasoningParser>,
    tools: Option<ToolCallParser>,
    /// How many calls have started.
    calls: usize,
}

impl OutputParser {
    /// `reasoning`: split `<think>` blocks (`Some(prompt_opened)`); `tools`: parse tool calls
    /// written in this syntax.
    pub fn new(reasoning: Option<bool>, tools: Option<&ToolCallSyntax>) -> Self {
        Self {
            reasoning: reasoning.map(Qwen3ReasoningParser::new),
            tools: tools.map(ToolCallSyntax::parser),
            calls: 0,
        }
    }

    pub fn push(&mut self, text: &str) -> OutputDelta {
        let (reasoning, content) = match &mut self.reasoning {
            Some(p) => {
                let d = p.push(text);
                (d.reasoning, d.content)
            }
            None => (String::new(), text.to_owned()),
        };
        self.route_content(reasoning, &content)
    }

    pub fn finish(&mut self) -> OutputDelta {
        self.end(false)
    }

    /// Ends an output cut by the token limit: no partial tool-call markup becomes content.
    pub fn finish_cut(&mut self) -> OutputDelta {
        self.end(true)
    }

    /// Whether any tool call was found.
    pub fn called_tools(&self) -> bool {
        self.calls > 0
    }

    fn end(&mut self, cut: bool) -> OutputDelta {
        let (reasoning, content) = match &mut self.reasoning {
            Some(p) => {
                let d = p.finish();
                (d.reasoning, d.content)
            }
            None => (String::new(), String::new()),
        };
        let Some(tools) = &mut self.tools else {
            return OutputDelta {
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

    fn route_content(&mut self, reasoning: String, content: &str) -> OutputDelta {
        let Some(tools) = &mut self.tools else {
            return OutputDelta {
                reasoning,
                content: content.to_owned(),
                tool_calls: Vec::new(),
            };
        };
        let d = tools.push(content);
        self.delta_from(reasoning, d)
    }

    fn delta_from(&mut self, reasoning: String, d: ToolCallsDelta) -> OutputDelta {
        self.calls += d.calls.iter().filter(|c| c.name.is_some()).count();
        OutputDelta {
            reasoning,
            content: d.content,
            tool_calls: d.calls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The deltas concatenated: reasoning, content, and `(name, arguments)` per call.
    #[derive(Debug, Default)]
    struct Whole {
        reasoning: String,
        content: String,
        calls: Vec<(String, String)>,
    }

    impl Whole {
        fn add(&mut self, delta: OutputDelta) {
            self.reasoning.push_str(&delta.reasoning);
            self.content.push_str(&delta.content);
            for call in delta.tool_calls {
                if call.index == self.calls.len() {
                    self.calls
                        .push((call.name.unwrap_or_default(), String::new()));
                }
                self.calls[call.index].1.push_str(&call.arguments);
            }
        }
    }

    fn run(text: &str, cuts: &[usize]) -> Whole {
        let mut parser = OutputParser::new(Some(false), Some(&ToolCallSyntax::hermes()));
        let mut message = Whole::default();
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

    fn summary(m: &Whole) -> (String, String, Vec<(String, String)>) {
        (m.reasoning.clone(), m.content.clone(), m.calls.clone())
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
            prop_assert_eq!(&run(&text, &cuts).calls[0].1, args);
        }
    }
}
