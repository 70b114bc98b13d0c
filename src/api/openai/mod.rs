//! The OpenAI routes: `/v1/chat/completions` ([`chat`]), `/v1/completions` ([`completions`])
//! the Responses API ([`responses`]) and `/v1/embeddings` ([`embeddings`]). Each translates its request for the shared core in
//! [`crate::api`] and renders the engine's output in its own wire shapes; none imports another
//! protocol's module.

pub mod chat;
pub mod completions;
mod delivery;
pub mod embeddings;
pub mod responses;
