//! Pieces shared by the chat and completions APIs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub owned_by: &'static str,
    pub root: String,
    pub parent: Option<String>,
    pub max_model_len: usize,
    /// What the model is served for: `generate` or `embed`.
    pub task: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct UsageInfo {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

impl UsageInfo {
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached: Option<usize>) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: cached
                .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
        }
    }
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    One(String),
    Many(Vec<String>),
}

impl StopSpec {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSpec::One(s) => vec![s],
            StopSpec::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
    /// vLLM's extension: usage on every chunk.
    pub continuous_usage_stats: Option<bool>,
}

/// vLLM's `stop_reason`: the stop string or token id that ended the output, else null.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum StopReasonValue {
    Token(u32),
    Text(String),
}

impl StopReasonValue {
    pub fn from_engine(reason: Option<&crate::engine::StopReason>) -> Option<Self> {
        match reason? {
            crate::engine::StopReason::Eos => None,
            crate::engine::StopReason::TokenId(id) => Some(Self::Token(*id)),
            crate::engine::StopReason::String(s) => Some(Self::Text(s.clone())),
        }
    }
}
