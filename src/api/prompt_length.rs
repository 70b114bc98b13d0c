//! Prompt texts against the context before tokenizing, and tokenizing them on the pool.
//!
//! A prompt whose text is certainly too long for the context is refused before it is
//! tokenized: no token stands for more than [`Tokenizer::max_token_bytes`] bytes, and
//! normalizers (NFC/NFKC) shrink text at most threefold, so a text longer than
//! `3 × max_token_bytes × max_model_len` bytes has more tokens than the context holds. Texts
//! below that but larger than any plausible prompt are counted piecewise first
//! ([`super::prompt_tokens`]), stopping once past the context.

use std::sync::Arc;

use super::blocking_pool::{self, move_to_heavy_lane};
use super::error::{ApiError, ApiResult, ContextOverflow};
use super::prompt_tokens;
use super::state::Ready;
use crate::tokenizer::Tokenizer;

/// How much normalization may shrink text (see the module docs).
const NORMALIZER_SHRINK: usize = 3;

/// A text this many times the context in bytes is counted piecewise before it is tokenized
/// (prompts average about four bytes a token).
const PLAUSIBLE_BYTES_PER_TOKEN: usize = 8;

/// Texts larger than this are tokenized in the heavy lane ([`move_to_heavy_lane`]).
const HEAVY_TEXT_BYTES: usize = 1 << 20;

/// Refuses a prompt text that certainly holds more tokens than the context (see the module
/// docs); `param` names the field it came from. Call it on the pool, just before tokenizing
/// `text`: a large text moves the job to the heavy lane.
pub fn check_text_fits(
    tokenizer: &Tokenizer,
    text: &str,
    max_model_len: usize,
    param: &str,
) -> ApiResult<()> {
    let limit = max_model_len
        .saturating_mul(tokenizer.max_token_bytes())
        .saturating_mul(NORMALIZER_SHRINK);
    if text.len() > limit {
        // Each token spells at most `limit / max_model_len` bytes: a lower bound on the count.
        let per_token = (limit / max_model_len.max(1)).max(1);
        let overflow = ContextOverflow {
            tokens: text.len().div_ceil(per_token),
            max_model_len,
        };
        return Err(ApiError::context_length(
            param,
            format!(
                "This model's maximum context length is {max_model_len} tokens. However, your \
                 prompt is {} bytes long, more than any {max_model_len} tokens can spell \
                 ({limit} bytes); shorten it.",
                text.len()
            ),
            overflow,
        ));
    }
    if text.len() > HEAVY_TEXT_BYTES {
        move_to_heavy_lane();
    }
    if text.len() > max_model_len.saturating_mul(PLAUSIBLE_BYTES_PER_TOKEN) {
        let tokens = prompt_tokens::at_least(tokenizer, text, max_model_len);
        if tokens > max_model_len {
            return Err(ApiError::context_length(
                param,
                format!(
                    "This model's maximum context length is {max_model_len} tokens. However, \
                     your prompt has more than {max_model_len} tokens (at least {tokens}); \
                     shorten it."
                ),
                ContextOverflow {
                    tokens,
                    max_model_len,
                },
            ));
        }
    }
    Ok(())
}

/// Tokenizes `text` on the pool after the length check.
pub async fn encode(
    ready: &Arc<Ready>,
    text: String,
    add_special_tokens: bool,
    param: &'static str,
) -> ApiResult<(String, Vec<u32>)> {
    let ready = ready.clone();
    blocking_pool::run(move || {
        check_text_fits(&ready.tokenizer, &text, ready.max_model_len(), param)?;
        let ids = ready.tokenizer.encode(&text, add_special_tokens)?;
        Ok((text, ids))
    })
    .await?
}
