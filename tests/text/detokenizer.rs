//! The streaming detokenizer against the full decode, on the real Qwen3 tokenizer.
//!
//! For every id sequence: the deltas, concatenated with `finish()`, equal
//! `decode(all_ids, skip_special_tokens)`; after each id the text emitted so far is a prefix of
//! the decode of the ids so far, and equals it whenever that decode does not end in an
//! incomplete character (nothing is held back longer than needed).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use tealight::tokenizer::{IncrementalDetokenizer, Tokenizer};

/// Rows of Qwen3's embedding: ids past the tokenizer's vocabulary can be sampled.
const MODEL_VOCAB: u32 = 151_936;

fn tokenizer() -> Arc<Tokenizer> {
    static TOKENIZER: OnceLock<Arc<Tokenizer>> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let path =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny/tokenizer.json");
            Arc::new(Tokenizer::from_file(path).unwrap())
        })
        .clone()
}

/// GPT-2's byte → printable-char table, to name the single-byte tokens of the vocabulary.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let index = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + index).unwrap()
}

fn byte_token(b: u8) -> u32 {
    tokenizer().token_to_id(&byte_char(b).to_string()).unwrap()
}

/// Pools of ids that exercise different paths.
struct Pools {
    ascii: Vec<u32>,
    cjk: Vec<u32>,
    emoji: Vec<u32>,
    /// Tokens holding part of a character (decode alone to U+FFFD), from real encodings and
    /// the single-byte tokens.
    fragments: Vec<u32>,
    special: Vec<u32>,
    /// Added but not special: `<think>`, `<tool_call>`, ...
    added: Vec<u32>,
    unknown: Vec<u32>,
}

fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(|| {
        let tok = tokenizer();
        let encode = |s: &str| tok.encode(s, false).unwrap();
        let ascii = encode("The quick brown fox jumps over the lazy dog. fn main() { println!(\"{x:?}\"); }\n\t  ");
        let cjk = encode("你好，世界！我们今天学习编程语言。日本語のテキストも少し。한국어 문장도 있습니다。龘靐齉");
        let emoji = encode("😀🦀🚀✨👩‍👩‍👧‍👦🇯🇵🏳️‍🌈 🫠🪿");
        let mut fragments: Vec<u32> = cjk
            .iter()
            .chain(&emoji)
            .copied()
            .filter(|&id| tok.decode(&[id], false).unwrap().contains('\u{FFFD}'))
            .collect();
        for b in [0x80u8, 0x9F, 0xBD, 0xA0, 0xC3, 0xE4, 0xE6, 0xF0, 0x9F, 0x98, 0x80, 0xFF, 0xED] {
            fragments.push(byte_token(b));
        }
        let special = tok.special_ids();
        let added: Vec<u32> = ["<think>", "</think>", "<tool_call>", "</tool_call>"]
            .iter()
            .map(|t| tok.token_to_id(t).unwrap())
            .collect();
        let unknown = vec![tok.vocab_size() as u32, 151_800, MODEL_VOCAB - 1, u32::MAX];
        assert!(fragments.len() > 20, "only {} fragment tokens", fragments.len());
        assert!(!special.is_empty());
        Pools {
            ascii,
            cjk,
            emoji,
            fragments,
            special,
            added,
            unknown,
        }
    })
}

fn pick(pool: &'static [u32]) -> impl Strategy<Value = u32> {
    proptest::sample::select(pool)
}

fn interesting_id() -> impl Strategy<Value = u32> {
    let p = pools();
    prop_oneof![
        3 => pick(&p.ascii),
        3 => pick(&p.cjk),
        2 => pick(&p.emoji),
        4 => pick(&p.fragments),
        1 => pick(&p.special),
        1 => pick(&p.added),
        1 => pick(&p.unknown),
        1 => 0..MODEL_VOCAB,
    ]
}

/// Streams `ids` and checks every property; returns the deltas.
fn check_stream(ids: &[u32], skip_special_tokens: bool) -> Result<Vec<String>, TestCaseError> {
    let tok = tokenizer();
    let mut detok = IncrementalDetokenizer::new(tok.clone(), skip_special_tokens);
    let mut emitted = String::new();
    let mut deltas = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let delta = detok.push(id).unwrap();
        emitted.push_str(&delta);
        deltas.push(delta);
        let so_far = tok.decode(&ids[..=i], skip_special_tokens).unwrap();
        prop_assert!(
            so_far.starts_with(&emitted),
            "after {} ids emitted {:?}, not a prefix of {:?}",
            i + 1,
            emitted,
            so_far
        );
        if !so_far.ends_with('\u{FFFD}') {
            prop_assert_eq!(&emitted, &so_far, "held back text after {} ids", i + 1);
        }
    }
    let tail = detok.finish().unwrap();
    emitted.push_str(&tail);
    deltas.push(tail);
    let full = tok.decode(ids, skip_special_tokens).unwrap();
    prop_assert_eq!(&emitted, &full);
    prop_assert!(!detok.has_pending());
    Ok(deltas)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn random_interesting_ids_stream_to_the_full_decode(
        ids in proptest::collection::vec(interesting_id(), 0..48),
        skip in any::<bool>(),
    ) {
        check_stream(&ids, skip)?;
    }

    #[test]
    fn fragment_heavy_sequences_stream_to_the_full_decode(
        ids in proptest::collection::vec(pick(&pools().fragments), 1..32),
    ) {
        check_stream(&ids, true)?;
        check_stream(&ids, false)?;
    }

    #[test]
    fn real_strings_encoded_then_streamed_round_trip(
        text in "(\\PC|[你好世界日本語한국어]|[😀🦀👩‍👧🇯🇵]|\\n| ){0,60}",
        special in proptest::sample::select(vec!["", "<|im_end|>", "<think>\n", "<|endoftext|>"]),
    ) {
        let tok = tokenizer();
        let text = format!("{text}{special}{text}");
        let ids = tok.encode(&text, false).unwrap();
        let deltas = check_stream(&ids, false)?;
        // Whole characters only: a real string never needs a U+FFFD.
        for delta in &deltas {
            prop_assert!(!delta.contains('\u{FFFD}') || text.contains('\u{FFFD}'), "{:?}", delta);
        }
        let with_special = deltas.concat();
        let skipped = check_stream(&ids, true)?.concat();
        prop_assert_eq!(skipped, with_special.replace("<|im_end|>", "").replace("<|endoftext|>", ""));
    }
}

#[test]
fn chinese_split_over_byte_tokens_is_held_back_then_emitted_whole() {
    // 你 = E4 BD A0, fed one byte token at a time.
    let ids = [
        byte_token(0xE4),
        byte_token(0xBD),
        byte_token(0xA0),
        byte_token(b'!'),
    ];
    let mut detok = IncrementalDetokenizer::new(tokenizer(), true);
    assert_eq!(detok.push(ids[0]).unwrap(), "");
    assert!(detok.has_pending());
    assert_eq!(detok.push(ids[1]).unwrap(), "");
    assert_eq!(detok.push(ids[2]).unwrap(), "你");
    assert!(!detok.has_pending());
    assert_eq!(detok.push(ids[3]).unwrap(), "!");
    assert_eq!(detok.finish().unwrap(), "");
}

#[test]
fn emoji_split_over_four_byte_tokens() {
    let ids: Vec<u32> = "🦀".bytes().map(byte_token).collect();
    assert_eq!(ids.len(), 4);
    let mut detok = IncrementalDetokenizer::new(tokenizer(), true);
    let deltas: Vec<String> = ids.iter().map(|&id| detok.push(id).unwrap()).collect();
    assert_eq!(deltas, ["", "", "", "🦀"]);
}

#[test]
fn incomplete_character_at_the_end_is_flushed_as_replacement() {
    let mut detok = IncrementalDetokenizer::new(tokenizer(), true);
    assert_eq!(detok.push(byte_token(b'a')).unwrap(), "a");
    assert_eq!(detok.push(byte_token(0xE4)).unwrap(), "");
    assert_eq!(detok.finish().unwrap(), "\u{FFFD}");
    // finish() resets: the detokenizer can be reused.
    assert_eq!(detok.push(byte_token(b'b')).unwrap(), "b");
}

#[test]
fn special_tokens_are_skipped_or_kept() {
    let tok = tokenizer();
    let ids = tok
        .encode("<|im_start|>assistant\n你好<|im_end|>", false)
        .unwrap();
    let mut skip = IncrementalDetokenizer::new(tok.clone(), true);
    let mut keep = IncrementalDetokenizer::new(tok.clone(), false);
    let (mut a, mut b) = (String::new(), String::new());
    for &id in &ids {
        a.push_str(&skip.push(id).unwrap());
        b.push_str(&keep.push(id).unwrap());
    }
    a.push_str(&skip.finish().unwrap());
    b.push_str(&keep.finish().unwrap());
    assert_eq!(a, "assistant\n你好");
    assert_eq!(b, "<|im_start|>assistant\n你好<|im_end|>");
    // <think> is an added token but not special: it is never skipped.
    let think = tok.token_to_id("<think>").unwrap();
    assert!(!tok.is_special(think));
    assert!(tok.is_special(tok.token_to_id("<|im_end|>").unwrap()));
    let mut d = IncrementalDetokenizer::new(tok, true);
    assert_eq!(d.push(think).unwrap(), "<think>");
}

#[test]
fn window_stays_small_on_long_streams() {
    let tok = tokenizer();
    let text = "流式输出需要逐个字符地安全解码，😀 emoji and English words mixed in. ".repeat(60);
    let ids = tok.encode(&text, false).unwrap();
    assert!(ids.len() > 1000);
    let mut detok = IncrementalDetokenizer::new(tok.clone(), true);
    let mut out = String::new();
    let mut widest = 0;
    for &id in &ids {
        out.push_str(&detok.push(id).unwrap());
        widest = widest.max(detok.window_len());
    }
    out.push_str(&detok.finish().unwrap());
    assert_eq!(out, tok.decode(&ids, true).unwrap());
    assert!(widest <= 8, "window grew to {widest} tokens");

    // Bytes that never form a character (a lead byte over and over) must not grow the window
    // either: each one is final as soon as the next arrives.
    let lone = vec![byte_token(0xE4); 2000];
    let mut detok = IncrementalDetokenizer::new(tok.clone(), true);
    let mut out = String::new();
    let mut widest = 0;
    for &id in &lone {
        out.push_str(&detok.push(id).unwrap());
        widest = widest.max(detok.window_len());
    }
    out.push_str(&detok.finish().unwrap());
    assert_eq!(out, tok.decode(&lone, true).unwrap());
    assert_eq!(out.chars().count(), 2000);
    assert!(widest <= 3, "window grew to {widest} tokens");

    // Long runs of skipped special tokens and unknown ids never enter the window.
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    let mut detok = IncrementalDetokenizer::new(tok, true);
    for _ in 0..1000 {
        assert_eq!(detok.push(im_end).unwrap(), "");
        assert_eq!(detok.push(MODEL_VOCAB - 1).unwrap(), "");
    }
    assert_eq!(detok.window_len(), 0);
}

#[test]
fn tokenizer_basics() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 151_669);
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(151_645));
    assert_eq!(tok.id_to_token(151_645).as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.decode(&[MODEL_VOCAB - 1], false).unwrap(), "");
    let ids = tok.encode("你好", false).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), "你好");
    // 26 added tokens, of which 14 are special.
    assert_eq!(tok.special_ids().len(), 14);

    match Tokenizer::from_file("/no/such/tokenizer.json") {
        Err(tealight::Error::Checkpoint { path, .. }) => {
            assert_eq!(path, PathBuf::from("/no/such/tokenizer.json"))
        }
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
    let bad = std::env::temp_dir().join(format!(
        "tealight-bad-tokenizer-{}.json",
        std::process::id()
    ));
    std::fs::write(&bad, "{\"not\": \"a tokenizer\"}").unwrap();
    match Tokenizer::from_file(&bad) {
        Err(tealight::Error::Checkpoint { path, .. }) => assert_eq!(path, bad),
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
    std::fs::remove_file(&bad).unwrap();
}
