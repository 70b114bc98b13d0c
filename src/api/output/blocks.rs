//! One assistant turn as an ordered list of blocks — reasoning, text, tool calls — the shape
//! the Responses API (output items) and the Anthropic Messages API (content blocks) share.
//!
//! [`BlockTracker`] feeds raw text deltas through the same [`OutputParser`] chat completions
//! use, and turns what it releases into `Start` / `Delta` / `Stop` events: a block opens when
//! output of a new kind begins and closes when another kind starts or the turn ends. The
//! tracker also keeps every block it streamed, so a non-streamed response is built from exactly
//! the blocks a streamed one would have sent.
//!
//! Text that is only whitespace is held until something visible follows; a text block that
//! would hold nothing but whitespace (the newlines between reasoning and a tool call) never
//! opens. Within one parser step the order is reasoning, then text, then tool calls, which is
//! the order Qwen3 writes them in.

use super::parser::{OutputDelta, OutputParser};
use crate::parsers::{ToolCallDelta, ToolCallSyntax};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockKind {
    Reasoning,
    Text,
    /// A tool call to the function `name` (each protocol gives it an id of its own style).
    Call {
        name: String,
    },
}

/// How a closed block ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStatus {
    Completed,
    /// Cut by the token limit before the block ended.
    Incomplete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockEvent {
    /// Block `index` (its position in the turn) begins.
    Start {
        index: usize,
        kind: BlockKind,
    },
    /// More text of block `index`: reasoning, content or argument JSON.
    Delta {
        index: usize,
        text: String,
    },
    Stop {
        index: usize,
        status: BlockStatus,
    },
}

/// A finished (or, mid-stream, a growing) block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    /// Reasoning text, content text, or the call's arguments JSON.
    pub text: String,
    pub status: BlockStatus,
}

pub struct BlockTracker {
    parser: OutputParser,
    blocks: Vec<Block>,
    /// Whether the last block is still open.
    open: bool,
    /// Whitespace-only content not yet assigned to a block.
    held_space: String,
    /// Tool-call index (the parser's) → block index.
    call_blocks: Vec<usize>,
    /// Open an empty text block when the turn produced nothing at all.
    never_empty: bool,
}

impl BlockTracker {
    /// `reasoning`: parse `<think>` (`Some(prompt_opened)`); `tools`: parse tool calls written
    /// in this syntax;
    /// `never_empty`: a turn without output still gets one (empty) text block.
    pub fn new(reasoning: Option<bool>, tools: Option<&ToolCallSyntax>, never_empty: bool) -> Self {
        Self {
            parser: OutputParser::new(reasoning, tools),
            blocks: Vec::new(),
            open: false,
            held_space: String::new(),
            call_blocks: Vec::new(),
            never_empty,
        }
    }

    pub fn push(&mut self, text: &str) -> Vec<BlockEvent> {
        let delta = self.parser.push(text);
        let mut events = Vec::new();
        self.route(delta, &mut events);
        events
    }

    /// Ends the turn; `cut`: it was ended by the token limit, so the open block is incomplete.
    pub fn finish(&mut self, cut: bool) -> Vec<BlockEvent> {
        let delta = if cut {
            self.parser.finish_cut()
        } else {
            self.parser.finish()
        };
        let mut events = Vec::new();
        self.route(delta, &mut events);
        let status = if cut {
            BlockStatus::Incomplete
        } else {
            BlockStatus::Completed
        };
        self.close(status, &mut events);
        if self.blocks.is_empty() && self.never_empty {
            self.start(BlockKind::Text, &mut events);
            self.close(status, &mut events);
        }
        events
    }

    /// The blocks so far, in order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    pub fn into_blocks(self) -> Vec<Block> {
        self.blocks
    }

    pub fn called_tools(&self) -> bool {
        self.parser.called_tools()
    }

    fn route(&mut self, delta: OutputDelta, events: &mut Vec<BlockEvent>) {
        if !delta.reasoning.is_empty() {
            self.append(BlockKind::Reasoning, &delta.reasoning, events);
        }
        if !delta.content.is_empty() {
            self.content(&delta.content, events);
        }
        for call in delta.tool_calls {
            self.call(call, events);
        }
    }

    fn content(&mut self, text: &str, events: &mut Vec<BlockEvent>) {
        if self.current_kind() == Some(&BlockKind::Text) {
            self.append(BlockKind::Text, text, events);
            return;
        }
        self.held_space.push_str(text);
        if self.held_space.trim().is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.held_space);
        self.append(BlockKind::Text, &text, events);
    }

    fn call(&mut self, chunk: ToolCallDelta, events: &mut Vec<BlockEvent>) {
        if let Some(name) = chunk.name {
            self.held_space.clear();
            self.close(BlockStatus::Completed, events);
            let index = self.start(BlockKind::Call { name }, events);
            if self.call_blocks.len() <= chunk.index {
                self.call_blocks.resize(chunk.index + 1, index);
            }
            self.call_blocks[chunk.index] = index;
        }
        if chunk.arguments.is_empty() {
            return;
        }
        // Argument pieces only ever follow their own call's start, which is the open block.
        let Some(&index) = self.call_blocks.get(chunk.index) else {
            return;
        };
        if self.open && index + 1 == self.blocks.len() {
            self.blocks[index].text.push_str(&chunk.arguments);
            events.push(BlockEvent::Delta {
                index,
                text: chunk.arguments,
            });
        }
    }

    /// Appends text to the open block if it has `kind`, else opens a new one.
    fn append(&mut self, kind: BlockKind, text: &str, events: &mut Vec<BlockEvent>) {
        if self.current_kind() != Some(&kind) {
            if kind != BlockKind::Text {
                self.held_space.clear();
            }
            self.close(BlockStatus::Completed, events);
            self.start(kind, events);
        }
        let index = self.blocks.len() - 1;
        self.blocks[index].text.push_str(text);
        events.push(BlockEvent::Delta {
            index,
            text: text.to_owned(),
        });
    }

    fn current_kind(&self) -> Option<&BlockKind> {
        self.open
            .then(|| self.blocks.last().map(|b| &b.kind))
            .flatten()
    }

    fn start(&mut self, kind: BlockKind, events: &mut Vec<BlockEvent>) -> usize {
        let index = self.blocks.len();
        self.blocks.push(Block {
            kind: kind.clone(),
            text: String::new(),
            status: BlockStatus::Completed,
        });
        self.open = true;
        events.push(BlockEvent::Start { index, kind });
        index
    }

    fn close(&mut self, status: BlockStatus, events: &mut Vec<BlockEvent>) {
        if !self.open {
            return;
        }
        self.open = false;
        let index = self.blocks.len() - 1;
        self.blocks[index].status = status;
        events.push(BlockEvent::Stop { index, status });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str], cut: bool) -> (Vec<BlockEvent>, Vec<Block>) {
        let mut t = BlockTracker::new(Some(false), Some(&ToolCallSyntax::hermes()), true);
        let mut events = Vec::new();
        for c in chunks {
            events.extend(t.push(c));
        }
        events.extend(t.finish(cut));
        (events, t.into_blocks())
    }

    /// The blocks rebuilt from the events alone.
    fn replay(events: &[BlockEvent]) -> Vec<(BlockKind, String, BlockStatus)> {
        let mut out: Vec<(BlockKind, String, Option<BlockStatus>)> = Vec::new();
        for e in events {
            match e {
                BlockEvent::Start { index, kind } => {
                    assert_eq!(*index, out.len(), "blocks start in order");
                    out.push((kind.clone(), String::new(), None));
                }
                BlockEvent::Delta { index, text } => {
                    assert_eq!(*index + 1, out.len(), "deltas go to the open block");
                    assert!(out[*index].2.is_none(), "no delta after stop");
                    out[*index].1.push_str(text);
                }
                BlockEvent::Stop { index, status } => {
                    assert!(out[*index].2.is_none(), "one stop per block");
                    out[*index].2 = Some(*status);
                }
            }
        }
        out.into_iter()
            .map(|(k, t, s)| (k, t, s.expect("every block stops")))
            .collect()
    }

    fn summary(blocks: &[Block]) -> Vec<(String, String)> {
        blocks
            .iter()
            .map(|b| {
                let kind = match &b.kind {
                    BlockKind::Reasoning => "reasoning".to_owned(),
                    BlockKind::Text => "text".to_owned(),
                    BlockKind::Call { name, .. } => format!("call:{name}"),
                };
                (kind, b.text.clone())
            })
            .collect()
    }

    #[test]
    fn reasoning_text_and_calls_become_ordered_blocks() {
        let text = "<think>\nplan\n</think>\n\nI will look.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>";
        let whole = run(&[text], false);
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let streamed = run(&refs, false);
        for (events, blocks) in [&whole, &streamed] {
            assert_eq!(
                summary(blocks),
                [
                    ("reasoning".into(), "plan".into()),
                    ("text".into(), "I will look.\n".into()),
                    ("call:a".into(), "{\"x\": 1}".into()),
                    ("call:b".into(), "{}".into()),
                ]
            );
            let replayed = replay(events);
            let rebuilt: Vec<Block> = replayed
                .into_iter()
                .map(|(kind, text, status)| Block { kind, text, status })
                .collect();
            assert_eq!(&rebuilt, blocks, "events and kept blocks agree");
        }
    }

    #[test]
    fn whitespace_between_reasoning_and_a_call_opens_no_text_block() {
        let (_, blocks) = run(
            &[
                "<think>x</think>",
                "\n\n  ",
                "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
            ],
            false,
        );
        assert_eq!(
            summary(&blocks),
            [
                ("reasoning".into(), "x".into()),
                ("call:f".into(), "{}".into())
            ]
        );
    }

    #[test]
    fn a_cut_marks_the_open_block_incomplete_and_empty_turns_get_a_text_block() {
        let (_, blocks) = run(&["hello wor"], true);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].status, BlockStatus::Incomplete);
        let (events, blocks) = run(&[], false);
        assert_eq!(summary(&blocks), [("text".into(), String::new())]);
        assert_eq!(events.len(), 2);
        let mut t = BlockTracker::new(None, None, false);
        assert!(t.finish(false).is_empty());
    }
}
