//! `POST /v1/responses` and `GET /v1/responses/{id}`: the Responses API (Codex CLI, the Agents
//! SDK, the Vercel AI SDK, LangChain's `use_responses_api`).
//!
//! - [`types`]: request, response object, usage.
//! - [`input`]: `instructions` / `input` items / tools / `tool_choice` → chat form.
//! - [`render`]: engine events → stream events and the final object (one code path for both).
//! - [`store`]: finished responses kept in memory for retrieval and `previous_response_id`.

pub mod handler;
pub mod input;
pub mod render;
pub mod store;
pub mod types;

#[cfg(test)]
mod render_tests;
