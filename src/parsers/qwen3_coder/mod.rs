//! Qwen3-Coder's tool calls (vLLM's `qwen3_coder` parser), as its chat template teaches them:
//!
//! ```text
//! optional text<tool_call>
//! <function=get_weather>
//! <parameter=city>
//! Beijing
//! </parameter>
//! <parameter=days>
//! 3
//! </parameter>
//! </function>
//! </tool_call>
//! ```
//!
//! Each function becomes one call whose `arguments` is a JSON object written here: `{`, then
//! `"name": value` per parameter (`", "` between), then `}`. A value is the text between the
//! parameter's tags less one leading and one trailing newline, typed by the tool's schema
//! ([`values`]). Streaming follows the hermes parser: a call's first delta carries its index
//! and name, later deltas argument text; a string value is released as it is written (escaped
//! piece by piece), a typed one when it ends, since `3` and `"3"` differ only once the value is
//! whole. The concatenated fragments are the non-streamed `arguments` for every chunking.
//!
//! Tolerance, as vLLM reads the format: a value also ends at the next `<parameter=`, at
//! `</function>` or at `</tool_call>` when its end tag is missing; text between tags inside a
//! block is ignored; a block may hold several functions. A block that does not start with
//! `<function=` is content, tags included. Text outside blocks is content, except whitespace
//! between and after calls. At the end of the output an open call is closed with what it has
//! (its arguments stay a JSON object); at the token limit nothing of an unfinished block
//! becomes content.

use std::sync::Arc;

use serde_json::Value;

use super::tags::partial_tag_suffix;
use super::tool_calls::{ToolCallDelta, ToolCallsDelta};
use markup::{
    CLOSE, FUNCTION, FUNCTION_END, Header, OPEN, PARAMETER, PARAMETER_END, first_of, header,
    partial_suffix,
};
use values::{ParamType, convert, declared_types, escape_fragment, is_plain_string, to_json_text};

pub use values::{ToolSchemas, is_text_valued};

mod markup;
mod values;

#[cfg(test)]
mod tests;

/// What ends a parameter's value: its end tag or, when the model leaves that out, the next
/// parameter, the function's end or the block's end.
const VALUE_ENDS: [&str; 4] = [PARAMETER_END, PARAMETER, FUNCTION_END, CLOSE];

/// The parameter whose value is being read.
#[derive(Debug, Clone)]
struct Param {
    name: String,
    types: Vec<ParamType>,
    /// A plain string, released as it is written; otherwise converted when it ends.
    streamed: bool,
    /// The value's first character has been seen (its leading newline is dropped).
    started: bool,
    /// Bytes of a held value already searched for its end: a long typed value arriving in
    /// small deltas is scanned once, not once per delta.
    searched: usize,
}

#[derive(Debug, Clone)]
enum State {
    Text,
    /// In a block, before its first function.
    BlockStart,
    /// A block that is not a call: held to `</tool_call>`, then content.
    NotCall,
    /// In a block, after a function ended.
    BlockRest,
    /// In function `name`, between parameters; `params` were written.
    Function {
        name: String,
        params: usize,
    },
    /// In a parameter's value.
    Value {
        function: String,
        params: usize,
        param: Param,
    },
}

/// Incremental parser of Qwen3-Coder tool calls in the content stream.
#[derive(Debug, Clone)]
pub struct Qwen3CoderToolParser {
    schemas: Arc<ToolSchemas>,
    state: State,
    /// Unconsumed text.
    buf: String,
    /// Calls begun so far (the next call's index).
    calls: usize,
    /// Non-whitespace content was released since the last call ended.
    text_since_call: bool,
}

impl Qwen3CoderToolParser {
    /// A parser typing arguments by `schemas` (the request's tools).
    pub fn new(schemas: Arc<ToolSchemas>) -> Self {
        Self {
            schemas,
            state: State::Text,
            buf: String::new(),
            calls: 0,
            text_since_call: false,
        }
    }

    /// Parses a complete output at once.
    pub fn parse(text: &str, schemas: Arc<ToolSchemas>) -> ToolCallsDelta {
        let mut parser = Self::new(schemas);
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

    /// Ends the output: text held back is released, an open call is closed with the
    /// parameters it has, a block that never named a function is content.
    pub fn finish(&mut self) -> ToolCallsDelta {
        self.end(false)
    }

    /// Ends an output cut by the token limit. Nothing of an unfinished block's markup becomes
    /// content: a block that named no function yet is dropped, as is a partial tag at the very
    /// end; a call that was begun is closed with the parameters it has.
    pub fn finish_cut(&mut self) -> ToolCallsDelta {
        self.end(true)
    }

    fn end(&mut self, cut: bool) -> ToolCallsDelta {
        let mut out = ToolCallsDelta::default();
        let buf = std::mem::take(&mut self.buf);
        match std::mem::replace(&mut self.state, State::Text) {
            State::Text => {
                let keep = if cut {
                    partial_tag_suffix(&buf, OPEN)
                } else {
                    0
                };
                self.release_text(&buf[..buf.len() - keep], &mut out);
            }
            State::BlockStart | State::NotCall => {
                if !cut {
                    self.release_text(&format!("{OPEN}{buf}"), &mut out);
                }
            }
            State::BlockRest => {}
            State::Function { .. } => self.arguments("}", &mut out),
            State::Value { params, param, .. } => {
                let mut value = buf.as_str();
                if !param.started {
                    value = value.strip_prefix('\n').unwrap_or(value);
                }
                if cut {
                    value = &value[..value.len() - partial_suffix(value, &VALUE_ENDS)];
                }
                let value = value.strip_suffix('\n').unwrap_or(value);
                self.end_param(params, &param, value, &mut out);
                self.arguments("}", &mut out);
            }
        }
        out
    }

    /// Advances one state; false when more input is needed.
    fn step(&mut self, out: &mut ToolCallsDelta) -> bool {
        match self.state.clone() {
            State::Text => self.text(out),
            State::BlockStart => {
                let lead = self.buf.len() - self.buf.trim_start().len();
                match header(&self.buf[lead..], FUNCTION) {
                    Header::Complete(name, len) => {
                        self.buf.drain(..lead + len);
                        self.begin_call(name, out);
                        true
                    }
                    Header::Incomplete => false,
                    Header::Not => {
                        self.state = State::NotCall;
                        true
                    }
                }
            }
            State::NotCall => match self.buf.find(CLOSE) {
                Some(at) => {
                    let block = format!("{OPEN}{}{CLOSE}", &self.buf[..at]);
                    self.release_text(&block, out);
                    self.buf.drain(..at + CLOSE.len());
                    self.end_block();
                    true
                }
                None => false,
            },
            State::BlockRest => match self.next_tag(&[FUNCTION, CLOSE]) {
                Some(CLOSE) => {
                    self.buf.drain(..CLOSE.len());
                    self.end_block();
                    true
                }
                Some(_) => match header(&self.buf, FUNCTION) {
                    Header::Complete(name, len) => {
                        self.buf.drain(..len);
                        self.begin_call(name, out);
                        true
                    }
                    Header::Incomplete => false,
                    Header::Not => {
                        self.buf.drain(..FUNCTION.len());
                        true
                    }
                },
                None => false,
            },
            State::Function { name, params } => {
                match self.next_tag(&[PARAMETER, FUNCTION_END, CLOSE]) {
                    Some(PARAMETER) => match header(&self.buf, PARAMETER) {
                        Header::Complete(param, len) => {
                            self.buf.drain(..len);
                            self.begin_param(name, params, param, out);
                            true
                        }
                        Header::Incomplete => false,
                        Header::Not => {
                            self.buf.drain(..PARAMETER.len());
                            true
                        }
                    },
                    Some(tag) => {
                        self.buf.drain(..tag.len());
                        self.arguments("}", out);
                        if tag == CLOSE {
                            self.end_block();
                        } else {
                            self.state = State::BlockRest;
                        }
                        true
                    }
                    None => false,
                }
            }
            State::Value {
                function,
                params,
                mut param,
            } => {
                if !param.started {
                    if self.buf.is_empty() {
                        return false;
                    }
                    if self.buf.starts_with('\n') {
                        self.buf.drain(..1);
                    }
                    param.started = true;
                }
                let from = param.searched;
                match first_of(&self.buf[from..], &VALUE_ENDS).map(|(at, tag)| (from + at, tag)) {
                    Some((at, tag)) => {
                        let value = &self.buf[..at];
                        let value = value.strip_suffix('\n').unwrap_or(value).to_owned();
                        self.end_param(params, &param, &value, out);
                        let skip = if tag == PARAMETER_END { tag.len() } else { 0 };
                        self.buf.drain(..at + skip);
                        self.state = State::Function {
                            name: function,
                            params: params + 1,
                        };
                        true
                    }
                    None => {
                        // Only a partial tag at the end can still become a value end.
                        param.searched = self.buf.len() - partial_suffix(&self.buf, &VALUE_ENDS);
                        if param.streamed {
                            let mut release =
                                self.buf.len() - partial_suffix(&self.buf, &VALUE_ENDS);
                            // The value's last newline is not part of it: held until more
                            // text shows it was not the last.
                            if self.buf[..release].ends_with('\n') {
                                release -= 1;
                            }
                            let piece = escape_fragment(&self.buf[..release]);
                            self.arguments(&piece, out);
                            self.buf.drain(..release);
                            param.searched = 0;
                        }
                        self.state = State::Value {
                            function,
                            params,
                            param,
                        };
                        false
                    }
                }
            }
        }
    }

    /// Outside blocks: content up to the next `<tool_call>`.
    fn text(&mut self, out: &mut ToolCallsDelta) -> bool {
        if let Some(at) = self.buf.find(OPEN) {
            let before = self.buf[..at].to_owned();
            self.release_text(&before, out);
            self.buf.drain(..at + OPEN.len());
            self.state = State::BlockStart;
            return true;
        }
        let release = self.buf.len() - partial_tag_suffix(&self.buf, OPEN);
        if self.drops_whitespace() && self.buf[..release].trim().is_empty() {
            return false; // hold: dropped if only whitespace comes before the next call
        }
        let text = self.buf[..release].to_owned();
        self.release_text(&text, out);
        self.buf.drain(..release);
        false
    }

    /// Inside a block, text before the first of `tags` is ignored: drops it and returns the
    /// tag now at the start of the buffer, or drops all but a possible partial tag.
    fn next_tag(&mut self, tags: &[&'static str]) -> Option<&'static str> {
        match first_of(&self.buf, tags) {
            Some((at, tag)) => {
                self.buf.drain(..at);
                Some(tag)
            }
            None => {
                let keep = partial_suffix(&self.buf, tags);
                self.buf.drain(..self.buf.len() - keep);
                None
            }
        }
    }

    fn begin_call(&mut self, name: String, out: &mut ToolCallsDelta) {
        out.calls.push(ToolCallDelta {
            index: self.calls,
            name: Some(name.clone()),
            arguments: String::new(),
        });
        self.calls += 1;
        self.arguments("{", out);
        self.state = State::Function { name, params: 0 };
    }

    fn begin_param(
        &mut self,
        function: String,
        params: usize,
        name: String,
        out: &mut ToolCallsDelta,
    ) {
        let types = declared_types(self.schemas.property(&function, &name));
        let streamed = is_plain_string(&types);
        if streamed {
            let head = format!("{}{}: \"", separator(params), json_key(&name));
            self.arguments(&head, out);
        }
        self.state = State::Value {
            function,
            params,
            param: Param {
                name,
                types,
                streamed,
                started: false,
                searched: 0,
            },
        };
    }

    /// Writes the rest of a parameter whose whole value is `value`.
    fn end_param(&mut self, params: usize, param: &Param, value: &str, out: &mut ToolCallsDelta) {
        let text = if param.streamed {
            format!("{}\"", escape_fragment(value))
        } else {
            let value: Value = convert(value, &param.types);
            format!(
                "{}{}: {}",
                separator(params),
                json_key(&param.name),
                to_json_text(&value)
            )
        };
        self.arguments(&text, out);
    }

    /// Argument text of the current call.
    fn arguments(&self, text: &str, out: &mut ToolCallsDelta) {
        out.arguments(self.calls.saturating_sub(1), text);
    }

    fn end_block(&mut self) {
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
}

fn separator(params: usize) -> &'static str {
    if params == 0 { "" } else { ", " }
}

fn json_key(name: &str) -> String {
    Value::String(name.to_owned()).to_string()
}
