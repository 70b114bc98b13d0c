//! Text ↔ token ids, over the `tokenizers` crate's `tokenizer.json`.
//!
//! The wrapper exists so the rest of the crate sees one error type and never the `tokenizers`
//! crate's boxed errors, and so the set of special ids is computed once: the detokenizer asks
//! "is this id special?" for every generated token.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use super::byte_level::piece_bytes;
use crate::error::{Error, Result};

/// A loaded `tokenizer.json`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Ids of added tokens marked `special: true` (e.g. `<|im_end|>`), the ones that
    /// `skip_special_tokens` drops. Qwen3's `<think>`/`<tool_call>` are added but not special.
    special_ids: HashSet<u32>,
    /// The most bytes of text one vocabulary entry stands for (a byte-level piece's bytes, else
    /// its own length, which is never shorter than its text).
    max_token_bytes: usize,
    /// The special tokens' strings and ids, longest first.
    special_texts: Vec<(String, u32)>,
    /// The same tokenizer reading special-token strings as plain text (built on first use).
    plain: OnceLock<tokenizers::Tokenizer>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special_ids", &self.special_ids.len())
            .finish()
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json`. Errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::checkpoint(path, e.to_string()))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::checkpoint(path, format!("not a valid tokenizer.json: {e}")))?;
        Ok(Self::from_inner(inner))
    }

    /// Wraps an already built `tokenizers` tokenizer.
    pub fn from_inner(inner: tokenizers::Tokenizer) -> Self {
        let specials: Vec<(u32, String)> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, token)| (id, token.content))
            .collect();
        let special_ids = specials.iter().map(|&(id, _)| id).collect();
        let mut special_texts: Vec<(String, u32)> = specials
            .into_iter()
            .filter(|(_, text)| !text.is_empty())
            .map(|(id, text)| (text, id))
            .collect();
        special_texts.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let max_token_bytes = inner
            .get_vocab(true)
            .keys()
            .map(|piece| piece_bytes(piece).map_or(piece.len(), |b| b.len()))
            .max()
            .unwrap_or(1)
            .max(1);
        Self {
            inner,
            special_ids,
            max_token_bytes,
            special_texts,
            plain: OnceLock::new(),
        }
    }

    /// The most bytes of text one token can stand for: a text longer than `n` times this
    /// certainly has more than `n` tokens, without tokenizing it.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Token ids of `text`. Special-token strings that occur in `text` (e.g. a literal
    /// `<|im_end|>` in a rendered prompt) become their special ids, as in transformers.
    /// `add_special_tokens` applies the tokenizer's post-processor (Qwen3's adds nothing).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("encode: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The special tokens' strings and ids, longest first.
    pub fn special_token_texts(&self) -> &[(String, u32)] {
        &self.special_texts
    }

    /// Token ids of `text` in which only the `markup` spans (byte ranges, in order, each one
    /// special token's string) are control tokens: special-token strings elsewhere are plain
    /// text. The text between two spans is tokenized on its own, as `encode` does around
    /// every added token.
    pub fn encode_with_markup(
        &self,
        text: &str,
        markup: &[(Range<usize>, u32)],
        add_special_tokens: bool,
    ) -> Result<Vec<u32>> {
        let plain = self.plain.get_or_init(|| {
            let mut plain = self.inner.clone();
            plain.set_encode_special_tokens(true);
            plain
        });
        let err = |e: tokenizers::Error| Error::Tokenizer(format!("encode: {e}"));
        let mut pieces = Vec::with_capacity(2 * markup.len() + 1);
        let mut at = 0;
        for (span, _) in markup {
            let between = text.get(at..span.start).unwrap_or_default();
            let special = text.get(span.clone()).unwrap_or_default();
            if !between.is_empty() {
                pieces.push(plain.encode_fast(between, false).map_err(err)?);
            }
            pieces.push(self.inner.encode_fast(special, false).map_err(err)?);
            at = span.end;
        }
        let tail = text.get(at..).unwrap_or_default();
        if !tail.is_empty() || pieces.is_empty() {
            pieces.push(plain.encode_fast(tail, false).map_err(err)?);
        }
        let merged = tokenizers::Encoding::merge(pieces, false);
        let encoding = if add_special_tokens {
            self.inner.post_process(merged, None, true).map_err(err)?
        } else {
            merged
        };
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`. Ids outside the vocabulary contribute nothing (a model whose embedding is
    /// padded past the vocabulary can sample them). Incomplete UTF-8 at the end or between
    /// byte-level pieces comes out as U+FFFD, exactly like transformers' `decode`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("decode: {e}")))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary string of `id` (byte-level form, e.g. `Ġhello`), not its decoded text.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids the tokenizer knows, added tokens included. A model's embedding may be
    /// larger (Qwen3: 151 669 here vs 151 936 rows).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether `id` is an added token marked special, i.e. dropped by `skip_special_tokens`.
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// Whether `id` decodes to anything at all.
    pub fn is_known(&self, id: u32) -> bool {
        self.inner.id_to_token(id).is_some()
    }

    /// All special ids, sorted.
    pub fn special_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.special_ids.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The underlying `tokenizers` tokenizer, for what this wrapper does not cover.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
