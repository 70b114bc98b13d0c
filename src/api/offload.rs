//! CPU-heavy request work off the async workers: JSON parsing of large bodies, message checks,
//! template rendering, tokenization, grammar compilation and submission run on a bounded pool of
//! blocking threads (as many as the machine has cores), so that `/health`, `/metrics` and
//! running streams are answered whatever arrives. Requests beyond the pool's size wait for a
//! permit without holding a worker.
//!
//! A prompt whose text is certainly too long for the context is refused before it is
//! tokenized: no token stands for more than [`Tokenizer::max_token_bytes`] bytes, and
//! normalizers (NFC/NFKC) shrink text at most threefold, so a text longer than
//! `3 × max_token_bytes × max_model_len` bytes has more tokens than the context holds.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use super::error::{ApiError, ApiResult, ContextOverflow};
use super::request_builder;
use super::state::Ready;
use crate::engine::{EventStream, GenerationRequest};
use crate::tokenizer::Tokenizer;

/// How much normalization may shrink text (see the module docs).
const NORMALIZER_SHRINK: usize = 3;

fn permits() -> &'static Arc<Semaphore> {
    static POOL: OnceLock<Arc<Semaphore>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores.max(2)))
    })
}

/// Runs `work` on the blocking pool once a permit is free.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    let permit = permits()
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("the server is shutting down"))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|e| ApiError::internal(format!("request work failed: {e}")))
}

/// [`request_builder::submit_all`] on the pool: submission compiles output grammars and checks
/// every prompt id.
pub async fn submit_all(
    ready: &Arc<Ready>,
    requests: Vec<GenerationRequest>,
) -> ApiResult<Vec<EventStream>> {
    let ready = ready.clone();
    run(move || request_builder::submit_all(&ready, requests)).await?
}

/// Refuses a prompt text that certainly holds more tokens than the context (see the module
/// docs); `param` names the field it came from.
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
    Ok(())
}

/// Tokenizes `text` on the pool after the length check.
pub async fn encode(
    ready: &Arc<Ready>,
    text: String,
    add_special_tokens: bool,
    param: &'static str,
) -> ApiResult<(String, Vec<u32>)> {
    check_text_fits(&ready.tokenizer, &text, ready.max_model_len(), param)?;
    let tokenizer = ready.tokenizer.clone();
    run(move || {
        let ids = tokenizer.encode(&text, add_special_tokens)?;
        Ok((text, ids))
    })
    .await?
}
