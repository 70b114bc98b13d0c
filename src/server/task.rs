//! The served task from the flags and the checkpoint: `--task embed` (or vLLM's `--runner
//! pooling` / `--convert embed`) reads the model as an embedding model; `auto` does so when the
//! checkpoint carries sentence-transformers pooling files, as the Qwen3-Embedding checkpoints
//! do.

use crate::api::task::ServedTask;
use crate::cli::serve::TaskChoice;
use crate::error::Result;
use crate::weights::ModelSource;
use crate::weights::sentence_transformers::EmbeddingSpec;

pub fn resolve(choice: TaskChoice, source: &ModelSource) -> Result<ServedTask> {
    let spec = match source {
        ModelSource::Checkpoint(files) => EmbeddingSpec::from_dir(&files.dir)?,
        ModelSource::Gguf(_) => None,
    };
    Ok(match (choice, spec) {
        (TaskChoice::Generate, _) | (TaskChoice::Auto, None) => ServedTask::Generate,
        (TaskChoice::Auto | TaskChoice::Embed, Some(spec)) => ServedTask::Embed(spec),
        (TaskChoice::Embed, None) => ServedTask::Embed(EmbeddingSpec::last_token_normalized()),
    })
}
