//! What the served model does: generate (chat, completions, Responses, Messages) or embed
//! (`/v1/embeddings`). A route the model does not serve answers a 400 that says which it is.

use super::error::{ApiError, ApiResult};
use crate::weights::sentence_transformers::EmbeddingSpec;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServedTask {
    #[default]
    Generate,
    /// Read as an embedding model: prefill-only requests, last-token pooling.
    Embed(EmbeddingSpec),
}

impl ServedTask {
    /// The task's name (vLLM's runner vocabulary: `generate`, `embed`).
    pub fn name(&self) -> &'static str {
        match self {
            ServedTask::Generate => "generate",
            ServedTask::Embed(_) => "embed",
        }
    }

    /// A generation route may run.
    pub fn check_generates(&self) -> ApiResult<()> {
        match self {
            ServedTask::Generate => Ok(()),
            ServedTask::Embed(_) => Err(ApiError::bad_request(
                "this server serves an embedding model (--task embed): it answers \
                 /v1/embeddings and does not generate text",
            )),
        }
    }

    /// The embedding route may run: how this model embeds.
    pub fn embedding(&self) -> ApiResult<&EmbeddingSpec> {
        match self {
            ServedTask::Embed(spec) => Ok(spec),
            ServedTask::Generate => Err(ApiError::bad_request(
                "this server serves a generation model: it does not compute embeddings. Serve \
                 an embedding model (a Qwen3-Embedding checkpoint, or --task embed)",
            )),
        }
    }
}
