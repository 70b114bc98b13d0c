//! `/v1/responses` bodies: the request subset tealight serves, the response object, and the
//! stream events. Polymorphic request fields (`input`, `tools`, `tool_choice`) stay JSON values
//! and are read by [`super::input`], so errors can name the exact item at fault and unknown item
//! or tool types can be skipped instead of failing deserialisation.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    pub model: Option<String>,
    /// A string (one user message) or a list of items.
    pub input: Option<Value>,
    /// System text, placed before everything in `input`.
    pub instructions: Option<String>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub max_output_tokens: Option<i64>,
    // The sampling fields (`temperature`, `top_p`, vLLM's extras) are a view of their own:
    // [`crate::api::types::sampling::SamplingFields`].
    pub stream: Option<bool>,
    pub store: Option<bool>,
    pub previous_response_id: Option<String>,
    pub reasoning: Option<ReasoningConfig>,
    pub text: Option<TextConfig>,
    pub metadata: Option<Map<String, Value>>,
    pub user: Option<String>,
    pub prompt_cache_key: Option<String>,
    pub safety_identifier: Option<String>,
    // Checked by [`super::fields`]: each works or is refused by name.
    pub top_logprobs: Option<i64>,
    pub truncation: Option<String>,
    pub background: Option<bool>,
    pub include: Option<Vec<String>>,
    pub conversation: Option<Value>,
    pub max_tool_calls: Option<i64>,
    /// vLLM's: prefix-cache blocks are shared only between requests with the same salt.
    pub cache_salt: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ReasoningConfig {
    /// `none` (or `minimal`) turns Qwen3's thinking off; any other effort leaves it on.
    pub effort: Option<String>,
    pub summary: Option<String>,
}

impl ReasoningConfig {
    /// Whether the request asks for no reasoning at all.
    pub fn disables_thinking(&self) -> bool {
        matches!(self.effort.as_deref(), Some("none") | Some("minimal"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TextConfig {
    pub format: Option<TextFormat>,
    pub verbosity: Option<String>,
}

/// `text.format`: `text`, `json_object`, or `json_schema` with the schema inline (the
/// Responses API's flat form, unlike chat's nested `json_schema` object).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TextFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `usage` of a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseUsage {
    pub input_tokens: usize,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: usize,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTokensDetails {
    pub cached_tokens: usize,
    /// Always 0: prefix caching here writes no billable cache.
    pub cache_write_tokens: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: usize,
}

impl ResponseUsage {
    pub fn new(input: usize, cached: usize, output: usize, reasoning: usize) -> Self {
        Self {
            input_tokens: input,
            input_tokens_details: InputTokensDetails {
                cached_tokens: cached,
                cache_write_tokens: 0,
            },
            output_tokens: output,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: reasoning,
            },
            total_tokens: input + output,
        }
    }
}

/// The response object (`object: "response"`): every field the OpenAI SDK and the Open
/// Responses schema require, with the settings the request ran with echoed back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseObject {
    pub id: String,
    pub object: String,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub status: String,
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<i64>,
    pub max_tool_calls: Option<i64>,
    pub model: String,
    pub output: Vec<Value>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub reasoning: Option<ReasoningConfig>,
    pub store: bool,
    pub background: bool,
    pub service_tier: String,
    pub temperature: f64,
    pub top_p: f64,
    pub presence_penalty: f64,
    pub frequency_penalty: f64,
    pub top_logprobs: i64,
    pub text: TextConfig,
    pub tool_choice: Value,
    pub tools: Vec<Value>,
    pub truncation: String,
    pub usage: Option<ResponseUsage>,
    pub user: Option<String>,
    pub metadata: Map<String, Value>,
    pub safety_identifier: Option<String>,
    pub prompt_cache_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseError {
    /// `server_error` (engine failure or shutdown).
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncompleteDetails {
    /// `max_output_tokens` (the limit or the end of the context).
    pub reason: String,
}

impl ResponseObject {
    /// A response that has just started: no output, no usage; the caller echoes the settings.
    pub fn in_progress(id: String, model: String, created_at: i64) -> Self {
        Self {
            id,
            object: "response".into(),
            created_at,
            completed_at: None,
            status: "in_progress".into(),
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            max_tool_calls: None,
            model,
            output: Vec::new(),
            parallel_tool_calls: true,
            previous_response_id: None,
            reasoning: None,
            store: false,
            background: false,
            service_tier: "default".into(),
            temperature: 1.0,
            top_p: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            top_logprobs: 0,
            text: TextConfig {
                format: Some(TextFormat {
                    kind: "text".into(),
                    name: None,
                    schema: None,
                    strict: None,
                    description: None,
                }),
                verbosity: None,
            },
            tool_choice: Value::String("auto".into()),
            tools: Vec::new(),
            truncation: "disabled".into(),
            usage: None,
            user: None,
            metadata: Map::new(),
            safety_identifier: None,
            prompt_cache_key: None,
        }
    }
}
