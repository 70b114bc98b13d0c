//! `POST /v1/messages` (with or without `?beta=true`) and `POST /v1/messages/count_tokens`.
//! Failures are rendered in Anthropic's shape by the router's layer for these routes (see
//! [`super::error`]), so the handlers return the API's usual error type.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::error::prompt_too_long;
use super::input::{ChatForm, chat_form};
use super::render::MessageRenderer;
use super::types::{CountTokensRequest, MessagesRequest, OutputConfig, ThinkingConfig};
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{ApiJson, ApiJsonWith};
use crate::api::field_names::FieldNames;
use crate::api::generate::{self, Generation, MaxTokens, PromptSpec};
use crate::api::output;
use crate::api::request_builder::{self, random_id};
use crate::api::state::{AppState, Ready};
use crate::api::types::chat::{JsonSchemaFormat, ResponseFormat};
use crate::api::types::sampling::SamplingFields;
use crate::tokenizer::PromptEnd;

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJsonWith(req, sampling): ApiJsonWith<MessagesRequest, SamplingFields>,
) -> ApiResult<Response> {
    let (ready, model) = serve(&state, Some(&req.model))?;
    let config = state.config();
    // The Messages API has no `cache_salt`; the key still salts under
    // `--prefix-cache-salt-per-key`.
    let cache_salt = request_builder::cache_salt(config, &headers, None)?;
    let (req, (prompt, requests)) = generate::prepare(&state, &ready, req, |ready, config, req| {
        let form = chat_form(
            req.system.as_ref(),
            &req.messages,
            req.tools.as_deref(),
            req.tool_choice.as_ref(),
        )?;
        let response_format = output_format(req.output_config.as_ref())?;
        let mut spec = prompt_spec(&form, req.thinking.as_ref());
        spec.response_format = response_format.as_ref();
        let prompt = generate::render(ready, config, &spec)?;
        let generation = Generation {
            max_tokens: MaxTokens::Clamped(req.max_tokens),
            stop: req.stop_sequences.clone().unwrap_or_default(),
            sampling: sampling.into_overrides(),
            cache_salt,
        };
        let fields = generation.into_fields(ready, &prompt);
        let requests = generate::build(ready, config, &prompt, fields, false)?;
        Ok((prompt, requests))
    })
    .await
    .map_err(prompt_too_long)?;
    let events = generate::submit(&ready, config, &prompt.plan, requests)
        .await
        .map_err(prompt_too_long)?;
    let renderer = MessageRenderer::new(
        random_id("msg_"),
        model,
        prompt.ids.len(),
        prompt.tracker(config, false),
        ThinkingConfig::omits_text(req.thinking.as_ref()),
    );
    let streamed = req.stream.unwrap_or(false);
    output::respond(events, renderer, streamed, config.limits.sse_keep_alive).await
}

pub async fn count_tokens(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CountTokensRequest>,
) -> ApiResult<Json<Value>> {
    let (ready, _) = serve(&state, req.model.as_deref())?;
    let (_, prompt) = generate::prepare(&state, &ready, req, |ready, config, req| {
        let form = chat_form(
            req.system.as_ref(),
            &req.messages,
            req.tools.as_deref(),
            req.tool_choice.as_ref(),
        )?;
        generate::render(ready, config, &prompt_spec(&form, req.thinking.as_ref()))
    })
    .await
    .map_err(prompt_too_long)?;
    Ok(Json(json!({"input_tokens": prompt.ids.len()})))
}

/// The loaded model and the model name to report.
fn serve(state: &AppState, model: Option<&str>) -> ApiResult<(Arc<Ready>, String)> {
    let ready = state.ready()?;
    let model = ready.serve_model(model, state.config().strict_model_name)?;
    Ok((ready, model))
}

/// The turn of a Messages request: Qwen3 thinks only when `thinking` asks for it, as
/// Anthropic's models do.
fn prompt_spec<'a>(form: &'a ChatForm, thinking: Option<&ThinkingConfig>) -> PromptSpec<'a> {
    PromptSpec {
        messages: &form.messages,
        tools: form.catalog.chat_tools(),
        tool_choice: form.tool_choice.as_ref(),
        parallel_tool_calls: form.parallel_tool_calls,
        response_format: None,
        template_kwargs: None,
        enable_thinking: Some(ThinkingConfig::enabled(thinking)),
        end: PromptEnd::Generation(true),
        names: FieldNames::MESSAGES,
    }
}

/// `output_config.format` as the chat `response_format` the guided decoder reads.
fn output_format(config: Option<&OutputConfig>) -> ApiResult<Option<ResponseFormat>> {
    let Some(format) = config.and_then(|c| c.format.as_ref()) else {
        return Ok(None);
    };
    if format.kind != "json_schema" || format.schema.is_none() {
        return Err(ApiError::invalid(
            "output_config.format",
            "output_config.format must be {\"type\": \"json_schema\", \"schema\": {...}}",
        ));
    }
    Ok(Some(ResponseFormat {
        kind: "json_schema".into(),
        json_schema: Some(JsonSchemaFormat {
            name: None,
            schema: format.schema.clone(),
            strict: Some(true),
        }),
    }))
}
