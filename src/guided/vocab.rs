//! The vocabulary as bytes: what each token id appends to the output, which is what a grammar
//! engine matches against.
//!
//! Built from our own `tokenizers` tokenizer rather than through `toktrie_hf_tokenizers`, which
//! pins another major version of `tokenizers`. The rules are the ones that crate applies:
//! - byte-level BPE (Qwen3, GPT-2 family): each character of a vocabulary string stands for one
//!   byte through GPT-2's byte ↔ unicode table (`Ġ` = space, `Ċ` = newline, ...);
//! - byte-fallback BPE (SentencePiece style): `<0xNN>` pieces are that raw byte, `▁` is a space;
//! - added tokens marked special (`<|im_end|>`) get toktrie's `0xFF` marker in front, so that
//!   the text `<|im_end|>` is never mistaken for the control token and grammars name them as
//!   `<|im_end|>`; added tokens that are not special (Qwen3's `<tool_call>`, `<think>`) are
//!   their text, as `decode` shows them, so a grammar literal `"<tool_call>"` admits the single
//!   token as well as the text spelled in pieces;
//! - ids the model has but the tokenizer lacks (Qwen3: 151 669 known of 151 936 rows) are empty,
//!   which no grammar can ever allow.

use llguidance::toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use tokenizers::DecoderWrapper;

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use crate::tokenizer::byte_level::piece_bytes;

/// How the tokenizer spells bytes in its vocabulary strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    ByteLevel,
    /// Byte fallback, with the character that stands for a space.
    ByteFallback(char),
}

/// The bytes of every token id below `vocab_size` (see the module docs for the rules).
/// `vocab_size` is the model's (its logits' width); it may exceed the tokenizer's.
pub fn token_bytes(tokenizer: &Tokenizer, vocab_size: usize) -> Result<Vec<Vec<u8>>> {
    let hf = tokenizer.inner();
    let known = hf.get_vocab_size(true);
    if known > vocab_size {
        return Err(Error::Tokenizer(format!(
            "the tokenizer knows {known} tokens but the model has only {vocab_size} logits"
        )));
    }
    let spelling = spelling(hf.get_decoder())?;
    let added = hf.get_added_tokens_decoder();
    let mut words = vec![Vec::new(); vocab_size];
    for (id, word) in words.iter_mut().enumerate() {
        let id = id as u32;
        if let Some(t) = added.get(&id) {
            let mut bytes = Vec::with_capacity(t.content.len() + 1);
            if t.special {
                bytes.push(TokTrie::SPECIAL_TOKEN_MARKER);
            }
            bytes.extend_from_slice(t.content.as_bytes());
            *word = bytes;
            continue;
        }
        let Some(piece) = hf.id_to_token(id) else {
            continue;
        };
        *word = match spelling {
            ByteLevel => piece_bytes(&piece).ok_or_else(|| {
                Error::Tokenizer(format!(
                    "token {id} ({piece:?}) has a character outside the byte-level alphabet"
                ))
            })?,
            ByteFallback(space) => match fallback_byte(&piece) {
                Some(b) => vec![b],
                None => piece.replace(space, " ").into_bytes(),
            },
        };
    }
    Ok(words)
}

use Spelling::{ByteFallback, ByteLevel};

/// Which spelling the decoder undoes; other decoders cannot be mapped to bytes.
fn spelling(decoder: Option<&DecoderWrapper>) -> Result<Spelling> {
    fn walk(d: &DecoderWrapper, level: &mut bool, fallback: &mut bool, space: &mut char) {
        match d {
            DecoderWrapper::ByteLevel(_) => *level = true,
            DecoderWrapper::ByteFallback(_) => *fallback = true,
            DecoderWrapper::Replace(r) => {
                // The pattern has no accessor; its serialized form names it.
                if let Ok(v) = serde_json::to_value(r)
                    && v["content"] == " "
                    && let Some(p) = v["pattern"]["String"].as_str()
                {
                    let mut chars = p.chars();
                    if let (Some(c), None) = (chars.next(), chars.next()) {
                        *space = c;
                    }
                }
            }
            DecoderWrapper::Sequence(seq) => {
                for d in seq.get_decoders() {
                    walk(d, level, fallback, space);
                }
            }
            _ => {}
        }
    }
    let (mut level, mut fallback, mut space) = (false, false, ' ');
    if let Some(d) = decoder {
        walk(d, &mut level, &mut fallback, &mut space);
    }
    match (level, fallback) {
        (true, _) => Ok(ByteLevel),
        (false, true) => Ok(ByteFallback(space)),
        (false, false) => Err(Error::Tokenizer(
            "guided decoding needs a byte-level or byte-fallback tokenizer; this decoder is neither"
                .into(),
        )),
    }
}

/// `<0xNN>` → the byte `NN`.
fn fallback_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The grammar engine's view of the tokenizer: the byte trie, plus canonical tokenization of
/// forced text (when a grammar leaves a single way to continue, the engine forces the tokens
/// the tokenizer would have produced for those bytes).
pub struct VocabEnv {
    trie: TokTrie,
    /// A copy that encodes special-token text as plain text: forced bytes never contain the
    /// `0xFF` marker, so `<|im_end|>` in them is text.
    encoder: tokenizers::Tokenizer,
}

impl VocabEnv {
    /// The environment for a model with `vocab_size` logits whose generation ends at any of
    /// `eos_ids`.
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize, eos_ids: &[u32]) -> Result<Self> {
        let words = token_bytes(tokenizer, vocab_size)?;
        let (&eos, _) = eos_ids
            .split_first()
            .ok_or_else(|| Error::Internal("guided decoding needs an EOS token".into()))?;
        if let Some(&bad) = eos_ids.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(Error::Internal(format!(
                "EOS token {bad} is outside a vocabulary of {vocab_size}"
            )));
        }
        let info = TokRxInfo::new(vocab_size as u32, eos);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(eos_ids);
        let mut encoder = tokenizer.inner().clone();
        encoder.set_encode_special_tokens(true);
        Ok(VocabEnv { trie, encoder })
    }

    /// The tokenizer's ids for `text` when they spell exactly its bytes; otherwise (the
    /// tokenizer normalizes, e.g. Qwen3's NFC, or fails) the trie's greedy split, which always
    /// does. Forced tokens must reproduce the grammar's bytes exactly.
    fn encode(&self, text: &str) -> Vec<TokenId> {
        if let Ok(enc) = self.encoder.encode_fast(text, false) {
            let ids = enc.get_ids();
            if self.trie.decode_raw(ids) == text.as_bytes() {
                return ids.to_vec();
            }
        }
        self.trie.greedy_tokenize(text.as_bytes())
    }
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie
            .tokenize_with_greedy_fallback(s, |text| self.encode(text))
    }

    fn tokenize_bytes_special(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.trie
                .tokenize_with_special(text, |plain| self.encode(plain))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn qwen3() -> &'static Tokenizer {
        static T: OnceLock<Tokenizer> = OnceLock::new();
        T.get_or_init(|| {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/qwen3-tiny/tokenizer.json"
            );
            Tokenizer::from_file(path).expect("tokenizer")
        })
    }

    /// The embedded model's logits width (config.json), larger than the tokenizer.
    const MODEL_VOCAB: usize = 151_936;

    fn qwen3_bytes() -> &'static Vec<Vec<u8>> {
        static B: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
        B.get_or_init(|| token_bytes(qwen3(), MODEL_VOCAB).unwrap())
    }

    #[test]
    fn every_token_decodes_to_its_bytes() {
        let tok = qwen3();
        let words = qwen3_bytes();
        assert_eq!(words.len(), MODEL_VOCAB);
        let known = tok.vocab_size();
        let mut partial = 0;
        for id in 0..known as u32 {
            let bytes = &words[id as usize];
            let text = tok.decode(&[id], false).unwrap();
            let body = if tok.is_special(id) {
                assert_eq!(bytes[0], TokTrie::SPECIAL_TOKEN_MARKER, "special {id}");
                &bytes[1..]
            } else {
                // Byte 0xFF alone (never valid UTF-8) shares the marker's trie node, as in
                // every byte-level vocabulary; no other token starts with it.
                assert!(!bytes.is_empty(), "token {id}");
                assert!(bytes[0] != 0xFF || bytes.len() == 1, "token {id}");
                &bytes[..]
            };
            // Lossy: a token holding part of a character decodes to U+FFFD, like `decode`.
            assert_eq!(String::from_utf8_lossy(body), text, "token {id}");
            partial += usize::from(std::str::from_utf8(body).is_err());
        }
        assert!(partial > 100, "byte-level pieces of characters: {partial}");
        assert!(words[known..].iter().all(Vec::is_empty), "padding ids");
    }

    #[test]
    fn encoded_text_concatenates_to_its_bytes() {
        let tok = qwen3();
        let words = qwen3_bytes();
        for text in [
            "Hello, world! {\"city\": \"Paris\", \"temp\": -3.5e2}",
            "  leading spaces\n\ttabs\r\n and newlines\n\n\n",
            "中文字符和日本語のテキスト, emoji 🦀🎉👩‍👩‍👧 and ünïcödé",
            "<tool_call>\n{\"name\": \"f\"}\n</tool_call><think></think>",
            "\u{0}\u{1f}\u{7f} control bytes \u{ffff}",
        ] {
            let ids = tok.encode(text, false).unwrap();
            let bytes: Vec<u8> = ids
                .iter()
                .flat_map(|&i| words[i as usize].clone())
                .collect();
            assert_eq!(bytes, text.as_bytes(), "{text:?} as {ids:?}");
        }
    }

    #[test]
    fn special_and_added_tokens() {
        let tok = qwen3();
        let env = VocabEnv::new(tok, MODEL_VOCAB, &[151645, 151643]).unwrap();
        let trie = env.tok_trie();
        assert_eq!(trie.vocab_size(), MODEL_VOCAB);
        assert_eq!(trie.get_special_token("<|im_end|>"), Some(151645));
        assert_eq!(trie.get_special_token("<|endoftext|>"), Some(151643));
        assert!(trie.is_special_token(151644));
        assert_eq!(trie.eos_tokens(), &[151645, 151643]);
        // Not special in Qwen3: plain text, so a grammar literal matches the single token.
        let tool_call = tok.token_to_id("<tool_call>").unwrap();
        assert!(!trie.is_special_token(tool_call));
        assert_eq!(trie.token(tool_call), b"<tool_call>");
        assert_eq!(env.tokenize_bytes(b"<tool_call>"), vec![tool_call]);
        // Special-token text in forced bytes is text; with the marker it is the token.
        let as_text = env.tokenize_bytes(b"<|im_end|>");
        assert!(
            !as_text.contains(&151645) && as_text.len() > 1,
            "{as_text:?}"
        );
        assert_eq!(trie.decode_raw(&as_text), b"<|im_end|>");
        assert_eq!(env.tokenize_bytes_special(b"a<|im_end|>"), {
            let mut v = env.tokenize_bytes(b"a");
            v.push(151645);
            v
        });
        // Invalid UTF-8 (half a character) still tokenizes to exactly those bytes.
        let half = &"中".as_bytes()[..2];
        assert_eq!(trie.decode_raw(&env.tokenize_bytes(half)), half);
        // Text the tokenizer would normalize (NFD → NFC) keeps its exact bytes.
        let nfd = "e\u{301}";
        assert_eq!(
            trie.decode_raw(&env.tokenize_bytes(nfd.as_bytes())),
            nfd.as_bytes()
        );
    }

    #[test]
    fn model_smaller_than_tokenizer_is_an_error() {
        assert!(token_bytes(qwen3(), 1000).is_err());
        assert!(VocabEnv::new(qwen3(), MODEL_VOCAB, &[]).is_err());
        assert!(VocabEnv::new(qwen3(), MODEL_VOCAB, &[MODEL_VOCAB as u32]).is_err());
    }

    /// A SentencePiece-style tokenizer: byte-fallback BPE, `▁` for spaces, `<0xNN>` pieces.
    fn byte_fallback_tokenizer() -> Tokenizer {
        let mut vocab = serde_json::Map::new();
        for (i, t) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
            vocab.insert(t.to_string(), i.into());
        }
        for b in 0..=255u32 {
            vocab.insert(format!("<0x{b:02X}>"), (3 + b).into());
        }
        for (i, t) in [
            "▁", "h", "e", "l", "o", "▁h", "he", "ll", "▁he", "▁hell", "▁hello",
        ]
        .iter()
        .enumerate()
        {
            vocab.insert(t.to_string(), (259 + i).into());
        }
        let json = serde_json::json!({
            "version": "1.0",
            "added_tokens": [
                {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false,
                 "rstrip": false, "normalized": false, "special": true},
                {"id": 1, "content": "<s>", "single_word": false, "lstrip": false,
                 "rstrip": false, "normalized": false, "special": true},
                {"id": 2, "content": "</s>", "single_word": false, "lstrip": false,
                 "rstrip": false, "normalized": false, "special": true}
            ],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
            ]},
            "pre_tokenizer": null,
            "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}
            ]},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": "<unk>",
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": vocab,
                "merges": ["▁ h", "h e", "l l", "▁h e", "▁he ll", "▁hell o"]
            }
        });
        let hf = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap();
        Tokenizer::from_inner(hf)
    }

    #[test]
    fn byte_fallback_pieces_are_raw_bytes() {
        let tok = byte_fallback_tokenizer();
        let words = token_bytes(&tok, 300).unwrap();
        assert_eq!(words[3 + 0x0A], vec![b'\n']);
        assert_eq!(words[3 + 0xE4], vec![0xE4]);
        let hello = tok.token_to_id("▁hello").unwrap() as usize;
        assert_eq!(words[hello], b" hello");
        assert_eq!(words[0][0], TokTrie::SPECIAL_TOKEN_MARKER);
        assert!(words[270..].iter().all(Vec::is_empty));
        // Text outside the vocabulary falls back to bytes; their concatenation is the text
        // (with the space the normalizer prepends).
        let text = "hello 中h";
        let ids = tok.encode(text, false).unwrap();
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&i| words[i as usize].clone())
            .collect();
        assert_eq!(bytes, format!(" {text}").as_bytes(), "{ids:?}");
    }

    #[test]
    fn fallback_pieces() {
        assert_eq!(fallback_byte("<0x0A>"), Some(b'\n'));
        assert_eq!(fallback_byte("<0xE4>"), Some(0xE4));
        assert_eq!(fallback_byte("<0x0A"), None);
        assert_eq!(fallback_byte("<0xZZ>"), None);
        assert_eq!(fallback_byte("hello"), None);
    }
}
