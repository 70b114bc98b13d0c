//! What the tool-call parsers share: the deltas they release, the formats a model may write
//! calls in, and one parser type that holds whichever format a request's output is read as.
//!
//! Every format parser has the same surface (`push` per text delta, `finish` at the end,
//! `finish_cut` at the token limit, all returning [`ToolCallsDelta`]), so the output layer
//! holds a [`ToolCallParser`] and never looks at the format.

use std::sync::Arc;

use super::hermes::HermesToolParser;
use super::qwen3_coder::{Qwen3CoderToolParser, ToolSchemas};

/// Part of one tool call: `name` on its first delta, then argument text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallDelta {
    pub index: usize,
    pub name: Option<String>,
    pub arguments: String,
}

/// What one step of a tool-call parser releases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallsDelta {
    pub content: String,
    pub calls: Vec<ToolCallDelta>,
}

impl ToolCallsDelta {
    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && self.calls.is_empty()
    }

    /// Appends `other`, merging argument fragments of the same call.
    pub fn extend(&mut self, other: ToolCallsDelta) {
        self.content.push_str(&other.content);
        for call in other.calls {
            self.push_call(call);
        }
    }

    pub(super) fn push_call(&mut self, call: ToolCallDelta) {
        match self.calls.last_mut() {
            Some(last)
                if last.index == call.index && last.name.is_none() && call.name.is_none() =>
            {
                last.arguments.push_str(&call.arguments)
            }
            _ => self.calls.push(call),
        }
    }

    /// Adds argument text of call `index` (nothing when empty).
    pub(super) fn arguments(&mut self, index: usize, text: &str) {
        if !text.is_empty() {
            self.push_call(ToolCallDelta {
                index,
                name: None,
                arguments: text.to_owned(),
            });
        }
    }
}

/// How a model writes its tool calls (vLLM's `--tool-call-parser` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolCallFormat {
    /// `<tool_call>{"name": …, "arguments": {…}}</tool_call>`: Qwen3 and most Qwen models.
    #[default]
    Hermes,
    /// `<tool_call><function=…><parameter=…>…</parameter></function></tool_call>`:
    /// Qwen3-Coder.
    Qwen3Coder,
}

impl ToolCallFormat {
    /// The format of a `--tool-call-parser` name (`None`: not a format name).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "hermes" => Some(Self::Hermes),
            // vLLM's second parser of the same markup (streaming-oriented) goes by this name.
            "qwen3_coder" | "qwen3_xml" => Some(Self::Qwen3Coder),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Hermes => "hermes",
            Self::Qwen3Coder => "qwen3_coder",
        }
    }

    /// The format a chat template teaches its model: Qwen3-Coder's template shows calls as
    /// `<function=…>` with `<parameter=…>` children, every other Qwen template as hermes JSON.
    pub fn of_template<'a>(sources: impl IntoIterator<Item = &'a str>) -> Self {
        let coder = sources
            .into_iter()
            .any(|s| s.contains("<function=") && s.contains("<parameter="));
        if coder {
            Self::Qwen3Coder
        } else {
            Self::Hermes
        }
    }
}

/// How one request's output is read for tool calls: the format and, for formats whose
/// arguments are typed by the tools' schemas, those schemas.
#[derive(Debug, Clone, Default)]
pub struct ToolCallSyntax {
    pub format: ToolCallFormat,
    pub schemas: Arc<ToolSchemas>,
}

impl ToolCallSyntax {
    pub fn hermes() -> Self {
        Self::default()
    }

    /// A fresh parser for one choice's output.
    pub fn parser(&self) -> ToolCallParser {
        match self.format {
            ToolCallFormat::Hermes => ToolCallParser::Hermes(HermesToolParser::new()),
            ToolCallFormat::Qwen3Coder => {
                ToolCallParser::Qwen3Coder(Qwen3CoderToolParser::new(self.schemas.clone()))
            }
        }
    }
}

/// An incremental tool-call parser of either format.
#[derive(Debug, Clone)]
pub enum ToolCallParser {
    Hermes(HermesToolParser),
    Qwen3Coder(Qwen3CoderToolParser),
}

impl ToolCallParser {
    pub fn push(&mut self, delta: &str) -> ToolCallsDelta {
        match self {
            Self::Hermes(p) => p.push(delta),
            Self::Qwen3Coder(p) => p.push(delta),
        }
    }

    pub fn finish(&mut self) -> ToolCallsDelta {
        match self {
            Self::Hermes(p) => p.finish(),
            Self::Qwen3Coder(p) => p.finish(),
        }
    }

    pub fn finish_cut(&mut self) -> ToolCallsDelta {
        match self {
            Self::Hermes(p) => p.finish_cut(),
            Self::Qwen3Coder(p) => p.finish_cut(),
        }
    }

    pub fn num_calls(&self) -> usize {
        match self {
            Self::Hermes(p) => p.num_calls(),
            Self::Qwen3Coder(p) => p.num_calls(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_and_template_detection() {
        assert_eq!(
            ToolCallFormat::from_name("hermes"),
            Some(ToolCallFormat::Hermes)
        );
        assert_eq!(
            ToolCallFormat::from_name("qwen3_coder"),
            Some(ToolCallFormat::Qwen3Coder)
        );
        assert_eq!(
            ToolCallFormat::from_name("qwen3_xml"),
            Some(ToolCallFormat::Qwen3Coder)
        );
        assert_eq!(ToolCallFormat::from_name("none"), None);
        let coder =
            "{{- '<tool_call>\\n<function=' + name + '>\\n' }}{{- '<parameter=' + k + '>\\n' }}";
        assert_eq!(
            ToolCallFormat::of_template([coder]),
            ToolCallFormat::Qwen3Coder
        );
        let hermes = "<tool_call>\\n{\"name\": {{ name | tojson }}, \"arguments\": …}";
        assert_eq!(
            ToolCallFormat::of_template([hermes]),
            ToolCallFormat::Hermes
        );
        // Both markers are needed: one alone is some other format.
        assert_eq!(
            ToolCallFormat::of_template(["<function=x>"]),
            ToolCallFormat::Hermes
        );
        assert_eq!(
            ToolCallFormat::of_template([hermes, coder]),
            ToolCallFormat::Qwen3Coder
        );
    }
}
