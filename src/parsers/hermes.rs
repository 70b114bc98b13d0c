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

use serde_json::Value;

use super::tags::partial_tag_suffix;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// Part of one tool call: `name` on its first delta, then argument text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallDelta {
    pub index: usize,
    pub name: Option<String>,
    pub arguments: String,
}

/// What one step releases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HermesDelta {
    pub content: String,
    pub calls: Vec<ToolCallDelta>,
}

impl HermesDelta {
    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && self.calls.is_empty()
    }

    /// Appends `other`, merging argument fragments of the same call.
    pub fn extend(&mut self, other: HermesDelta) {
        self.content.push_str(&other.content);
        for call in other.calls {
            self.push_call(call);
        }
    }

    fn push_call(&mut self, call: ToolCallDelta) {
        match self.calls.last_mut() {
            Some(last)
                if last.index == call.index && last.name.is_none() && call.name.is_none() =>
            {
                last.arguments.push_str(&call.arguments)
            }
            _ => self.calls.push(call),
        }
    }

    fn arguments(&mut self, index: usize, text: &str) {
        if !text.is_empty() {
            self.push_call(ToolCallDelta {
                index,
                name: None,
                arguments: text.to_owned(),
            });
        }
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Scan {
    started: bool,
    depth: usize,
    in_string: bool,
    escape: bool,
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
    pub fn parse(text: &str) -> HermesDelta {
        let mut parser = Self::new();
        let mut out = parser.push(text);
        out.extend(parser.finish());
        out
    }

    /// Number of calls begun so far.
    pub fn num_calls(&self) -> usize {
        self.calls
    }

    pub fn push(&mut self, delta: &str) -> HermesDelta {
        let mut out = HermesDelta::default();
        self.buf.push_str(delta);
        while self.step(&mut out) {}
        out
    }

    /// Ends the output, releasing held text; an unterminated block that never became a call is
    /// content, a call cut short keeps the arguments released so far.
    pub fn finish(&mut self) -> HermesDelta {
        let mut out = HermesDelta::default();
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
    pub fn finish_cut(&mut self) -> HermesDelta {
        let mut out = HermesDelta::default();
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
    fn step(&mut self, out: &mut HermesDelta) -> bool {
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

    fn release_text(&mut self, text: &str, out: &mut HermesDelta) {
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
    fn close_whole(&mut self, body: &str, begun: bool, out: &mut HermesDelta) {
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

impl Scan {
    /// Feeds one character of the value; true when the value is complete.
    fn feed(&mut self, c: char) -> bool {
        if self.in_string {
            if self.escape {
                self.escape = false;
            } else if c == '\\' {
                self.escape = true;
            } else if c == '"' {
                self.in_string = false;
            }
            return false;
        }
        match c {
            '"' => self.in_string = true,
            '{' | '[' => self.depth += 1,
            '}' | ']' => {
                self.depth = self.depth.saturating_sub(1);
                return self.depth == 0;
            }
            _ => {}
        }
        false
    }
}

enum Header {
    Complete { name: String, end: usize },
    Incomplete,
    Mismatch,
}

/// Matches `{"name": "<json string>", "arguments":` (any JSON whitespace between tokens).
fn parse_header(s: &str) -> Header {
    let mut i = 0;
    let steps: [&[&str]; 3] = [&["{"], &["\"name\""], &[":"]];
    for lits in steps {
        match expect(s, skip_ws(s, i), lits) {
            Ok(next) => i = next,
            Err(h) => return h,
        }
    }
    i = skip_ws(s, i);
    let Some(rest) = s.get(i..) else {
        return Header::Incomplete;
    };
    if rest.is_empty() {
        return Header::Incomplete;
    }
    if !rest.starts_with('"') {
        return Header::Mismatch;
    }
    let mut scan = Scan::default();
    scan.feed('"');
    let mut end = None;
    for (j, c) in rest.char_indices().skip(1) {
        scan.feed(c);
        if !scan.in_string {
            end = Some(i + j + 1);
            break;
        }
    }
    let Some(end) = end else {
        return Header::Incomplete;
    };
    let Ok(name) = serde_json::from_str::<String>(&s[i..end]) else {
        return Header::Mismatch;
    };
    i = end;
    let steps: [&[&str]; 3] = [&[","], &["\"arguments\"", "\"parameters\""], &[":"]];
    for lits in steps {
        match expect(s, skip_ws(s, i), lits) {
            Ok(next) => i = next,
            Err(h) => return h,
        }
    }
    Header::Complete { name, end: i }
}

fn skip_ws(s: &str, i: usize) -> usize {
    let rest = &s[i..];
    i + (rest.len() - rest.trim_start_matches([' ', '\t', '\n', '\r']).len())
}

/// One of `lits` at byte `i`: its end, `Incomplete` if the text stops inside one, else `Mismatch`.
fn expect(s: &str, i: usize, lits: &[&str]) -> Result<usize, Header> {
    let rest = &s[i..];
    if let Some(lit) = lits.iter().find(|l| rest.starts_with(**l)) {
        return Ok(i + lit.len());
    }
    if lits.iter().any(|l| l.starts_with(rest)) {
        return Err(Header::Incomplete);
    }
    Err(Header::Mismatch)
}

/// `(name, arguments)` of a whole call object; arguments given as a string are taken as the
/// JSON text itself, anything else is serialised.
fn parse_call(body: &str) -> Option<(String, String)> {
    let Value::Object(obj) = serde_json::from_str::<Value>(body).ok()? else {
        return None;
    };
    let name = obj.get("name")?.as_str()?.to_owned();
    let arguments = match obj.get("arguments").or_else(|| obj.get("parameters")) {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => serde_json::to_string(v).ok()?,
    };
    Some((name, arguments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Collected result: content, and per call (name, concatenated arguments).
    fn collect(deltas: impl IntoIterator<Item = HermesDelta>) -> (String, Vec<(String, String)>) {
        let mut content = String::new();
        let mut calls: Vec<(String, String)> = Vec::new();
        for d in deltas {
            content.push_str(&d.content);
            for c in d.calls {
                if let Some(name) = c.name {
                    assert_eq!(c.index, calls.len(), "indices are dense and in order");
                    calls.push((name, String::new()));
                }
                calls[c.index].1.push_str(&c.arguments);
            }
        }
        (content, calls)
    }

    fn stream(text: &str, cuts: &[usize]) -> (String, Vec<(String, String)>) {
        let mut p = HermesToolParser::new();
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|&c| c % (text.len() + 1))
            .filter(|&c| text.is_char_boundary(c))
            .collect();
        points.sort_unstable();
        points.dedup();
        points.push(text.len());
        let mut deltas = Vec::new();
        let mut last = 0;
        for c in points {
            if c >= last {
                deltas.push(p.push(&text[last..c]));
                last = c;
            }
        }
        deltas.push(p.finish());
        collect(deltas)
    }

    fn one_shot(text: &str) -> (String, Vec<(String, String)>) {
        collect([HermesToolParser::parse(text)])
    }

    fn by_char(text: &str) -> (String, Vec<(String, String)>) {
        let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        stream(text, &cuts)
    }

    #[test]
    fn single_call_with_text_before() {
        let text = "Let me check.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let want = (
            "Let me check.\n\n".to_owned(),
            vec![("get_weather".to_owned(), "{\"city\": \"Paris\"}".to_owned())],
        );
        assert_eq!(one_shot(text), want);
        assert_eq!(by_char(text), want);
    }

    #[test]
    fn nested_unicode_and_braces_in_strings() {
        let args =
            r#"{"q": {"text": "a } b { \" c", "tags": ["x", {"y": [1, 2]}]}, "城市": "北京 🌧"}"#;
        let text = format!(
            "<tool_call>\n{{\"name\": \"search\", \"arguments\": {args}}}\n</tool_call>\n<tool_call>\n{{\"name\": \"b\", \"arguments\": {{}}}}\n</tool_call>"
        );
        let want = (
            String::new(),
            vec![
                ("search".to_owned(), args.to_owned()),
                ("b".to_owned(), "{}".to_owned()),
            ],
        );
        assert_eq!(one_shot(&text), want);
        assert_eq!(by_char(&text), want);
        let v: Value = serde_json::from_str(&want.1[0].1).unwrap();
        assert_eq!(v["城市"], "北京 🌧");
    }

    #[test]
    fn first_delta_has_name_then_fragments() {
        let mut p = HermesToolParser::new();
        assert!(p.push("<tool_call>\n{\"name\": \"f\"").is_empty());
        let d = p.push(", \"arguments\": {\"a\"");
        assert_eq!(
            d.calls,
            vec![
                ToolCallDelta {
                    index: 0,
                    name: Some("f".into()),
                    arguments: String::new()
                },
                ToolCallDelta {
                    index: 0,
                    name: None,
                    arguments: "{\"a\"".into()
                }
            ]
        );
        let d = p.push(": 1}}\n</tool_call>");
        assert_eq!(d.calls[0].arguments, ": 1}");
        assert!(p.finish().is_empty());
    }

    #[test]
    fn off_path_blocks_are_parsed_whole() {
        let text = "<tool_call>{\"arguments\": {\"x\": 1}, \"name\": \"f\"}</tool_call>";
        assert_eq!(
            one_shot(text),
            (String::new(), vec![("f".into(), "{\"x\":1}".into())])
        );
        let text = "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>";
        assert_eq!(
            one_shot(text),
            (String::new(), vec![("f".into(), "{\"x\": 1}".into())])
        );
        assert_eq!(by_char(text), one_shot(text));
    }

    #[test]
    fn invalid_block_is_content() {
        let text = "a<tool_call>not json</tool_call>b";
        assert_eq!(one_shot(text), (text.to_owned(), vec![]));
        assert_eq!(by_char(text), one_shot(text));
        let text = "a<tool_call>{\"na";
        assert_eq!(one_shot(text), (text.to_owned(), vec![]));
        assert_eq!(by_char(text), one_shot(text));
    }

    #[test]
    fn truncated_call_keeps_partial_arguments() {
        let text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1, 2";
        assert_eq!(
            one_shot(text),
            (String::new(), vec![("f".into(), "{\"a\": [1, 2".into())])
        );
        assert_eq!(by_char(text), one_shot(text));
    }

    #[test]
    fn no_calls_is_plain_content() {
        for text in ["hello", "a < b", "<tool", "x <tool_cal y", ""] {
            assert_eq!(one_shot(text), (text.to_owned(), vec![]));
            assert_eq!(by_char(text), one_shot(text));
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            "[a-z{}\\[\\]\"\\\\ é你🌧<>/_]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z城]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn streamed_arguments_equal_one_shot(
            prefix in "[a-z <\n]{0,6}",
            calls in prop::collection::vec(
                ("[a-z_]{1,8}", prop::collection::btree_map("[a-z城]{1,5}", arb_json(), 0..4), any::<bool>()),
                0..4,
            ),
            cuts in prop::collection::vec(0usize..2000, 0..40),
        ) {
            let mut text = prefix.clone();
            let mut want = Vec::new();
            for (name, args, pretty) in &calls {
                let args = Value::Object(args.clone().into_iter().collect());
                let args_text = if *pretty {
                    serde_json::to_string_pretty(&args).unwrap()
                } else {
                    serde_json::to_string(&args).unwrap()
                };
                text.push_str(&format!(
                    "<tool_call>\n{{\"name\": {}, \"arguments\": {args_text}}}\n</tool_call>\n",
                    json!(name)
                ));
                want.push((name.clone(), args_text, args));
            }
            let whole = one_shot(&text);
            prop_assert_eq!(&stream(&text, &cuts), &whole);
            prop_assert_eq!(&by_char(&text), &whole);
            prop_assert_eq!(whole.1.len(), want.len());
            for ((name, args), (want_name, want_text, want_value)) in whole.1.iter().zip(&want) {
                prop_assert_eq!(name, want_name);
                prop_assert_eq!(args, want_text);
                let parsed: Value = serde_json::from_str(args).unwrap();
                prop_assert_eq!(&parsed, want_value);
            }
            if !calls.is_empty() {
                prop_assert_eq!(whole.0, prefix);
            }
        }
    }

    #[test]
    fn a_cut_leaks_no_call_markup() {
        for (text, content, calls) in [
            ("Sure.<tool_call>\n{\"na", "Sure.", 0),
            ("Sure.<tool_c", "Sure.", 0),
            ("<tool_call>\n{\"arguments\": {\"a\": 1}, \"name\": \"f", "", 0),
            ("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": ", "", 1),
        ] {
            let mut p = HermesToolParser::new();
            let mut out = p.push(text);
            out.extend(p.finish_cut());
            assert_eq!(out.content, content, "{text:?}");
            let named = out.calls.iter().filter(|c| c.name.is_some()).count();
            assert_eq!(named, calls, "{text:?}");
            assert!(!out.content.contains('<'), "{text:?}");
        }
    }
}
