//! Token logprobs in the chat and completions shapes.
//!
//! A token's text is the exact bytes it stands for (Qwen3's vocabulary is byte-level BPE, so a
//! token may hold part of a character): `bytes` is exact, and `token` is those bytes as UTF-8
//! with U+FFFD for an incomplete character, as OpenAI reports it.

use std::collections::HashMap;

use super::types::chat::{ChatLogprobToken, TopLogprob};
use crate::engine::TokenLogprob;
use crate::tokenizer::Tokenizer;
use crate::tokenizer::byte_level::piece_bytes;

/// Logprobs can be `-inf` (a token banned by `logit_bias`); JSON has no infinity, so they are
/// reported as this floor, like vLLM.
const FLOOR: f32 = -9999.0;

pub fn clamp(logprob: f32) -> f32 {
    if logprob.is_nan() {
        FLOOR
    } else {
        logprob.max(FLOOR)
    }
}

/// The bytes a token id stands for.
pub fn token_bytes(tokenizer: &Tokenizer, id: u32) -> Vec<u8> {
    let Some(piece) = tokenizer.id_to_token(id) else {
        return Vec::new();
    };
    let mapped = piece_bytes(&piece);
    // Added tokens (`<|im_end|>`, `<think>`) are stored as plain text, not byte-level pieces.
    match mapped {
        Some(bytes) if !tokenizer.is_special(id) => bytes,
        _ => piece.into_bytes(),
    }
}

/// The token's text and bytes.
pub fn token_text(tokenizer: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let bytes = token_bytes(tokenizer, id);
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// One chat `logprobs.content` entry.
pub fn chat_entry(tokenizer: &Tokenizer, lp: &TokenLogprob) -> ChatLogprobToken {
    let (token, bytes) = token_text(tokenizer, lp.token_id);
    ChatLogprobToken {
        token,
        logprob: clamp(lp.logprob),
        bytes,
        top_logprobs: lp
            .top
            .iter()
            .map(|&(id, logprob)| {
                let (token, bytes) = token_text(tokenizer, id);
                TopLogprob {
                    token,
                    logprob: clamp(logprob),
                    bytes,
                }
            })
            .collect(),
    }
}

/// The completions API's `{token text: logprob}` map of alternatives.
pub fn top_map(tokenizer: &Tokenizer, top: &[(u32, f32)]) -> HashMap<String, f32> {
    top.iter()
        .map(|&(id, lp)| (token_text(tokenizer, id).0, clamp(lp)))
        .collect()
}
