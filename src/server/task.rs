//! The served task from the flags and the checkpoint: `--task embed` (or vLLM's `--runner
//! pooling` / `--convert embed`) reads the model as an embedding model, and `auto` does so when
//! the checkpoint carries sentence-transformers pooling files, as the Qwen3-Embedding
//! checkpoints do; `--task score` (or vLLM's reranker `--hf-overrides`) reads it as
//! Qwen3-Reranker, scored by its `yes` and `no` tokens.

use crate::api::task::{RerankSpec, ServedTask};
use crate::cli::serve::TaskChoice;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use crate::weights::ModelSource;
use crate::weights::sentence_transformers::EmbeddingSpec;

pub fn resolve(
    choice: TaskChoice,
    source: &ModelSource,
    tokenizer: &Tokenizer,
) -> Result<ServedTask> {
    let spec = match source {
        ModelSource::Checkpoint(files) => EmbeddingSpec::from_dir(&files.dir)?,
        ModelSource::Gguf(_) => None,
    };
    let task = match (choice, spec) {
        (TaskChoice::Generate, _) | (TaskChoice::Auto, None) => ServedTask::Generate,
        (TaskChoice::Auto | TaskChoice::Embed, Some(spec)) => ServedTask::Embed(spec),
        (TaskChoice::Embed, None) => ServedTask::Embed(EmbeddingSpec::last_token_normalized()),
        (TaskChoice::Score, _) => ServedTask::Score(rerank_spec(tokenizer)?),
    };
    if task != ServedTask::Generate {
        tracing::info!(task = task.name(), "serving the model for {}", task.name());
    }
    Ok(task)
}

/// The reranker's answer tokens.
fn rerank_spec(tokenizer: &Tokenizer) -> Result<RerankSpec> {
    let id = |token: &str| {
        tokenizer.token_to_id(token).ok_or_else(|| {
            Error::config(format!(
                "--task score reads the model as Qwen3-Reranker, whose answers are the tokens \
                 `yes` and `no`; this tokenizer has no `{token}`"
            ))
        })
    };
    Ok(RerankSpec {
        yes: id("yes")?,
        no: id("no")?,
    })
}
