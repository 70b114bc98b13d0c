//! What the served model does: generate (chat, completions, Responses, Messages), embed
//! (`/v1/embeddings`) or score (`/v1/rerank`, `/v1/score`: a reranker). A route the model does
//! not serve answers a 400 that says which it is.

use super::error::{ApiError, ApiResult};
use crate::weights::sentence_transformers::EmbeddingSpec;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServedTask {
    #[default]
    Generate,
    /// Read as an embedding model: prefill-only requests, last-token pooling.
    Embed(EmbeddingSpec),
    /// Read as a reranker: prefill-only requests scored by two tokens' logits.
    Score(RerankSpec),
}

/// A causal LM read as Qwen3-Reranker is: the relevance of a pair is the softmax over the `no`
/// and `yes` logits at the last position of its prompt, taken at `yes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RerankSpec {
    pub yes: u32,
    pub no: u32,
}

impl ServedTask {
    /// The task's name (vLLM's runner vocabulary: `generate`, `embed`).
    pub fn name(&self) -> &'static str {
        match self {
            ServedTask::Generate => "generate",
            ServedTask::Embed(_) => "embed",
            ServedTask::Score(_) => "score",
        }
    }

    /// What the model is, in a sentence ("a generation model").
    fn described(&self) -> &'static str {
        match self {
            ServedTask::Generate => "a generation model",
            ServedTask::Embed(_) => "an embedding model",
            ServedTask::Score(_) => "a reranker",
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
            ServedTask::Score(_) => Err(ApiError::bad_request(
                "this server serves a reranker (--task score): it answers /v1/rerank and \
                 /v1/score and does not generate text",
            )),
        }
    }

    /// The embedding route may run: how this model embeds.
    pub fn embedding(&self) -> ApiResult<&EmbeddingSpec> {
        match self {
            ServedTask::Embed(spec) => Ok(spec),
            _ => Err(ApiError::bad_request(format!(
                "this server serves {}: it does not compute embeddings. Serve an embedding \
                 model (a Qwen3-Embedding checkpoint, or --task embed)",
                self.described()
            ))),
        }
    }

    /// The scoring routes may run: how this model scores.
    pub fn scoring(&self) -> ApiResult<RerankSpec> {
        match self {
            ServedTask::Score(spec) => Ok(*spec),
            _ => Err(ApiError::bad_request(format!(
                "this server serves {}: it does not score pairs. Serve a reranker (a \
                 Qwen3-Reranker checkpoint with --task score)",
                self.described()
            ))),
        }
    }
}
