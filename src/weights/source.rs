//! What `--model` names: a checkpoint directory (or a hub repo id resolved to one), or a single
//! GGUF file carrying weights, config, tokenizer, chat template and defaults together. Serving
//! asks the source for each of those and does not care which it is.

use super::checkpoint::CheckpointFiles;
use super::config::Qwen3Config;
use super::gguf::{self, GgufFile};
use crate::error::Result;
use crate::sampling::GenerationDefaults;
use crate::tokenizer::{ChatTemplate, Tokenizer};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum ModelSource {
    Checkpoint(CheckpointFiles),
    Gguf(Arc<GgufFile>),
}

impl ModelSource {
    /// A GGUF file (recognised by its magic), else a checkpoint directory or hub repo id.
    pub fn resolve(model: &str) -> Result<Self> {
        let path = Path::new(model);
        if gguf::is_gguf_file(path) {
            return Self::gguf(path);
        }
        Ok(Self::Checkpoint(CheckpointFiles::resolve(model)?))
    }

    /// Maps a GGUF file and checks that it holds a Qwen3 model.
    pub fn gguf(path: &Path) -> Result<Self> {
        let file = GgufFile::open(path)?;
        gguf::architecture(&file)?;
        Ok(Self::Gguf(Arc::new(file)))
    }

    /// The checkpoint directory, or the GGUF file.
    pub fn path(&self) -> PathBuf {
        match self {
            Self::Checkpoint(files) => files.dir.clone(),
            Self::Gguf(file) => file.path().to_path_buf(),
        }
    }

    pub fn config(&self) -> Result<Qwen3Config> {
        match self {
            Self::Checkpoint(files) => Qwen3Config::from_file(&files.config),
            Self::Gguf(file) => gguf::qwen3_config(file),
        }
    }

    pub fn tokenizer(&self) -> Result<Tokenizer> {
        match self {
            Self::Checkpoint(files) => Tokenizer::from_file(&files.tokenizer),
            Self::Gguf(file) => gguf::tokenizer(file),
        }
    }

    /// The model's own chat template.
    pub fn chat_template(&self) -> Result<ChatTemplate> {
        match self {
            Self::Checkpoint(files) => ChatTemplate::from_model_dir(&files.dir),
            Self::Gguf(file) => gguf::chat_template(file),
        }
    }

    /// The special-token variables a replacement template (`--chat-template`) is rendered with.
    pub fn template_special_tokens(&self) -> Map<String, Value> {
        match self {
            Self::Checkpoint(files) => ChatTemplate::from_model_dir(&files.dir)
                .map(|t| t.special_tokens().clone())
                .unwrap_or_default(),
            Self::Gguf(file) => gguf::special_tokens(file).unwrap_or_default(),
        }
    }

    /// The model's sampling defaults and end-of-generation ids (`--generation-config auto`).
    pub fn generation_defaults(&self, tokenizer: &Tokenizer) -> Result<GenerationDefaults> {
        match self {
            Self::Checkpoint(files) => GenerationDefaults::from_model_dir(&files.dir),
            Self::Gguf(file) => Ok(gguf::generation_defaults(file, tokenizer)),
        }
    }
}
