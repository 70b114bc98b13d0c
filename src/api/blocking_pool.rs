//! CPU-heavy request work off the async workers: JSON parsing of large bodies, message checks,
//! template rendering, tokenization, grammar compilation and submission run on a bounded pool of
//! blocking threads, so that `/health`, `/metrics` and running streams are answered whatever
//! arrives. Requests beyond the pool's size wait for a permit without holding a worker.
//!
//! The pool has two lanes. The light lane (as many permits as the machine has cores) runs
//! every job; work whose size a request chooses freely (grammar compilation, tokenizing a text
//! of megabytes) moves to the heavy lane (half the cores, at least one), handing its light
//! permit back while it waits and runs there, so a few heavy requests cannot keep light ones
//! queued behind them.
//!
//! A prompt whose text is certainly too long for the context is refused before it is
//! tokenized: no token stands for more than [`Tokenizer::max_token_bytes`] bytes, and
//! normalizers (NFC/NFKC) shrink text at most threefold, so a text longer than
//! `3 × max_token_bytes × max_model_len` bytes has more tokens than the context holds. Texts
//! below that but larger than any plausible prompt are counted piecewise first
//! ([`super::prompt_tokens`]), stopping once past the context.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{ApiError, ApiResult, ContextOverflow};
use super::grammar::{self, GrammarLimits, GuidedSpec};
use super::prompt_tokens;
use super::request_builder;
use super::state::Ready;
use crate::engine::{EventStream, GenerationRequest};
use crate::tokenizer::Tokenizer;

/// How much normalization may shrink text (see the module docs).
const NORMALIZER_SHRINK: usize = 3;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn permits() -> &'static Arc<Semaphore> {
    static POOL: OnceLock<Arc<Semaphore>> = OnceLock::new();
    POOL.get_or_init(|| Arc::new(Semaphore::new(cores().max(2))))
}

fn heavy_permits() -> &'static Arc<Semaphore> {
    static HEAVY: OnceLock<Arc<Semaphore>> = OnceLock::new();
    HEAVY.get_or_init(|| Arc::new(Semaphore::new((cores() / 2).max(1))))
}

/// The permit of the pool job running on this thread, and whether it is the heavy lane's (see
/// [`move_to_heavy_lane`]).
struct HeldPermit {
    _permit: OwnedSemaphorePermit,
    heavy: bool,
}

thread_local! {
    static HELD: RefCell<Option<HeldPermit>> = const { RefCell::new(None) };
}

fn shutting_down<E>(_: E) -> ApiError {
    ApiError::unavailable("the server is shutting down")
}

/// Runs `work` on the blocking pool once a permit is free.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    let permit = permits()
        .clone()
        .acquire_owned()
        .await
        .map_err(shutting_down)?;
    tokio::task::spawn_blocking(move || {
        HELD.with(|p| {
            *p.borrow_mut() = Some(HeldPermit {
                _permit: permit,
                heavy: false,
            })
        });
        let out = work();
        HELD.with(|p| p.borrow_mut().take());
        out
    })
    .await
    .map_err(|e| ApiError::internal(format!("request work failed: {e}")))
}

/// A permit of the heavy lane, for work that runs on a thread of its own (grammar
/// compilation); hold it until that work ends.
pub async fn heavy_permit() -> ApiResult<OwnedSemaphorePermit> {
    heavy_permits()
        .clone()
        .acquire_owned()
        .await
        .map_err(shutting_down)
}

/// Moves the pool job running on this thread ([`run`]) to the heavy lane for the rest of its
/// run: its light permit is handed back first, then a heavy one is awaited. Call it before work
/// whose size the request chose freely. Outside a pool job (tests, tools) it does nothing.
pub fn move_to_heavy_lane() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let held = HELD.with(|p| p.borrow_mut().take());
    match held {
        None => {}
        Some(held) if held.heavy => HELD.with(|p| *p.borrow_mut() = Some(held)),
        Some(light) => {
            drop(light);
            // A closed semaphore (shutdown) leaves the job to finish without a permit.
            if let Ok(permit) = runtime.block_on(heavy_permits().clone().acquire_owned()) {
                HELD.with(|p| {
                    *p.borrow_mut() = Some(HeldPermit {
                        _permit: permit,
                        heavy: true,
                    })
                });
            }
        }
    }
}

/// [`request_builder::submit_all`] on the pool: submission checks every prompt id.
pub async fn submit_all(
    ready: &Arc<Ready>,
    requests: Vec<GenerationRequest>,
) -> ApiResult<Vec<EventStream>> {
    let ready = ready.clone();
    run(move || request_builder::submit_all(&ready, requests, Vec::new())).await?
}

/// [`submit_all`] for requests under one output constraint: the grammar compiles once for all
/// of them (see [`grammar::compile`]), then they are submitted on the pool.
pub async fn submit_guided(
    ready: &Arc<Ready>,
    limits: &GrammarLimits,
    requests: Vec<GenerationRequest>,
    guided: Option<GuidedSpec>,
) -> ApiResult<Vec<EventStream>> {
    let matchers = grammar::compile(ready, limits, guided, requests.len()).await?;
    let ready = ready.clone();
    run(move || request_builder::submit_all(&ready, requests, matchers)).await?
}

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
    run(move || {
        check_text_fits(&ready.tokenizer, &text, ready.max_model_len(), param)?;
        let ids = ready.tokenizer.encode(&text, add_special_tokens)?;
        Ok((text, ids))
    })
    .await?
}
