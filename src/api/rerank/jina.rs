//! `POST /v1/rerank` (also `/rerank`, `/v2/rerank`): the Jina/Cohere shape vLLM serves. The
//! documents come back sorted by relevance, the first `top_n` of them.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::{Scored, score_pairs};
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::ApiJson;
use crate::api::field_names::FieldNames;
use crate::api::request_builder::random_id;
use crate::api::state::AppState;

#[derive(Debug, Deserialize)]
pub struct RerankRequest {
    pub model: Option<String>,
    pub query: String,
    pub documents: Vec<Document>,
    /// How many results to return (absent or 0: all).
    pub top_n: Option<i64>,
    /// Include each document's text in its result (default true).
    pub return_documents: Option<bool>,
    /// The reranker's instruction (default: its model card's web-search one).
    pub instruction: Option<String>,
}

/// A document as text, or as Cohere's `{"text": …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Document {
    Text(String),
    Object { text: String },
}

impl Document {
    fn into_text(self) -> String {
        match self {
            Document::Text(text) | Document::Object { text } => text,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RerankResponse {
    pub id: String,
    pub model: String,
    pub usage: RerankUsage,
    pub results: Vec<RerankResult>,
}

#[derive(Debug, Serialize)]
pub struct RerankUsage {
    pub total_tokens: usize,
}

#[derive(Debug, Serialize)]
pub struct RerankResult {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
    pub relevance_score: f64,
}

#[derive(Debug, Serialize)]
pub struct DocumentText {
    pub text: String,
}

pub async fn rerank(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RerankRequest>,
) -> ApiResult<Json<RerankResponse>> {
    let ready = state.ready()?;
    let config = state.config();
    let model = ready.check_model(req.model.as_deref())?;
    let spec = ready.task.scoring()?;
    let most = config.limits.max_pooling_inputs;
    if req.documents.is_empty() || req.documents.len() > most {
        return Err(ApiError::invalid(
            "documents",
            format!(
                "documents must hold between 1 and {most} documents (--max-pooling-inputs), \
                 got {}",
                req.documents.len()
            ),
        ));
    }
    let top_n = match req.top_n {
        None | Some(0) => req.documents.len(),
        Some(n) if n > 0 => (n as usize).min(req.documents.len()),
        Some(n) => {
            return Err(ApiError::invalid(
                "top_n",
                format!("top_n must be positive (or 0 for all), got {n}"),
            ));
        }
    };
    let documents: Vec<String> = req.documents.into_iter().map(Document::into_text).collect();
    let pairs = documents
        .iter()
        .map(|d| (req.query.clone(), d.clone()))
        .collect();
    let names = FieldNames {
        prompt: "documents",
        ..FieldNames::COMPLETIONS
    };
    let scored = score_pairs(&ready, config, spec, pairs, req.instruction, names).await?;
    let total_tokens = scored.iter().map(|s| s.tokens).sum();
    let return_documents = req.return_documents.unwrap_or(true);
    let mut results: Vec<RerankResult> = scored
        .into_iter()
        .zip(documents)
        .enumerate()
        .map(|(index, (Scored { score, .. }, text))| RerankResult {
            index,
            document: return_documents.then_some(DocumentText { text }),
            relevance_score: score,
        })
        .collect();
    results.sort_by(|a, b| b.relevance_score.total_cmp(&a.relevance_score));
    results.truncate(top_n);
    Ok(Json(RerankResponse {
        id: random_id("rerank-"),
        model,
        usage: RerankUsage { total_tokens },
        results,
    }))
}
