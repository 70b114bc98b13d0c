//! `/v1/messages` bodies. `messages`, `system`, `tools` and `tool_choice` stay JSON values and
//! are read by [`super::input`], so errors name the block at fault and unknown block or tool
//! types can be skipped.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: i64,
    pub messages: Vec<Value>,
    /// A string or a list of text blocks.
    pub system: Option<Value>,
    pub stop_sequences: Option<Vec<String>>,
    pub stream: Option<bool>,
    // `temperature`, `top_p`, `top_k` are read by the sampling view every API shares
    // ([`crate::api::types::sampling::SamplingFields`]).
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub thinking: Option<ThinkingConfig>,
    pub metadata: Option<Value>,
    /// `output_config.format`: a JSON Schema the answer must follow (structured outputs).
    pub output_config: Option<OutputConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OutputConfig {
    pub effort: Option<String>,
    pub format: Option<OutputFormat>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutputFormat {
    /// `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    pub schema: Option<Value>,
}

/// `/v1/messages/count_tokens`: the request without the generation settings.
#[derive(Debug, Clone, Deserialize)]
pub struct CountTokensRequest {
    pub model: Option<String>,
    pub messages: Vec<Value>,
    pub system: Option<Value>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub thinking: Option<ThinkingConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ThinkingConfig {
    /// `enabled`, `adaptive` or `disabled`.
    #[serde(rename = "type")]
    pub kind: String,
    pub budget_tokens: Option<i64>,
    /// `omitted`: thinking blocks are sent without their text.
    pub display: Option<String>,
}

impl ThinkingConfig {
    /// Whether Qwen3 should think: only when asked, as Anthropic models do.
    pub fn enabled(config: Option<&Self>) -> bool {
        config.is_some_and(|c| c.kind == "enabled" || c.kind == "adaptive")
    }

    pub fn omits_text(config: Option<&Self>) -> bool {
        config.is_some_and(|c| c.display.as_deref() == Some("omitted"))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageUsage {
    /// Prompt tokens not read from the cache (the total is this plus the two cache fields).
    pub input_tokens: usize,
    pub output_tokens: usize,
    pub cache_read_input_tokens: usize,
    pub cache_creation_input_tokens: usize,
}

impl MessageUsage {
    pub fn new(prompt: usize, cached: usize, output: usize) -> Self {
        Self {
            input_tokens: prompt.saturating_sub(cached),
            output_tokens: output,
            cache_read_input_tokens: cached.min(prompt),
            cache_creation_input_tokens: 0,
        }
    }
}

/// The response message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MessageObject {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub role: String,
    pub model: String,
    pub content: Vec<Value>,
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: MessageUsage,
}
