//! Streaming token ids → text deltas, UTF-8 safe.
//!
//! Qwen3's vocabulary is byte-level BPE: one Chinese character or emoji is often split over two
//! or more tokens, each holding some of its UTF-8 bytes. Decoding a token alone gives U+FFFD, so
//! a stream cannot just decode each new token. The technique here is the one vLLM and TGI use:
//! keep two offsets into the generated ids,
//!
//! * `prefix` — where the decode window starts (a point where everything before is final), and
//! * `read` — up to where the text is already emitted,
//!
//! decode `ids[prefix..read]` and `ids[prefix..]`, and emit the difference once the latter no
//! longer ends in U+FFFD (an incomplete character). Each step decodes only the window, not the
//! whole sequence, and ids before `prefix` are dropped.
//!
//! Two refinements over the textbook version keep the window short and the output exact:
//! * Ids that decode to nothing (special tokens when skipping them, ids past the vocabulary)
//!   never enter the window: `decode` drops them too, so the text is the same.
//! * Bytes that can never become a character (a stray continuation byte, a lead byte followed
//!   by ASCII) make the window end in U+FFFD for good. When splitting the window before the
//!   newest token decodes to the same text as the whole window, the split is a character
//!   boundary for the byte-level decoder, so everything before it is final and is emitted.
//!   Without this a run of such tokens would hold back text and grow the window without bound.

use std::sync::Arc;

use super::Tokenizer;
use crate::error::Result;

const REPLACEMENT: char = '\u{FFFD}';

/// Turns generated ids, one at a time, into text deltas whose concatenation equals
/// `tokenizer.decode(all_ids, skip_special_tokens)`.
pub struct IncrementalDetokenizer {
    tokenizer: Arc<Tokenizer>,
    skip_special_tokens: bool,
    /// Ids from the `prefix` offset on; earlier ones are final and forgotten.
    window: Vec<u32>,
    /// `window[..read]` has been emitted; `read` is a character boundary.
    read: usize,
    /// `decode(window[..read])`, the part of the window's text already emitted.
    prefix_text: String,
}

impl IncrementalDetokenizer {
    pub fn new(tokenizer: Arc<Tokenizer>, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            skip_special_tokens,
            window: Vec::new(),
            read: 0,
            prefix_text: String::new(),
        }
    }

    pub fn skip_special_tokens(&self) -> bool {
        self.skip_special_tokens
    }

    /// Adds one generated id and returns the text it completes: often the token's text, empty
    /// while a character is still incomplete, or several tokens' text at once when one
    /// completes it.
    pub fn push(&mut self, id: u32) -> Result<String> {
        let contributes = self.tokenizer.is_known(id)
            && !(self.skip_special_tokens && self.tokenizer.is_special(id));
        if !contributes {
            return Ok(String::new());
        }
        self.window.push(id);
        let text = self.decode(&self.window)?;
        if !text.ends_with(REPLACEMENT) {
            let delta = suffix_after(&text, &self.prefix_text).to_owned();
            self.advance(self.window.len())?;
            return Ok(delta);
        }
        self.emit_final_part(&text)
    }

    /// Adds several ids; the returned text is the concatenation of their deltas.
    pub fn push_all(&mut self, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        for &id in ids {
            out.push_str(&self.push(id)?);
        }
        Ok(out)
    }

    /// Ends the stream: returns whatever was held back (an incomplete character comes out as
    /// U+FFFD, as in a full decode) and resets the detokenizer for reuse.
    pub fn finish(&mut self) -> Result<String> {
        let text = self.decode(&self.window)?;
        let delta = suffix_after(&text, &self.prefix_text).to_owned();
        self.window.clear();
        self.read = 0;
        self.prefix_text.clear();
        Ok(delta)
    }

    /// Whether text is being held back, waiting for the rest of a character.
    pub fn has_pending(&self) -> bool {
        self.read < self.window.len()
    }

    /// How many ids the next step will decode at most: the per-token cost. It stays a handful
    /// of tokens however long the stream gets.
    pub fn window_len(&self) -> usize {
        self.window.len()
    }

    /// The window ends in U+FFFD. If the newest token does not continue the bytes before it,
    /// everything up to that token is final: emit it and move the offsets there.
    fn emit_final_part(&mut self, text: &str) -> Result<String> {
        let last = self.window.len() - 1;
        if last <= self.read {
            return Ok(String::new());
        }
        let head = self.decode(&self.window[..last])?;
        let tail = self.decode(&self.window[last..])?;
        let independent = !tail.is_empty()
            && head.len() + tail.len() == text.len()
            && text.starts_with(head.as_str())
            && text.ends_with(tail.as_str());
        if !independent {
            return Ok(String::new());
        }
        let delta = suffix_after(&head, &self.prefix_text).to_owned();
        self.advance(last)?;
        Ok(delta)
    }

    /// Marks `window[..to]` as emitted: the old read point becomes the window start.
    fn advance(&mut self, to: usize) -> Result<()> {
        self.window.drain(..self.read);
        self.read = to - self.read;
        self.prefix_text = self.decode(&self.window[..self.read])?;
        Ok(())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, self.skip_special_tokens)
    }
}

/// The part of `text` after `prefix`. For the byte-level decoder `text` always starts with
/// `prefix`; for decoders where it may not (context-dependent cleanup), fall back to the longest
/// common prefix rather than panicking on a non-character boundary.
fn suffix_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    if let Some(rest) = text.strip_prefix(prefix) {
        return rest;
    }
    let common = text
        .char_indices()
        .zip(prefix.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| prefix.len().min(text.len()));
    text.get(common..).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::suffix_after;

    #[test]
    fn suffix_after_handles_mismatched_prefixes() {
        assert_eq!(suffix_after("hello world", "hello"), " world");
        assert_eq!(suffix_after("héllo", "hx"), "éllo");
        assert_eq!(suffix_after("ab", "abc"), "");
        assert_eq!(suffix_after("你好", ""), "你好");
    }
}
