//! The crate's one error type. Every layer returns it; the HTTP layer maps each kind to a status
//! code and an OpenAI-shaped body (see `api::error`).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A checkpoint, tokenizer or config file that cannot be used. Names the file.
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },

    /// A request that is malformed or out of range. `param` names the offending field.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },

    /// A prompt (with the output asked for) longer than the model's context: a 400 whose code
    /// clients recognise (`context_length_exceeded`), so that agents can compact and retry.
    #[error("{message}")]
    ContextLength {
        message: String,
        param: Option<String>,
        /// The tokens asked for (the prompt, plus the completion where one was requested).
        tokens: usize,
        max_model_len: usize,
    },

    /// The engine cannot take more work right now (bounded waiting queue is full).
    #[error("{0}")]
    Overloaded(String),

    /// The engine is loading or draining.
    #[error("{0}")]
    Unavailable(String),

    /// A device that was asked for but is not there (e.g. CUDA from a CPU-only build).
    #[error("{0}")]
    Device(String),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    Template(String),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// A bug or an unexpected state; never caused by user input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            message: message.into(),
            param: None,
        }
    }
}
