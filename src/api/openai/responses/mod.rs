//! `POST /v1/responses` and `GET /v1/responses/{id}`: the Responses API (Codex CLI, the Agents
//! SDK, the Vercel AI SDK, LangChain's `use_responses_api`).
//!
//! - [`types`]: request, response object, usage.
//! - [`fields`]: the request fields beyond a prompt: each works or is refused by name.
//! - [`input`]: `instructions` / `input` items / tools / `tool_choice` → chat form.
//! - [`references`]: `item_reference` items → the stored items they name.
//! - [`truncate`]: `truncation: "auto"` — the oldest items go until the prompt fits.
//! - [`render`]: engine events → stream events and the final object (one code path for both).
//! - [`retain`]: what the store keeps of a request (what a prompt reads).
//! - the store of finished responses is the core's [`crate::api::response_store`].

pub mod events;
pub mod fields;
pub mod handler;
pub mod input;
pub mod references;
pub mod render;
pub mod retain;
pub mod truncate;
pub mod types;
