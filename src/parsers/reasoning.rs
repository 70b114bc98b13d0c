//! Qwen3's reasoning block: `<think>\n…\n</think>\n\n` before the answer.
//!
//! Two prompt shapes occur. With thinking enabled, Qwen3's template ends the prompt at
//! `<|im_start|>assistant\n` and the model itself writes `<think>`; some templates (and
//! `continue_final_message` prefills) open the block in the prompt, so the output starts inside
//! it. [`prompt_opens_thinking`] tells the two apart and [`Qwen3ReasoningParser::new`] starts in
//! the matching state. With `enable_thinking: false` the template closes an empty block in the
//! prompt and the output is all content.
//!
//! Newlines around the reasoning are dropped (leading and trailing inside the block, leading
//! after `</think>`): Qwen3's template strips them the same way when it renders a past turn's
//! `reasoning_content`, so a conversation sent back renders the tokens the model produced.
//! A block that never closes (cut by `max_tokens`) is all reasoning.

use super::tags::partial_tag_suffix;

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Text released by one step: each part may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasoningDelta {
    pub reasoning: String,
    pub content: String,
}

impl ReasoningDelta {
    pub fn is_empty(&self) -> bool {
        self.reasoning.is_empty() && self.content.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Output has not shown yet whether it opens with `<think>`.
    Start,
    /// Inside the block; `strip_leading` while no reasoning character has been seen.
    Reasoning {
        strip_leading: bool,
    },
    /// Just after `</think>`: newlines are dropped until the answer starts.
    AfterClose,
    Content,
}

/// Splits streamed output into reasoning and content.
#[derive(Debug, Clone)]
pub struct Qwen3ReasoningParser {
    state: State,
    /// Text not yet released: a possible partial tag, or trailing newlines inside the block.
    held: String,
}

/// Whether the prompt leaves a `<think>` block open, i.e. generation starts inside it. Only the
/// last turn (after the final `<|im_start|>`) is looked at, so closed blocks of earlier turns
/// and user text elsewhere do not count.
pub fn prompt_opens_thinking(prompt: &str) -> bool {
    let last_turn = prompt
        .rfind("<|im_start|>")
        .map_or(prompt, |at| &prompt[at..]);
    match (last_turn.rfind(OPEN), last_turn.rfind(CLOSE)) {
        (Some(open), Some(close)) => open > close,
        (Some(_), None) => true,
        _ => false,
    }
}

impl Qwen3ReasoningParser {
    /// `prompt_opened`: the prompt ends inside a `<think>` block (see [`prompt_opens_thinking`]).
    pub fn new(prompt_opened: bool) -> Self {
        let state = if prompt_opened {
            State::Reasoning {
                strip_leading: true,
            }
        } else {
            State::Start
        };
        Self {
            state,
            held: String::new(),
        }
    }

    /// Parses a complete output at once: `(reasoning, content)`.
    pub fn parse(text: &str, prompt_opened: bool) -> ReasoningDelta {
        let mut parser = Self::new(prompt_opened);
        let mut out = parser.push(text);
        let tail = parser.finish();
        out.reasoning.push_str(&tail.reasoning);
        out.content.push_str(&tail.content);
        out
    }

    /// Feeds the next piece of output; returns what can be released now.
    pub fn push(&mut self, delta: &str) -> ReasoningDelta {
        let mut out = ReasoningDelta::default();
        self.held.push_str(delta);
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.held.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(OPEN) {
                        self.held = rest.to_owned();
                        self.state = State::Reasoning {
                            strip_leading: true,
                        };
                        continue;
                    }
                    if OPEN.starts_with(trimmed) {
                        return out; // still possibly `<think>` (or only whitespace so far)
                    }
                    self.state = State::Content;
                }
                State::Reasoning { strip_leading } => {
                    if strip_leading {
                        let rest = self.held.trim_start_matches('\n');
                        if rest.is_empty() {
                            self.held.clear();
                            return out;
                        }
                        self.held = rest.to_owned();
                        self.state = State::Reasoning {
                            strip_leading: false,
                        };
                    }
                    if let Some(at) = self.held.find(CLOSE) {
                        out.reasoning
                            .push_str(self.held[..at].trim_end_matches('\n'));
                        self.held.drain(..at + CLOSE.len());
                        self.state = State::AfterClose;
                        continue;
                    }
                    let keep = held_back_in_block(&self.held);
                    let release = self.held.len() - keep;
                    out.reasoning.push_str(&self.held[..release]);
                    self.held.drain(..release);
                    return out;
                }
                State::AfterClose => {
                    let rest = self.held.trim_start_matches('\n');
                    if rest.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = rest.to_owned();
                    self.state = State::Content;
                }
                State::Content => {
                    out.content.push_str(&self.held);
                    self.held.clear();
                    return out;
                }
            }
        }
    }

    /// Ends the output: releases whatever was held back.
    pub fn finish(&mut self) -> ReasoningDelta {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Start | State::Content => ReasoningDelta {
                reasoning: String::new(),
                content: held,
            },
            State::Reasoning { .. } => ReasoningDelta {
                reasoning: held.trim_end_matches('\n').to_owned(),
                content: String::new(),
            },
            State::AfterClose => ReasoningDelta::default(),
        }
    }
}

/// Bytes at the end of reasoning text to hold: newlines (they are dropped if `</think>` follows)
/// followed by a partial `</think>`.
fn held_back_in_block(text: &str) -> usize {
    let partial = partial_tag_suffix(text, CLOSE);
    let before = &text[..text.len() - partial];
    let newlines = before.len() - before.trim_end_matches('\n').len();
    partial + newlines
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream(text: &str, cuts: &[usize], opened: bool) -> ReasoningDelta {
        let mut p = Qwen3ReasoningParser::new(opened);
        let mut out = ReasoningDelta::default();
        let mut last = 0;
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|&c| c % (text.len() + 1))
            .filter(|&c| text.is_char_boundary(c))
            .collect();
        points.sort_unstable();
        points.push(text.len());
        for c in points {
            if c < last {
                continue;
            }
            let d = p.push(&text[last..c]);
            out.reasoning.push_str(&d.reasoning);
            out.content.push_str(&d.content);
            last = c;
        }
        let d = p.finish();
        out.reasoning.push_str(&d.reasoning);
        out.content.push_str(&d.content);
        out
    }

    fn parts(r: &str, c: &str) -> ReasoningDelta {
        ReasoningDelta {
            reasoning: r.into(),
            content: c.into(),
        }
    }

    #[test]
    fn think_block_in_output() {
        let text = "<think>\nLet me think.\n\nDone.\n</think>\n\nHello!";
        assert_eq!(
            Qwen3ReasoningParser::parse(text, false),
            parts("Let me think.\n\nDone.", "Hello!")
        );
    }

    #[test]
    fn block_opened_by_the_prompt() {
        let text = "\nreasoning here\n</think>\n\nAnswer";
        assert_eq!(
            Qwen3ReasoningParser::parse(text, true),
            parts("reasoning here", "Answer")
        );
    }

    #[test]
    fn no_block_is_all_content() {
        assert_eq!(
            Qwen3ReasoningParser::parse("Hi <think> there", false),
            parts("", "Hi <think> there")
        );
        assert_eq!(
            Qwen3ReasoningParser::parse("<thi", false),
            parts("", "<thi")
        );
        assert_eq!(Qwen3ReasoningParser::parse("", false), parts("", ""));
    }

    #[test]
    fn unclosed_block_is_all_reasoning() {
        assert_eq!(
            Qwen3ReasoningParser::parse("<think>\nstill going\n</thi", false),
            parts("still going\n</thi", "")
        );
    }

    #[test]
    fn streaming_holds_partial_close_tag() {
        let mut p = Qwen3ReasoningParser::new(false);
        assert_eq!(p.push("<thi"), parts("", ""));
        assert_eq!(p.push("nk>\nab"), parts("ab", ""));
        assert_eq!(p.push("c\n</th"), parts("c", ""));
        assert_eq!(p.push("ink>\n"), parts("", ""));
        assert_eq!(p.push("\nX"), parts("", "X"));
        assert_eq!(p.finish(), parts("", ""));
    }

    #[test]
    fn prompt_detection() {
        assert!(!prompt_opens_thinking(
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        ));
        assert!(prompt_opens_thinking("<|im_start|>assistant\n<think>\n"));
        assert!(!prompt_opens_thinking(
            "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ));
        assert!(!prompt_opens_thinking(
            "<|im_start|>user\n<think><|im_end|>\n<|im_start|>assistant\n"
        ));
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_one_shot_result(
            pieces in prop::collection::vec(prop::sample::select(vec![
                "<think>", "</think>", "<th", "ink>", "</", "\n", "\n\n", "a", "é", "你好", " ", ">",
            ]), 0..24),
            cuts in prop::collection::vec(0usize..200, 0..12),
            opened in any::<bool>(),
        ) {
            let text: String = pieces.concat();
            let whole = Qwen3ReasoningParser::parse(&text, opened);
            prop_assert_eq!(stream(&text, &cuts, opened), whole.clone());
            let every_char: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            prop_assert_eq!(stream(&text, &every_char, opened), whole);
        }
    }
}
