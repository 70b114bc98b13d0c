//! `POST /v1/embeddings`: each input (text or token ids) becomes a prefill-only engine request
//! whose last token's final hidden state, truncated to `dimensions` and normalized as the
//! checkpoint says ([`crate::weights::sentence_transformers`]), is its embedding. Inputs run in
//! the same steps as generation, at most `--max-choices` of one request at a time.

pub mod types;
pub mod vector;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use crate::api::blocking_pool;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::ApiJson;
use crate::api::field_names::{FieldNames, Named};
use crate::api::pooled;
use crate::api::prompt_length;
use crate::api::request_builder::{self, random_id};
use crate::api::state::{AppState, Ready, unix_now};
use crate::api::types::completions::PromptInput;
use crate::engine::{CheckedRequest, GenerationRequest, Pooling, rules};
use crate::error::RequestPart;
use types::{EmbeddingData, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage};

const NAMES: FieldNames = FieldNames::EMBEDDINGS;

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<EmbeddingRequest>,
) -> ApiResult<Json<EmbeddingResponse>> {
    let ready = state.ready()?;
    let config = state.config();
    let model = ready.check_model(req.model.as_deref())?;
    let normalize = ready.task.embedding()?.normalize;
    let count = req.input.len();
    let most = config.limits.max_pooling_inputs;
    if count == 0 || count > most {
        return Err(ApiError::invalid(
            "input",
            format!(
                "input must hold between 1 and {most} texts or token lists \
                 (--max-pooling-inputs), got {count}"
            ),
        ));
    }
    let dimensions = check_dimensions(req.dimensions, ready.engine.info().hidden_size)?;
    let cache_salt = request_builder::cache_salt(config, &headers, None)?;
    let add_special_tokens = req.add_special_tokens.unwrap_or(true);
    let requests = {
        let ready = ready.clone();
        blocking_pool::run(move || requests(&ready, req.input, add_special_tokens, cache_salt))
            .await??
    };
    let pooled = pooled::run(&ready, requests, config.limits.max_choices).await?;
    let format = req.encoding_format.unwrap_or_default();
    let prompt_tokens = pooled.iter().map(|(_, tokens)| tokens).sum();
    let data = pooled
        .into_iter()
        .enumerate()
        .map(|(index, (hidden, _))| EmbeddingData {
            object: "embedding",
            index,
            embedding: vector::encode(vector::embedding(hidden, dimensions, normalize), format),
        })
        .collect();
    Ok(Json(EmbeddingResponse {
        id: random_id("embd-"),
        object: "list",
        created: unix_now(),
        model,
        data,
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    }))
}

/// `dimensions`, if set, between 1 and the model's hidden size.
fn check_dimensions(dimensions: Option<i64>, hidden: usize) -> ApiResult<Option<usize>> {
    let Some(d) = dimensions else {
        return Ok(None);
    };
    match usize::try_from(d) {
        Ok(d) if (1..=hidden).contains(&d) => Ok(Some(d)),
        _ => Err(ApiError::invalid(
            "dimensions",
            format!("dimensions must be between 1 and {hidden} (the model's width), got {d}"),
        )),
    }
}

/// Each input tokenized (text) or checked (ids), as a checked prefill-only request. Blocking
/// work: runs on the pool.
fn requests(
    ready: &Ready,
    input: PromptInput,
    add_special_tokens: bool,
    cache_salt: Option<String>,
) -> ApiResult<Vec<CheckedRequest>> {
    let max_len = ready.max_model_len();
    let vocab = ready.vocab_size();
    let ids_of_text = |text: String| -> ApiResult<Vec<u32>> {
        prompt_length::check_text_fits(&ready.tokenizer, &text, max_len, NAMES.prompt)?;
        Ok(ready.tokenizer.encode(&text, add_special_tokens)?)
    };
    let checked_ids =
        |ids: Vec<i64>| rules::token_ids(ids, vocab, RequestPart::Prompt).named(&NAMES);
    let inputs: Vec<Vec<u32>> = match input {
        PromptInput::Text(text) => vec![ids_of_text(text)?],
        PromptInput::Texts(texts) => texts
            .into_iter()
            .map(ids_of_text)
            .collect::<ApiResult<_>>()?,
        PromptInput::Tokens(ids) => vec![checked_ids(ids)?],
        PromptInput::TokenLists(lists) => lists
            .into_iter()
            .map(checked_ids)
            .collect::<ApiResult<_>>()?,
    };
    inputs
        .into_iter()
        .map(|ids| {
            let mut request = GenerationRequest::pooled(ids, Pooling::LastHidden);
            request.cache_salt = cache_salt.clone();
            CheckedRequest::new(request, ready.engine.info()).named(&NAMES)
        })
        .collect()
}
