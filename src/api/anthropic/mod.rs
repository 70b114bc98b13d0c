//! `POST /v1/messages` (also `?beta=true`) and `POST /v1/messages/count_tokens`: the Anthropic
//! Messages API (Claude Code, the Anthropic SDKs).
//!
//! - [`types`]: request and response bodies.
//! - [`input`]: `system` / `messages` blocks / tools / `tool_choice` → chat form.
//! - [`render`]: engine events → stream events ([`events`], typed) and the final message.
//! - [`error`]: the Anthropic error shape for every failure on these routes.

pub mod error;
pub mod events;
pub mod handler;
pub mod input;
pub mod render;
pub mod types;
