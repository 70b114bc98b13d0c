//! The small JSON syntax the hermes parser needs: a string- and escape-aware bracket scanner
//! that finds where a JSON value ends, the `{"name": …, "arguments":` header, and whole calls.

use serde_json::Value;

/// Bracket depth and string state of a JSON value read one character at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Scan {
    pub(super) started: bool,
    pub(super) depth: usize,
    pub(super) in_string: bool,
    pub(super) escape: bool,
}

impl Scan {
    /// Feeds one character of the value; true when the value is complete.
    pub(super) fn feed(&mut self, c: char) -> bool {
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

pub(super) enum Header {
    Complete { name: String, end: usize },
    Incomplete,
    Mismatch,
}

/// Matches `{"name": "<json string>", "arguments":` (any JSON whitespace between tokens).
pub(super) fn parse_header(s: &str) -> Header {
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
pub(super) fn parse_call(body: &str) -> Option<(String, String)> {
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
