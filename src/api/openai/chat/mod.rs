//! `POST /v1/chat/completions`: parse → validate → render the prompt → submit → respond (JSON or
//! SSE, both from one renderer: [`render`]).

mod render;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::delivery::Delivery;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::ApiJsonWith;
use crate::api::field_names::FieldNames;
use crate::api::generate::{self, PromptSpec};
use crate::api::output;
use crate::api::request_builder::{self, check_stream_options, random_id};
use crate::api::state::{AppState, unix_now};
use crate::api::types::chat::ChatCompletionRequest;
use crate::api::types::generation::SharedGenerationFields;
use crate::api::types::sampling::SamplingFields;
use crate::tokenizer::PromptEnd;
use render::{ChatContext, ChatRenderer};

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJsonWith(req, (sampling, mut shared)): ApiJsonWith<
        ChatCompletionRequest,
        (SamplingFields, SharedGenerationFields),
    >,
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
    let logprobs = req.logprobs.unwrap_or(false);
    if !logprobs && req.top_logprobs.is_some_and(|n| n != 0) {
        return Err(ApiError::invalid(
            "top_logprobs",
            "when using top_logprobs, logprobs must be set to true",
        ));
    }
    // Errors about the output limit name the field the client used.
    let (max_tokens, names) = match req.max_completion_tokens {
        Some(m) => (
            Some(m),
            FieldNames::CHAT.with_output_limit("max_completion_tokens"),
        ),
        None => (req.max_tokens, FieldNames::CHAT),
    };
    let top_logprobs = logprobs.then(|| req.top_logprobs.unwrap_or(0));
    let cache_salt = request_builder::cache_salt(config, &headers, shared.cache_salt.take())?;
    let fields = shared.into_fields(sampling, max_tokens, top_logprobs, cache_salt);
    let streamed = req.stream.unwrap_or(false);
    let end = if continue_final {
        PromptEnd::ContinueFinal
    } else {
        PromptEnd::Generation(add_generation_prompt)
    };
    // The tool plan clones tool schemas and writes grammars, the prompt is rendered and
    // tokenized, the engine's rules read it: all sized by the request, all in one pool trip.
    let (req, (prompt, requests)) =
        generate::prepare(&state, &ready, req, move |ready, config, req| {
            let spec = PromptSpec {
                messages: &req.messages,
                tools: req.tools.as_deref().unwrap_or_default(),
                tool_choice: req.tool_choice.as_ref(),
                parallel_tool_calls: req.parallel_tool_calls,
                response_format: req.response_format.as_ref(),
                template_kwargs: req.chat_template_kwargs.as_ref(),
                enable_thinking: None,
                end,
                names,
            };
            let prompt = generate::render(ready, config, &spec)?;
            let requests = generate::build(ready, config, &prompt, fields, !streamed)?;
            Ok((prompt, requests))
        })
        .await?;
    let streams = generate::submit(&ready, config, &prompt.plan, requests).await?;

    let ctx = ChatContext {
        id: random_id("chatcmpl-"),
        created: unix_now(),
        model,
        tokenizer: ready.tokenizer.clone(),
        reasoning: prompt.reasoning(config),
        tool_calls: prompt.plan.calls.clone(),
        logprobs,
        echo: req
            .echo
            .unwrap_or(false)
            .then_some(prompt.final_assistant_text)
            .flatten(),
        prompt_tokens: prompt.ids.len(),
    };
    let delivery = Delivery::of(streamed, req.stream_options.as_ref());
    let renderer = ChatRenderer::new(ctx, streams.len(), delivery);
    output::respond(streams, renderer, streamed, config.limits.sse_keep_alive).await
}
