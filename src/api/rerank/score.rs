//! `POST /v1/score` (also `/score`): vLLM's pair scoring. `text_1` is the query side, `text_2`
//! the documents: one query against each document, or lists of equal length scored pairwise.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::score_pairs;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::ApiJson;
use crate::api::field_names::FieldNames;
use crate::api::request_builder::random_id;
use crate::api::state::{AppState, unix_now};

#[derive(Debug, Deserialize)]
pub struct ScoreRequest {
    pub model: Option<String>,
    pub text_1: Texts,
    pub text_2: Texts,
    /// The reranker's instruction (default: its model card's web-search one).
    pub instruction: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Texts {
    One(String),
    Many(Vec<String>),
}

impl Texts {
    fn into_vec(self) -> Vec<String> {
        match self {
            Texts::One(text) => vec![text],
            Texts::Many(texts) => texts,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ScoreResponse {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub data: Vec<ScoreData>,
    pub usage: ScoreUsage,
}

#[derive(Debug, Serialize)]
pub struct ScoreData {
    pub index: usize,
    pub object: &'static str,
    pub score: f64,
}

#[derive(Debug, Serialize)]
pub struct ScoreUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
    pub completion_tokens: usize,
}

pub async fn score(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ScoreRequest>,
) -> ApiResult<Json<ScoreResponse>> {
    let ready = state.ready()?;
    let config = state.config();
    let model = ready.check_model(req.model.as_deref())?;
    let spec = ready.task.scoring()?;
    let pairs = pairs(req.text_1.into_vec(), req.text_2.into_vec())?;
    let most = config.limits.max_pooling_inputs;
    if pairs.len() > most {
        return Err(ApiError::invalid(
            "text_2",
            format!(
                "at most {most} pairs may be scored at once (--max-pooling-inputs), got {}",
                pairs.len()
            ),
        ));
    }
    let names = FieldNames {
        prompt: "text_2",
        ..FieldNames::COMPLETIONS
    };
    let scored = score_pairs(&ready, config, spec, pairs, req.instruction, names).await?;
    let prompt_tokens = scored.iter().map(|s| s.tokens).sum();
    Ok(Json(ScoreResponse {
        id: random_id("score-"),
        object: "list",
        created: unix_now(),
        model,
        data: scored
            .into_iter()
            .enumerate()
            .map(|(index, s)| ScoreData {
                index,
                object: "score",
                score: s.score,
            })
            .collect(),
        usage: ScoreUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
            completion_tokens: 0,
        },
    }))
}

/// One query against every document, or pairwise when both sides are lists of one length.
fn pairs(queries: Vec<String>, documents: Vec<String>) -> ApiResult<Vec<(String, String)>> {
    if queries.is_empty() || documents.is_empty() {
        return Err(ApiError::invalid(
            "text_1",
            "text_1 and text_2 must each hold at least one text",
        ));
    }
    match queries.as_slice() {
        [query] => Ok(documents.into_iter().map(|d| (query.clone(), d)).collect()),
        _ if queries.len() == documents.len() => Ok(queries.into_iter().zip(documents).collect()),
        _ => Err(ApiError::invalid(
            "text_2",
            format!(
                "text_1 holds {} texts and text_2 {}: give one text_1, or lists of one length",
                queries.len(),
                documents.len()
            ),
        )),
    }
}
