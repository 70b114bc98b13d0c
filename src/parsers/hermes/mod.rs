//! Hermes-style tool calls, as Qwen3 writes them:
//!
//! ```text
//! optional text<tool_call>
//! {"name": "get_weather", "arguments": {"city": "Paris"}}
//! </tool_call>
//! <tool_call>
//! ...
//! </tool_call>
//! ```
//!
//! Streaming follows OpenAI: a call's first delta carries its index and name (the API layer adds
//! `id` and `type`), later deltas carry argument fragments. The `arguments` string is the raw
//! text of the JSON value the model wrote after `"arguments":`, delimited by a small JSON scanner
//! (string- and escape-aware bracket depth), so fragments are released as soon as they are
//! generated and nothing is re-serialised: the concatenated fragments are byte-identical to the
//! non-streamed string for every chunking (nested objects, braces inside strings, unicode,
//! several calls each with its own index). These are the failure modes clients report against
//! other servers; the property tests below feed random chunkings.
//!
//! Output that does not fit the fast path (keys in another order, `arguments` given as a string
//! or scalar) is buffered until `</tool_call>` and parsed whole; a block that is not a valid call
//! is returned as content, tags included. Text between and after calls that is only whitespace is
//! dropped; text before the first call is content.

use super::tags::partial_tag_suffix;
use super::tool_calls::{ToolCallDelta, ToolCallsDelta};
use syntax::{Header, Scan, parse_call, parse_header};

mod syntax;
#[cfg(test)]
mod tests;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for `{"name": "...", "arguments":`.
    Header,
    /// Scanning the arguments value.
    Args(Scan),
    /// Arguments done; skipping to `</tool_call>`.
    AfterArgs,
    /// Off the fast path: buffer to `</tool_call>` and parse the block whole.
    Whole,
}

#[derive(Debug, Clone)]
enum State {
    Text,
    Call {
        stage: Stage,
        /// Whether the call's name has been released (its index is `calls - 1`).
        begun: bool,
    },
}

/// Incremental parser of Hermes tool calls in the content stream.
#[derive(Debug, Clone)]
pub struct HermesToolParser {
    state: State,
    /// In `Text`: unreleased text. In `Call`: the block after `<tool_call>` so far.
    buf: String,
    /// In `Call`: bytes of `buf` the stage has consumed.
    pos: usize,
    /// Calls begun so far (the next call's index).
    calls: usize,
    /// Non-whitespace content was released since the last call ended.
    text_since_call: bool,
}

impl Default for HermesToolParser {
    fn default() -> Self {
        Self::new()
    }
}

impl HermesToolParser {
    pub fn new() -> Self {
        Self {
            state: State::Text,
            buf: String::new(),
            pos: 0,
            calls: 0,
            text_since_call: false,
        }
    }

    /// Parses a complete output at once.
    pub fn parse(text: &str) -> ToolCallsDelta {
        let mut parser = Self::new();
        let mut out = parser.push(text);
        out.extend(parser.finish());
        out
    }

    /// Number of calls begun so far.
    pub fn num_calls(&self) -> usize {
        self.calls
    }

    pub fn push(&mut self, delta: &str) -> ToolCallsDelta {
        let mut out = ToolCallsDelta::default();
        self.buf.push_str(delta);
        while self.step(&mut out) {}
        out
    }

    /// Ends the output, releasing held text; an unterminated block that never became a call is
    /// content, a call cut short keeps the arguments released so far.
    pub fn finish(&mut self) -> ToolCallsDelta {
        let mut out = ToolCallsDelta::default();
        let buf = std::mem::take(&mut self.buf);
        match self.state {
            State::Text => self.release_text(&buf, &mut out),
            State::Call { stage, begun } => match stage {
                Stage::Header => {
                    out.content.push_str(OPEN);
                    out.content.push_str(&buf);
                }
                Stage::Whole => self.close_whole(&buf, begun, &mut out),
                Stage::Args(_) | Stage::AfterArgs => {}
            },
        }
        self.state = State::Text;
        out
    }

    /// Ends an output cut by the token limit. Nothing of an unfinished call's markup becomes
    /// content: a block whose name was not out yet is dropped, as is a partial `<tool_call>`
    /// tag at the very end; a call whose name was released keeps the arguments it has.
    pub fn finish_cut(&mut self) -> ToolCallsDelta {
        let mut out = ToolCallsDelta::default();
        let buf = std::mem::take(&mut self.buf);
        match self.state {
            State::Text => {
                let keep = partial_tag_suffix(&buf, OPEN);
                self.release_text(&buf[..buf.len() - keep], &mut out);
            }
            State::Call {
                stage: Stage::Whole,
                begun: true,
            } => self.close_whole(&buf, true, &mut out),
            State::Call { .. } => {}
        }
        self.state = State::Text;
        out
    }

    /// Advances one state; false when more input is needed.
    fn step(&mut self, out: &mut ToolCallsDelta) -> bool {
        match self.state.clone() {
            State::Text => {
                if let Some(at) = self.buf.find(OPEN) {
                    let before = self.buf[..at].to_owned();
                    self.release_text(&before, out);
                    self.buf.drain(..at + OPEN.len());
                    self.pos = 0;
                    self.state = State::Call {
                        stage: Stage::Header,
                        begun: false,
                    };
                    return true;
                }
                let keep = partial_tag_suffix(&self.buf, OPEN);
                let release = self.buf.len() - keep;
                if self.drops_whitespace() && self.buf[..release].trim().is_empty() {
                    return false; // hold: dropped if only whitespace comes before the next call
                }
                let text = self.buf[..release].to_owned();
                self.release_text(&text, out);
                self.buf.drain(..release);
                false
            }
            State::Call { stage, begun } => match stage {
                Stage::Header => match parse_header(&self.buf) {
                    Header::Complete { name, end } => {
                        out.calls.push(ToolCallDelta {
                            index: self.calls,
                            name: Some(name),
                            arguments: String::new(),
                        });
                        self.calls += 1;
                        self.pos = end;
                        self.set_stage(Stage::Args(Scan::default()), true);
                        true
                    }
                    Header::Incomplete if !self.buf.contains(CLOSE) => false,
                    Header::Incomplete | Header::Mismatch => {
                        self.set_stage(Stage::Whole, begun);
                        true
                    }
                },
                Stage::Args(mut scan) => {
                    let index = self.calls - 1;
                    let start = self.pos;
                    let mut fragment_start = None;
                    let mut done = false;
                    let mut off_path = false;
                    for (i, c) in self.buf[start..].char_indices() {
                        let at = start + i;
                        if !scan.started {
                            if c.is_whitespace() {
                                self.pos = at + c.len_utf8();
                                continue;
                            }
                            if c != '{' && c != '[' {
                                off_path = true;
                                break;
                            }
                            scan.started = true;
                            fragment_start = Some(at);
                        }
                        self.pos = at + c.len_utf8();
                        if scan.feed(c) {
                            done = true;
                            break;
                        }
                    }
                    if let Some(from) = fragment_start.or(scan.started.then_some(start)) {
                        let fragment = self.buf[from..self.pos].to_owned();
                        out.arguments(index, &fragment);
                    }
                    let next = if off_path {
                        Stage::Whole
                    } else if done {
                        Stage::AfterArgs
                    } else {
                        self.set_stage(Stage::Args(scan), true);
                        return false;
                    };
                    self.set_stage(next, true);
                    true
                }
                Stage::AfterArgs => match self.buf[self.pos..].find(CLOSE) {
                    Some(at) => {
                        let end = self.pos + at + CLOSE.len();
                        self.end_call(end);
                        true
                    }
                    None => false,
                },
                Stage::Whole => match self.buf[self.pos..].find(CLOSE) {
                    Some(at) => {
                        let body = self.buf[..self.pos + at].to_owned();
                        let end = self.pos + at + CLOSE.len();
                        self.close_whole(&body, begun, out);
                        self.end_call(end);
                        true
                    }
                    None => false,
                },
            },
        }
    }

    fn set_stage(&mut self, stage: Stage, begun: bool) {
        self.state = State::Call { stage, begun };
    }

    /// Back to text after a block that ended at byte `end` of the buffer.
    fn end_call(&mut self, end: usize) {
        self.buf.drain(..end);
        self.pos = 0;
        self.state = State::Text;
        self.text_since_call = false;
    }

    fn drops_whitespace(&self) -> bool {
        self.calls > 0 && !self.text_since_call
    }

    fn release_text(&mut self, text: &str, out: &mut ToolCallsDelta) {
        if self.drops_whitespace() && text.trim().is_empty() {
            return;
        }
        if !text.trim().is_empty() {
            self.text_since_call = true;
        }
        out.content.push_str(text);
    }

    /// A block parsed whole (`body` is the text between the tags). If its name was already
    /// released only the arguments are added.
    fn close_whole(&mut self, body: &str, begun: bool, out: &mut ToolCallsDelta) {
        let parsed = parse_call(body.trim());
        if begun {
            let index = self.calls - 1;
            let arguments = match parsed {
                Some((_, arguments)) => arguments,
                None => {
                    let raw = body[self.pos.min(body.len())..].trim();
                    raw.strip_suffix('}').unwrap_or(raw).trim_end().to_owned()
                }
            };
            out.arguments(index, &arguments);
            return;
        }
        match parsed {
            Some((name, arguments)) => {
                let index = self.calls;
                self.calls += 1;
                out.calls.push(ToolCallDelta {
                    index,
                    name: Some(name),
                    arguments: String::new(),
                });
                out.arguments(index, &arguments);
            }
            None => {
                let text = format!("{OPEN}{body}{CLOSE}");
                self.release_text(&text, out);
            }
        }
    }
}
