//! `POST /v1/completions`: raw prompts (text or token ids, one or several), JSON or SSE.
//! Choice `i` of prompt `p` has index `p * n + i`, as in OpenAI's API.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};

use crate::api::blocking_pool;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::ApiJsonWith;
use crate::api::logprobs::{clamp, token_text, top_map};
use crate::api::prompt_length;
use crate::api::request_builder::{self, random_id};
use crate::api::sse::{self, Renderer, abort_error, error_event, json_event};
use crate::api::state::{AppState, Ready, unix_now};
use crate::api::types::common::{StopReasonValue, UsageInfo};
use crate::api::types::completions::{
    CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse, PromptInput,
};
use crate::api::types::generation::{LogprobsField, SharedGenerationFields};
use crate::engine::{Event, EventStream, FinishReason, TokenLogprob, Usage, rules};
use crate::tokenizer::Tokenizer;

/// One prompt: its ids and its text (for `echo`).
struct Prompt {
    ids: Vec<u32>,
    text: String,
    /// Position in the request's prompt list.
    index: usize,
}

struct CompletionContext {
    id: String,
    created: i64,
    model: String,
    tokenizer: Arc<Tokenizer>,
    logprobs: bool,
    echo: bool,
    /// Per choice: its prompt's ids and text.
    prompts: Vec<Arc<Prompt>>,
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJsonWith(mut req, mut shared): ApiJsonWith<CompletionRequest, SharedGenerationFields>,
) -> ApiResult<Response> {
    let ready = state.ready()?;
    let config = state.config();
    let model = ready.check_model(req.model.as_deref())?;
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
    let prompts = {
        let ready = ready.clone();
        blocking_pool::run(move || prompts(&ready, input, add_special_tokens)).await??
    };
    let cache_salt = request_builder::cache_salt(config, &headers, shared.cache_salt.take())?;
    let mut requests = Vec::new();
    let mut choice_prompts = Vec::new();
    for prompt in prompts {
        let prompt = Arc::new(prompt);
        let fields = shared.clone().into_fields(
            Some((req.max_tokens.unwrap_or(16), "max_tokens")),
            LogprobsField::Completions(req.logprobs),
            cache_salt.clone(),
        );
        let built = request_builder::build(&ready, config, prompt.ids.clone(), "prompt", fields)?;
        choice_prompts.extend(built.iter().map(|_| prompt.clone()));
        requests.extend(built);
    }
    let echo = req.echo.unwrap_or(false);
    if !req.stream.unwrap_or(false) {
        request_builder::check_collected_logprobs(&ready, config, &requests, echo, "logprobs")?;
    }
    let streams = request_builder::submit(&ready, requests).await?;
    let ctx = CompletionContext {
        id: random_id("cmpl-"),
        created: unix_now(),
        model,
        tokenizer: ready.tokenizer.clone(),
        logprobs: req.logprobs.is_some(),
        echo,
        prompts: choice_prompts,
    };
    if req.stream.unwrap_or(false) {
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let continuous = include_usage
            && req
                .stream_options
                .as_ref()
                .and_then(|o| o.continuous_usage_stats)
                .unwrap_or(false);
        return Ok(sse::response(
            streams,
            CompletionStream::new(ctx, include_usage, continuous),
            config.limits.sse_keep_alive,
        ));
    }
    Ok(Json(collect(ctx, streams).await?).into_response())
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
        rules::prompt_fits(ids.len(), max_len, "prompt")?;
        let ids = rules::token_ids(ids, vocab, "prompt")?;
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

/// Builds the legacy logprobs arrays, tracking each token's offset in the choice text.
struct LogprobsBuilder {
    out: CompletionLogprobs,
}

impl LogprobsBuilder {
    fn new() -> Self {
        Self {
            out: CompletionLogprobs::default(),
        }
    }

    /// Prompt tokens echoed back: no logprobs are computed for them.
    fn prompt(&mut self, tokenizer: &Tokenizer, ids: &[u32], mut offset: usize) {
        for &id in ids {
            let (token, bytes) = token_text(tokenizer, id);
            self.out.tokens.push(token);
            self.out.token_logprobs.push(None);
            self.out.top_logprobs.push(None);
            self.out.text_offset.push(offset);
            offset += bytes.len();
        }
    }

    fn generated(&mut self, tokenizer: &Tokenizer, logprobs: &[TokenLogprob], offset: usize) {
        for lp in logprobs {
            self.out.tokens.push(token_text(tokenizer, lp.token_id).0);
            self.out.token_logprobs.push(Some(clamp(lp.logprob)));
            self.out
                .top_logprobs
                .push(Some(top_map(tokenizer, &lp.top)));
            self.out.text_offset.push(offset);
        }
    }

    fn take(&mut self) -> CompletionLogprobs {
        std::mem::take(&mut self.out)
    }
}

async fn collect(
    ctx: CompletionContext,
    streams: Vec<EventStream>,
) -> ApiResult<CompletionResponse> {
    let mut choices = Vec::with_capacity(streams.len());
    let mut prompt_tokens = 0;
    let mut completion_tokens = 0;
    let mut cached = 0;
    let mut counted_prompt: Option<usize> = None;
    // Every choice is read as it runs (a choice nobody reads would be parked by the engine).
    let drained = futures_util::future::join_all(streams.into_iter().map(EventStream::drain));
    for (index, events) in drained.await.into_iter().enumerate() {
        let mut events = events.into_iter();
        let prompt = &ctx.prompts[index];
        let mut text = if ctx.echo {
            prompt.text.clone()
        } else {
            String::new()
        };
        let mut logprobs = LogprobsBuilder::new();
        if ctx.echo && ctx.logprobs {
            logprobs.prompt(&ctx.tokenizer, &prompt.ids, 0);
        }
        let (reason, stop_reason, usage) = loop {
            match events.next() {
                Some(Event::Delta {
                    text: delta,
                    logprobs: lps,
                    ..
                }) => {
                    if ctx.logprobs {
                        logprobs.generated(&ctx.tokenizer, &lps, text.len());
                    }
                    text.push_str(&delta);
                }
                Some(Event::Finished {
                    reason,
                    stop_reason,
                    usage,
                }) => break (reason, stop_reason, usage),
                Some(Event::Error(message)) => return Err(ApiError::internal(message)),
                None => {
                    return Err(ApiError::internal(
                        "the engine stopped before the request finished",
                    ));
                }
            }
        };
        // Each prompt's tokens count once, however many choices it has.
        if counted_prompt != Some(prompt.index) {
            prompt_tokens += usage.prompt_tokens;
            cached += usage.cached_tokens;
            counted_prompt = Some(prompt.index);
        }
        completion_tokens += usage.completion_tokens;
        choices.push(CompletionChoice {
            index,
            text,
            logprobs: ctx.logprobs.then(|| logprobs.take()),
            finish_reason: Some(finish_reason(reason)?),
            stop_reason: StopReasonValue::from_engine(stop_reason.as_ref()),
        });
    }
    Ok(CompletionResponse {
        id: ctx.id,
        object: "text_completion",
        created: ctx.created,
        model: ctx.model,
        choices,
        usage: Some(UsageInfo::new(
            prompt_tokens,
            completion_tokens,
            Some(cached),
        )),
    })
}

fn finish_reason(reason: FinishReason) -> ApiResult<&'static str> {
    match reason {
        FinishReason::Stop => Ok("stop"),
        FinishReason::Length => Ok("length"),
        FinishReason::Abort => Err(abort_error()),
    }
}

struct CompletionStream {
    ctx: CompletionContext,
    /// Bytes of text sent per choice (for `text_offset`).
    sent: Vec<usize>,
    tokens: Vec<usize>,
    usage: Vec<Option<Usage>>,
    include_usage: bool,
    continuous_usage: bool,
}

impl CompletionStream {
    fn new(ctx: CompletionContext, include_usage: bool, continuous_usage: bool) -> Self {
        let n = ctx.prompts.len();
        Self {
            ctx,
            sent: vec![0; n],
            tokens: vec![0; n],
            usage: vec![None; n],
            include_usage,
            continuous_usage,
        }
    }

    fn prompt_tokens(&self) -> usize {
        let mut total = 0;
        let mut last = None;
        for p in &self.ctx.prompts {
            if last != Some(p.index) {
                last = Some(p.index);
                total += p.ids.len();
            }
        }
        total
    }

    fn chunk(&self, choice: Option<CompletionChoice>, usage: Option<UsageInfo>) -> SseEvent {
        let usage = usage.or_else(|| {
            self.continuous_usage
                .then(|| UsageInfo::new(self.prompt_tokens(), self.tokens.iter().sum(), None))
        });
        json_event(&CompletionResponse {
            id: self.ctx.id.clone(),
            object: "text_completion",
            created: self.ctx.created,
            model: self.ctx.model.clone(),
            choices: choice.into_iter().collect(),
            usage,
        })
    }
}

impl Renderer for CompletionStream {
    fn start(&mut self) -> Vec<SseEvent> {
        if !self.ctx.echo {
            return Vec::new();
        }
        let mut events = Vec::new();
        for index in 0..self.ctx.prompts.len() {
            let prompt = self.ctx.prompts[index].clone();
            let logprobs = self.ctx.logprobs.then(|| {
                let mut b = LogprobsBuilder::new();
                b.prompt(&self.ctx.tokenizer, &prompt.ids, 0);
                b.take()
            });
            self.sent[index] = prompt.text.len();
            events.push(self.chunk(
                Some(CompletionChoice {
                    index,
                    text: prompt.text.clone(),
                    logprobs,
                    finish_reason: None,
                    stop_reason: None,
                }),
                None,
            ));
        }
        events
    }

    fn event(&mut self, index: usize, event: Event) -> (Vec<SseEvent>, bool) {
        match event {
            Event::Delta {
                text,
                token_ids,
                logprobs,
            } => {
                self.tokens[index] += token_ids.len();
                if text.is_empty() && !self.ctx.logprobs {
                    return (Vec::new(), false);
                }
                let lps = self.ctx.logprobs.then(|| {
                    let mut b = LogprobsBuilder::new();
                    b.generated(&self.ctx.tokenizer, &logprobs, self.sent[index]);
                    b.take()
                });
                self.sent[index] += text.len();
                let choice = CompletionChoice {
                    index,
                    text,
                    logprobs: lps,
                    finish_reason: None,
                    stop_reason: None,
                };
                (vec![self.chunk(Some(choice), None)], false)
            }
            Event::Finished {
                reason,
                stop_reason,
                usage,
            } => {
                let finish = match finish_reason(reason) {
                    Ok(f) => f,
                    Err(e) => return (vec![error_event(&e)], true),
                };
                self.tokens[index] = usage.completion_tokens;
                self.usage[index] = Some(usage);
                let choice = CompletionChoice {
                    index,
                    text: String::new(),
                    logprobs: None,
                    finish_reason: Some(finish),
                    stop_reason: StopReasonValue::from_engine(stop_reason.as_ref()),
                };
                (vec![self.chunk(Some(choice), None)], false)
            }
            Event::Error(message) => (vec![error_event(&ApiError::internal(message))], true),
        }
    }

    fn all_finished(&self) -> bool {
        self.usage.iter().all(Option::is_some)
    }

    fn finish(&mut self) -> Vec<SseEvent> {
        if !self.include_usage {
            return Vec::new();
        }
        let completion = self
            .usage
            .iter()
            .flatten()
            .map(|u| u.completion_tokens)
            .sum();
        let cached = self
            .usage
            .first()
            .copied()
            .flatten()
            .map(|u| u.cached_tokens);
        let usage = UsageInfo::new(self.prompt_tokens(), completion, cached);
        vec![self.chunk(None, Some(usage))]
    }
}
