//! `POST /v1/chat/completions`: parse → validate → render the prompt → submit → respond (JSON or
//! SSE, both from one renderer: [`render`]).

mod render;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::api::blocking_pool;
use crate::api::chat_prompt::render_checked;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::ApiJsonWith;
use crate::api::output;
use crate::api::request_builder::{self, check_stream_options, random_id};
use crate::api::state::{AppState, Ready, unix_now};
use crate::api::tools;
use crate::api::types::chat::ChatCompletionRequest;
use crate::api::types::generation::{LogprobsField, SharedGenerationFields};
use crate::parsers::prompt_opens_thinking;
use crate::tokenizer::PromptEnd;
use render::{ChatContext, ChatRenderer, Delivery};

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJsonWith(mut req, mut shared): ApiJsonWith<ChatCompletionRequest, SharedGenerationFields>,
) -> ApiResult<Response> {
    let ready = state.ready()?;
    let config = state.config();
    let model = ready.check_model(req.model.as_deref())?;
    req.unsupported.refuse()?;
    check_stream_options(req.stream, req.stream_options.is_some())?;
    let add_generation_prompt = req.add_generation_prompt.unwrap_or(true);
    let continue_final = req.continue_final_message.unwrap_or(false);
    if continue_final && add_generation_prompt {
        return Err(ApiError::invalid(
            "continue_final_message",
            "Cannot set both `continue_final_message` and `add_generation_prompt` to true.",
        ));
    }
    // The tool plan clones tool schemas and writes grammars, the prompt is rendered and
    // tokenized: all sized by the request, so all on the pool.
    let (plan, messages, prompt, prompt_ids) = {
        let (ready, state) = (ready.clone(), state.clone());
        let raw = std::mem::take(&mut req.messages);
        let tools = req.tools.take();
        let tool_choice = req.tool_choice.take();
        let parallel_tool_calls = req.parallel_tool_calls;
        let response_format = req.response_format.take();
        let kwargs = req.chat_template_kwargs.take().unwrap_or_default();
        let plain_content = !config.allow_special_tokens_in_content;
        blocking_pool::run(move || {
            let plan = tools::plan(
                tools.as_deref(),
                tool_choice.as_ref(),
                parallel_tool_calls,
                response_format.as_ref(),
                state.config(),
            )?;
            let (messages, prompt, ids) = render_prompt(
                &ready,
                &raw,
                tools.as_deref(),
                &kwargs,
                continue_final,
                add_generation_prompt,
                plain_content,
            )?;
            Ok::<_, ApiError>((plan, messages, prompt, ids))
        })
        .await??
    };
    let prompt_tokens = prompt_ids.len();

    let logprobs = req.logprobs.unwrap_or(false);
    if !logprobs && req.top_logprobs.is_some_and(|n| n != 0) {
        return Err(ApiError::invalid(
            "top_logprobs",
            "when using top_logprobs, logprobs must be set to true",
        ));
    }
    let max_tokens = req
        .max_completion_tokens
        .map(|m| (m, "max_completion_tokens"))
        .or(req.max_tokens.map(|m| (m, "max_tokens")));
    let logprobs_field = if logprobs {
        LogprobsField::Chat(req.top_logprobs.unwrap_or(0))
    } else {
        LogprobsField::None
    };
    let cache_salt = request_builder::cache_salt(config, &headers, shared.cache_salt.take())?;
    let fields = shared.into_fields(max_tokens, logprobs_field, cache_salt);
    let requests = request_builder::build(&ready, config, prompt_ids, "messages", fields)?;
    if !req.stream.unwrap_or(false) {
        request_builder::check_collected_logprobs(
            &ready,
            config,
            &requests,
            false,
            "top_logprobs",
        )?;
    }
    let streams =
        request_builder::submit_guided(&ready, &config.grammar, requests, plan.guided).await?;

    let echo = req
        .echo
        .unwrap_or(false)
        .then(|| messages.last())
        .flatten()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
        .and_then(|m| m.get("content").and_then(Value::as_str))
        .map(str::to_owned);
    let ctx = ChatContext {
        id: random_id("chatcmpl-"),
        created: unix_now(),
        model,
        tokenizer: ready.tokenizer.clone(),
        reasoning: config
            .reasoning_parser
            .then(|| prompt_opens_thinking(&prompt)),
        parse_tools: plan.parse_calls,
        logprobs,
        echo,
        prompt_tokens,
    };
    if req.stream.unwrap_or(false) {
        let options = req.stream_options.unwrap_or_default();
        let include_usage = options.include_usage.unwrap_or(false);
        let delivery = Delivery::Stream {
            include_usage,
            continuous_usage: include_usage && options.continuous_usage_stats.unwrap_or(false),
        };
        let renderer = ChatRenderer::new(ctx, streams.len(), delivery);
        return Ok(output::stream(
            streams,
            renderer,
            config.limits.sse_keep_alive,
        ));
    }
    let renderer = ChatRenderer::new(ctx, streams.len(), Delivery::Whole);
    let response = output::collect(streams, renderer).await.into_response()?;
    Ok(Json(response).into_response())
}

/// The checked messages, the rendered prompt and its ids (blocking work: see [`blocking_pool`]).
fn render_prompt(
    ready: &Ready,
    raw: &[Value],
    tools: Option<&[Value]>,
    kwargs: &Map<String, Value>,
    continue_final: bool,
    add_generation_prompt: bool,
    plain_content: bool,
) -> ApiResult<(Vec<Value>, String, Vec<u32>)> {
    let end = if continue_final {
        PromptEnd::ContinueFinal
    } else {
        PromptEnd::Generation(add_generation_prompt)
    };
    let (messages, prompt) = render_checked(ready, raw, tools, kwargs, end, plain_content)?;
    let ids = prompt.encode(&ready.tokenizer, false)?;
    Ok((messages, prompt.text, ids))
}
