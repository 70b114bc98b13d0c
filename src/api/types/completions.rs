//! `/v1/completions` bodies.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::common::{StopReasonValue, StreamOptions, UsageInfo};

/// `prompt`: a string, a list of strings, a list of token ids, or a list of such lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

impl PromptInput {
    /// How many prompts this is.
    pub fn len(&self) -> usize {
        match self {
            PromptInput::Text(_) | PromptInput::Tokens(_) => 1,
            PromptInput::Texts(t) => t.len(),
            PromptInput::TokenLists(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The request's own fields; the sampling and generation fields it shares with the other
/// OpenAI generation API are [`super::generation::SharedGenerationFields`], read from the same
/// body.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: PromptInput,
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub best_of: Option<i64>,
    /// Number of alternatives per token (0..=20), OpenAI's completions shape.
    pub logprobs: Option<i64>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub user: Option<String>,
    // vLLM's extensions.
    pub add_special_tokens: Option<bool>,
    #[serde(flatten)]
    pub unsupported: super::unsupported::Unsupported,
}

#[derive(Debug, Serialize)]
pub struct CompletionResponse {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageInfo>,
}

#[derive(Debug, Serialize)]
pub struct CompletionChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReasonValue>,
}

/// OpenAI's legacy logprobs shape: parallel arrays over the tokens of `text`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f32>>,
    pub top_logprobs: Vec<Option<HashMap<String, f32>>>,
    pub text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// Appends `more`'s tokens after these.
    pub fn extend(&mut self, more: CompletionLogprobs) {
        self.tokens.extend(more.tokens);
        self.token_logprobs.extend(more.token_logprobs);
        self.top_logprobs.extend(more.top_logprobs);
        self.text_offset.extend(more.text_offset);
    }
}
