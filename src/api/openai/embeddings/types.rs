//! `/v1/embeddings` request and response bodies (OpenAI's shapes, with vLLM's extras).

use serde::{Deserialize, Serialize};

use crate::api::types::completions::PromptInput;

#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    /// A string, a list of strings, a list of token ids, or a list of such lists.
    pub input: PromptInput,
    pub model: Option<String>,
    pub encoding_format: Option<EncodingFormat>,
    /// Keep the first `dimensions` values (then normalize again): Matryoshka truncation.
    pub dimensions: Option<i64>,
    pub user: Option<String>,
    /// vLLM's extra: the tokenizer's special tokens (the EOS an embedding tokenizer appends).
    pub add_special_tokens: Option<bool>,
}

/// How each embedding is written: a JSON list of numbers, or the base64 of its
/// little-endian f32 bytes (what the openai SDK asks for by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingResponse {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub data: Vec<EmbeddingData>,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Serialize)]
pub struct EmbeddingData {
    pub object: &'static str,
    pub index: usize,
    pub embedding: EmbeddingValues,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EmbeddingValues {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}
