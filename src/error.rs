//! The crate's one error type. Every layer returns it; the HTTP layer maps each kind to a status
//! code and an OpenAI-shaped body (see `api::error`).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A checkpoint, tokenizer or config file that cannot be used. Names the file.
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },

    /// A request the engine refuses. `part` says which part of it, in the engine's terms: the
    /// API that received the request names the part with its own field (`api::FieldNames`).
    #[error("{message}")]
    InvalidRequest { part: RequestPart, message: String },

    /// A request value outside the range the engine accepts: the message is the field's name
    /// followed by `problem` ("top_p must be in (0, 1], got 2."), the field named by the API
    /// that received the request.
    #[error("{} {problem}", part.name())]
    OutOfRange { part: RequestPart, problem: String },

    /// A prompt (with the output asked for) longer than the model's context: a 400 whose code
    /// clients recognise (`context_length_exceeded`), so that agents can compact and retry.
    /// `part` is the prompt, or the output limit that would not fit beside it.
    #[error("{message}")]
    ContextLength {
        part: RequestPart,
        message: String,
        /// The tokens asked for (the prompt, plus the completion where one was requested).
        tokens: usize,
        max_model_len: usize,
    },

    /// A flag, setting or command-line value the server cannot run with (found at start-up or by
    /// a CLI command, never by a request).
    #[error("{0}")]
    Config(String),

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

    pub fn invalid(part: RequestPart, message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            part,
            message: message.into(),
        }
    }

    /// `part`'s value is out of range: `problem` completes a sentence that starts with the
    /// field's name ("must be in [0, 1], got 3.").
    pub fn out_of_range(part: RequestPart, problem: impl Into<String>) -> Self {
        Error::OutOfRange {
            part,
            problem: problem.into(),
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    /// The part of the request this error is about, if it is a refusal of a request.
    pub fn request_part(&self) -> Option<RequestPart> {
        match self {
            Error::InvalidRequest { part, .. }
            | Error::OutOfRange { part, .. }
            | Error::ContextLength { part, .. } => Some(*part),
            _ => None,
        }
    }
}

/// The parts of a generation request the engine checks, in its own terms. The engine never
/// knows what an HTTP API calls them: each API has a table (`api::FieldNames`) that names the
/// part with the field its clients sent (the prompt is `messages`, `prompt` or `input`; the
/// output limit `max_tokens`, `max_completion_tokens` or `max_output_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestPart {
    /// The prompt: its messages, text or token ids.
    Prompt,
    /// The most tokens to generate.
    OutputLimit,
    StopTokenIds,
    Temperature,
    TopP,
    TopK,
    MinP,
    PresencePenalty,
    FrequencyPenalty,
    RepetitionPenalty,
    /// How many alternatives to report per token.
    Logprobs,
    LogitBias,
    /// A JSON schema, regex or grammar the output must follow.
    OutputConstraint,
}

impl RequestPart {
    /// The engine's own name for the part, for messages outside any API (the CLI, logs): the
    /// field of vLLM's completions API that carries it.
    pub fn name(self) -> &'static str {
        match self {
            RequestPart::Prompt => "prompt",
            RequestPart::OutputLimit => "max_tokens",
            RequestPart::StopTokenIds => "stop_token_ids",
            RequestPart::Temperature => "temperature",
            RequestPart::TopP => "top_p",
            RequestPart::TopK => "top_k",
            RequestPart::MinP => "min_p",
            RequestPart::PresencePenalty => "presence_penalty",
            RequestPart::FrequencyPenalty => "frequency_penalty",
            RequestPart::RepetitionPenalty => "repetition_penalty",
            RequestPart::Logprobs => "logprobs",
            RequestPart::LogitBias => "logit_bias",
            RequestPart::OutputConstraint => "response_format",
        }
    }
}
