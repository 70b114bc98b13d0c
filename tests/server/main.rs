//! Integration tests: the HTTP API on an in-process server over the tiny model: the OpenAI,
//! Responses, Anthropic, embeddings and scoring routes, errors, transport limits, agent-client shapes, hostile requests.
//!
//! One test binary per subject: each binary links the whole library, and on a small machine
//! linking, not compiling, is most of `cargo test`'s time.

mod embedding_checkpoint;
mod http_client;

mod api_agents;
mod api_anthropic;
mod api_coder_tools;
mod api_embeddings;
mod api_errors;
mod api_http;
mod api_rerank;
mod api_transport;
mod kv_cache_dtype;
mod moe;
mod reliability;
