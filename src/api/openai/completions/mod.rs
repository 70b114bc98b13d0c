//! `POST /v1/completions`: raw prompts (text or token ids, one or several), JSON or SSE.
//! Choice `i` of prompt `p` has index `p * n + i`, as in OpenAI's API. One renderer makes both
//! forms ([`render`]).

mod render;

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::delivery::Delivery;
use crate::api::blocking_pool;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::ApiJsonWith;
use crate::api::field_names::{FieldNames, Named};
use crate::api::output;
use crate::api::prompt_length;
use crate::api::request_builder::{self, random_id};
use crate::api::state::{AppState, Ready, unix_now};
use crate::api::types::completions::{CompletionRequest, PromptInput};
use crate::api::types::generation::SharedGenerationFields;
use crate::api::types::sampling::SamplingFields;
use crate::engine::rules;
use crate::error::RequestPart;
use render::{CompletionContext, CompletionRenderer};

/// One prompt: its ids and its text (for `echo`).
pub struct Prompt {
    ids: Vec<u32>,
    text: String,
    /// Position in the request's prompt list.
    index: usize,
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJsonWith(mut req, (sampling, mut shared)): ApiJsonWith<
        CompletionRequest,
        (SamplingFields, SharedGenerationFields),
    >,
) -> ApiResult<Response> {
    let ready = state.ready()?;
    let config = state.config();
    let model = ready.check_model(req.model.as_deref())?;
    ready.task.check_generates()?;
    req.unsupported.refuse()?;
    request_builder::check_stream_options(req.stream, req.stream_options.is_some())?;
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "suffix is not supported"));
    }
    if let Some(best_of) = req.best_of
        && best_of != shared.n.unwrap_or(1)
    {
        return Err(ApiError::invalid(
            "best_of",
            "best_of must equal n (or be omitted)",
        ));
    }
    let count = req.prompt.len();
    if count > config.limits.max_prompts {
        return Err(ApiError::invalid(
            "prompt",
            format!(
                "at most {} prompts are allowed per request (--max-prompts)",
                config.limits.max_prompts
            ),
        ));
    }
    request_builder::check_fan_out(config, count, shared.n)?;
    let input = std::mem::replace(&mut req.prompt, PromptInput::Texts(Vec::new()));
    let add_special_tokens = req.add_special_tokens.unwrap_or(true);
    let cache_salt = request_builder::cache_salt(config, &headers, shared.cache_salt.take())?;
    let fields = move || {
        shared.clone().into_fields(
            sampling.clone(),
            Some(req.max_tokens.unwrap_or(16)),
            req.logprobs,
            cache_salt.clone(),
        )
    };
    let echo = req.echo.unwrap_or(false);
    let streamed = req.stream.unwrap_or(false);
    // Tokenizing, the engine's rules and the logprob bound are all sized by the request: one
    // trip to the pool.
    let (requests, choice_prompts) = {
        let (ready, state) = (ready.clone(), state.clone());
        blocking_pool::run(move || {
            let config = state.config();
            let mut requests = Vec::new();
            let mut choice_prompts = Vec::new();
            for prompt in prompts(&ready, input, add_special_tokens)? {
                let prompt = Arc::new(prompt);
                let built = request_builder::build(
                    &ready,
                    config,
                    prompt.ids.clone(),
                    &FieldNames::COMPLETIONS,
                    fields(),
                )?;
                choice_prompts.extend(built.iter().map(|_| prompt.clone()));
                requests.extend(built);
            }
            if !streamed {
                request_builder::check_collected_logprobs(
                    &ready,
                    config,
                    &requests,
                    echo,
                    &FieldNames::COMPLETIONS,
                )?;
            }
            Ok::<_, ApiError>((requests, choice_prompts))
        })
        .await??
    };
    let streams = request_builder::submit(&ready, requests, Vec::new())?;
    let ctx = CompletionContext {
        id: random_id("cmpl-"),
        created: unix_now(),
        model,
        tokenizer: ready.tokenizer.clone(),
        logprobs: req.logprobs.is_some(),
        echo,
        prompts: choice_prompts,
    };
    let delivery = Delivery::of(streamed, req.stream_options.as_ref());
    let renderer = CompletionRenderer::new(ctx, delivery);
    output::respond(streams, renderer, streamed, config.limits.sse_keep_alive).await
}

/// The prompts of a request, tokenized (text) or checked (token ids).
fn prompts(ready: &Ready, input: PromptInput, add_special_tokens: bool) -> ApiResult<Vec<Prompt>> {
    let max_len = ready.max_model_len();
    let from_text = |text: String| -> ApiResult<Prompt> {
        prompt_length::check_text_fits(&ready.tokenizer, &text, max_len, "prompt")?;
        Ok(Prompt {
            ids: ready.tokenizer.encode(&text, add_special_tokens)?,
            text,
            index: 0,
        })
    };
    let vocab = ready.vocab_size();
    let from_ids = |ids: Vec<i64>| -> ApiResult<Prompt> {
        let names = &FieldNames::COMPLETIONS;
        rules::prompt_fits(ids.len(), max_len).named(names)?;
        let ids = rules::token_ids(ids, vocab, RequestPart::Prompt).named(names)?;
        let text = ready.tokenizer.decode(&ids, false)?;
        Ok(Prompt {
            ids,
            text,
            index: 0,
        })
    };
    let prompts = match input {
        PromptInput::Text(text) => vec![from_text(text)?],
        PromptInput::Texts(texts) => texts.into_iter().map(from_text).collect::<ApiResult<_>>()?,
        PromptInput::Tokens(ids) => vec![from_ids(ids)?],
        PromptInput::TokenLists(lists) => {
            lists.into_iter().map(from_ids).collect::<ApiResult<_>>()?
        }
    };
    if prompts.is_empty() {
        return Err(ApiError::invalid("prompt", "prompt must not be empty"));
    }
    let mut prompts: Vec<Prompt> = prompts;
    for (i, p) in prompts.iter_mut().enumerate() {
        p.index = i;
    }
    Ok(prompts)
}
