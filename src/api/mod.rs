//! The OpenAI-compatible HTTP API (axum), shaped after vLLM's so its clients work unchanged.
//!
//! Routes:
//! - `POST /v1/chat/completions`, `POST /v1/completions` (JSON or SSE with `stream: true`)
//! - `POST /v1/responses`, `GET /v1/responses/{id}`: the Responses API ([`openai::responses`])
//! - `POST /v1/messages` (also `?beta=true`), `POST /v1/messages/count_tokens`: the Anthropic
//!   Messages API ([`anthropic`]), whose errors take Anthropic's shape
//! - `GET|HEAD /`: 200 while listening (no key needed)
//! - `GET /v1/models`
//! - `POST /v1/embeddings` (an embedding model: [`openai::embeddings`]); `POST /v1/rerank`
//!   (`/rerank`, `/v2/rerank`) and `POST /v1/score` (`/score`) (a reranker: [`rerank`]). A
//!   route the served model does not serve answers 400 ([`task`]).
//! - `POST /tokenize`, `POST /detokenize` (vLLM's shapes)
//! - `GET /health` (200 ready; 503 while loading or draining), `GET|POST /ping`, `GET /version`,
//!   `GET /metrics` (Prometheus text; see [`metrics`])
//! - `GET /openapi.json`: the OpenAPI 3 description of these routes and their request shapes
//!
//! Errors: every failure is `{"error": {"message", "type", "param", "code"}}`, vLLM's current
//! shape (`type` a class name such as `BadRequestError`, `code` the HTTP status); see
//! [`error`]. Statuses: 400 invalid input (including malformed JSON, a non-JSON content type and
//! template failures), 401 missing/wrong key, 404 unknown route or model, 405 wrong method,
//! 408 body not received within `--body-read-timeout`, 413 body over 32 MiB, 429 waiting queue
//! full (`--max-waiting`), 503 loading, draining or too many bodies buffered at once
//! (`--max-buffered-body-bytes`), 500 engine failures.
//!
//! Caps beyond vLLM's sampling ranges ([`state::Limits`]): `n` ≤ 16, `stop` ≤ 16 strings,
//! `stop_token_ids` ≤ 64, `top_logprobs`/`logprobs` ≤ 20, `logit_bias` ≤ 1024 entries,
//! `tools` ≤ 128 (`--max-tools`), completions `prompt` lists ≤ 64, request body ≤ 32 MiB. One request fans out
//! to at most 128 engine requests (prompts × `n`), so it cannot fill the waiting queue. A
//! non-streamed response holds at most 2^20 (1 048 576) logprob entries, counted as choices ×
//! (1 + top logprobs) × `max_tokens` (the context's room when unset), plus echoed prompt
//! tokens; stream to go beyond. A prompt text longer than 3 × the longest token's bytes ×
//! `max_model_len` is refused before it is tokenized ([`blocking_pool`]). Each error names the limit.
//!
//! Refused rather than ignored ([`types::unsupported`]): vLLM extras tealight does not implement
//! (`prompt_logprobs`, `use_beam_search`, `guided_*`, `structured_outputs`, `bad_words`,
//! `allowed_token_ids`, `logits_processors`, `truncate_prompt_tokens`, ...) and OpenAI's legacy
//! `functions`/`function_call`, `audio`, `prediction`: a value that asks for anything (not null,
//! `false`, empty or the neutral default) is a 400 naming the field. Other unknown fields are
//! ignored, as OpenAI and vLLM do.
//!
//! Heavy work per request (large JSON bodies, template rendering, tokenization, grammar
//! compilation, `/tokenize`) runs on a bounded blocking pool ([`blocking_pool`]), never on the async
//! workers, so `/health` and `/metrics` answer whatever arrives. Streams send an SSE comment
//! (`: keep-alive`) after `--sse-keep-alive` seconds of silence (default 5).
//!
//! Connections ([`transport`]): header-read, keep-alive and body-read timeouts, a connection cap
//! below RLIMIT_NOFILE, and a budget of request-body bytes buffered at once ([`body_buffer`]).
//!
//! Keys: `Authorization: Bearer <key>` or `x-api-key: <key>` ([`auth`]).
//!
//! Layout: one folder per protocol around a shared core. [`openai`] holds chat completions,
//! completions and the Responses API; [`anthropic`] the Messages API; no protocol imports
//! another. Each translates its request into the core's terms and renders the output in its own
//! wire shapes. The core: parsing ([`extract`]: the request plus views of the fields every API
//! shares, [`types::sampling`], [`types::generation`]); one path from a conversation to checked
//! engine requests ([`generate`]: tool plan, prompt, limits, sampling and the engine's own rules
//! in one trip to the [`blocking_pool`], then submission, which only takes queue slots);
//! completions' raw prompts take the same [`request_builder`]; one output path ([`output`]: one
//! parser per choice, one [`output::Renderer`] trait each protocol implements, one driver for
//! streamed and whole answers); SSE on the wire ([`sse`]); one error type ([`error`]) rendered
//! per dialect. Output parsing (reasoning, tool calls) lives in [`crate::parsers`]. The layer
//! takes a [`ServerConfig`] and a [`Ready`] model from [`crate::server`], the composition root, and
//! knows nothing of command-line flags.

pub mod anthropic;
pub mod auth;
pub mod blocking_pool;
pub mod body_budget;
pub mod body_buffer;
pub mod chat_prompt;
pub mod conversation;
pub mod error;
pub mod extract;
pub mod field_names;
pub mod generate;
pub mod grammar;
pub mod health;
pub mod http_metrics;
pub mod logprobs;
pub mod metrics;
pub mod metrics_labels;
pub mod metrics_vllm;
pub mod models;
pub mod openai;
pub mod openapi;
pub mod output;
pub mod pooled;
pub mod prompt_length;
pub mod prompt_tokens;
pub mod request_builder;
pub mod rerank;
pub mod response_store;
pub mod router;
pub mod sse;
pub mod state;
pub mod task;
pub mod tokenize;
pub mod tools;
pub mod transport;

pub mod types;

use std::future::Future;

use tokio::net::TcpListener;

pub use router::router;
pub use state::{AppState, Limits, Ready, ServerConfig};

use crate::error::{Error, Result};

/// Serves `state` on `listener` until `shutdown` resolves, then closes each connection once its
/// request in flight has been answered. (The server's composition root, tests and embedders
/// call this with their own listener and shutdown future.)
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let registry = state.connections().clone();
    let limits = state.config().transport.clone();
    transport::serve(listener, router(state), registry, limits, shutdown)
        .await
        .map_err(Error::Io)
}
