//! `POST /v1/chat/completions`: parse → validate → render the prompt → submit → respond (JSON or
//! SSE).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::api::blocking_pool;
use crate::api::chat_prompt::render_checked;
use crate::api::choice_parser::{ChoiceDelta, ChoiceParser, MessageBuilder};
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::ApiJsonWith;
use crate::api::logprobs::chat_entry;
use crate::api::request_builder::{self, check_stream_options, random_id};
use crate::api::sse::{self, Renderer, abort_error, error_event, json_event};
use crate::api::state::{AppState, Ready, unix_now};
use crate::api::tools;
use crate::api::types::chat::{
    ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatDelta,
    ChatLogprobToken, ChatLogprobs, ChatMessage, ChunkChoice,
};
use crate::api::types::common::{StopReasonValue, UsageInfo};
use crate::api::types::generation::{LogprobsField, SharedGenerationFields};
use crate::engine::{Event, EventStream, FinishReason, Usage};
use crate::parsers::prompt_opens_thinking;
use crate::tokenizer::{PromptEnd, Tokenizer};

/// What every choice of one response shares.
struct ChatContext {
    id: String,
    created: i64,
    model: String,
    tokenizer: Arc<Tokenizer>,
    /// `Some(prompt_opened)` when the reasoning parser is on.
    reasoning: Option<bool>,
    parse_tools: bool,
    logprobs: bool,
    /// `echo`: the final assistant message's text, repeated before the output.
    echo: Option<String>,
    prompt_tokens: usize,
}

impl ChatContext {
    fn parser(&self) -> ChoiceParser {
        ChoiceParser::new(self.reasoning, self.parse_tools)
    }

    fn logprob_entries(&self, logprobs: &[crate::engine::TokenLogprob]) -> Vec<ChatLogprobToken> {
        if !self.logprobs {
            return Vec::new();
        }
        logprobs
            .iter()
            .map(|lp| chat_entry(&self.tokenizer, lp))
            .collect()
    }
}

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
        let renderer = ChatStream::new(
            ctx,
            streams.len(),
            include_usage,
            include_usage && options.continuous_usage_stats.unwrap_or(false),
        );
        return Ok(sse::response(
            streams,
            renderer,
            config.limits.sse_keep_alive,
        ));
    }
    Ok(Json(collect(ctx, streams).await?).into_response())
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

/// One finished choice of a non-streamed response.
struct Collected {
    message: MessageBuilder,
    logprobs: Vec<ChatLogprobToken>,
    finish_reason: &'static str,
    stop_reason: Option<StopReasonValue>,
    usage: Usage,
}

async fn collect(ctx: ChatContext, streams: Vec<EventStream>) -> ApiResult<ChatCompletionResponse> {
    // Every choice is read as it runs (a choice nobody reads would be parked by the engine).
    let choices = futures_util::future::try_join_all(
        streams
            .into_iter()
            .map(|stream| collect_choice(&ctx, stream)),
    )
    .await?;
    let prompt_tokens = choices.first().map_or(0, |c| c.usage.prompt_tokens);
    let cached = choices.first().map_or(0, |c| c.usage.cached_tokens);
    let completion_tokens = choices.iter().map(|c| c.usage.completion_tokens).sum();
    let choices = choices
        .into_iter()
        .enumerate()
        .map(|(index, c)| {
            let MessageBuilder {
                reasoning,
                content,
                tool_calls,
            } = c.message;
            let content = format!("{}{content}", ctx.echo.as_deref().unwrap_or(""));
            let reasoning = (!reasoning.is_empty()).then_some(reasoning);
            ChatChoice {
                index,
                message: ChatMessage {
                    role: "assistant",
                    content: (!content.is_empty() || tool_calls.is_empty()).then_some(content),
                    reasoning_content: reasoning.clone(),
                    reasoning,
                    tool_calls,
                },
                logprobs: ctx.logprobs.then_some(ChatLogprobs {
                    content: c.logprobs,
                }),
                finish_reason: c.finish_reason,
                stop_reason: c.stop_reason,
            }
        })
        .collect();
    Ok(ChatCompletionResponse {
        id: ctx.id,
        object: "chat.completion",
        created: ctx.created,
        model: ctx.model,
        choices,
        usage: UsageInfo::new(prompt_tokens, completion_tokens, Some(cached)),
    })
}

async fn collect_choice(ctx: &ChatContext, mut stream: EventStream) -> ApiResult<Collected> {
    let mut parser = ctx.parser();
    let mut message = MessageBuilder::default();
    let mut logprobs = Vec::new();
    loop {
        match stream.recv().await {
            Some(Event::Delta {
                text,
                logprobs: lps,
                ..
            }) => {
                logprobs.extend(ctx.logprob_entries(&lps));
                message.add(parser.push(&text));
            }
            Some(Event::Finished {
                reason,
                stop_reason,
                usage,
            }) => {
                message.add(end_output(&mut parser, reason));
                return Ok(Collected {
                    finish_reason: finish_reason(reason, parser.called_tools())?,
                    stop_reason: StopReasonValue::from_engine(stop_reason.as_ref()),
                    message,
                    logprobs,
                    usage,
                });
            }
            Some(Event::Error(message)) => return Err(ApiError::internal(message)),
            None => {
                return Err(ApiError::internal(
                    "the engine stopped before the request finished",
                ));
            }
        }
    }
}

/// The parser's last delta: an output cut by the length limit leaks no tool-call markup.
fn end_output(parser: &mut ChoiceParser, reason: FinishReason) -> ChoiceDelta {
    if reason == FinishReason::Length {
        parser.finish_cut()
    } else {
        parser.finish()
    }
}

/// OpenAI's finish reason; an abort (shutdown) is an error, not a finish.
fn finish_reason(reason: FinishReason, called_tools: bool) -> ApiResult<&'static str> {
    match reason {
        FinishReason::Stop if called_tools => Ok("tool_calls"),
        FinishReason::Stop => Ok("stop"),
        FinishReason::Length => Ok("length"),
        FinishReason::Abort => Err(abort_error()),
    }
}

/// Streamed chat: role chunk, deltas, finish chunk per choice; then usage and `[DONE]`.
struct ChatStream {
    ctx: ChatContext,
    parsers: Vec<ChoiceParser>,
    /// Logprobs of tokens whose text is not out yet; they ride on the next chunk.
    pending_logprobs: Vec<Vec<ChatLogprobToken>>,
    tokens: Vec<usize>,
    usage: Vec<Option<Usage>>,
    include_usage: bool,
    continuous_usage: bool,
}

impl ChatStream {
    fn new(ctx: ChatContext, n: usize, include_usage: bool, continuous_usage: bool) -> Self {
        Self {
            parsers: (0..n).map(|_| ctx.parser()).collect(),
            pending_logprobs: vec![Vec::new(); n],
            tokens: vec![0; n],
            usage: vec![None; n],
            ctx,
            include_usage,
            continuous_usage,
        }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> SseEvent {
        let usage = self
            .continuous_usage
            .then(|| UsageInfo::new(self.ctx.prompt_tokens, self.tokens.iter().sum(), None));
        json_event(&ChatCompletionChunk {
            id: &self.ctx.id,
            object: "chat.completion.chunk",
            created: self.ctx.created,
            model: &self.ctx.model,
            choices,
            usage,
        })
    }

    fn take_logprobs(&mut self, index: usize) -> Option<ChatLogprobs> {
        if !self.ctx.logprobs || self.pending_logprobs[index].is_empty() {
            return None;
        }
        Some(ChatLogprobs {
            content: std::mem::take(&mut self.pending_logprobs[index]),
        })
    }

    /// Chunks for a parsed delta: text first, then each tool-call piece on its own.
    fn delta_chunks(&mut self, index: usize, delta: ChoiceDelta) -> Vec<SseEvent> {
        let mut deltas = Vec::new();
        if !delta.content.is_empty() || !delta.reasoning.is_empty() {
            let reasoning = (!delta.reasoning.is_empty()).then_some(delta.reasoning);
            deltas.push(ChatDelta {
                content: (!delta.content.is_empty()).then_some(delta.content),
                reasoning_content: reasoning.clone(),
                reasoning,
                ..Default::default()
            });
        }
        for call in delta.tool_calls {
            deltas.push(ChatDelta {
                tool_calls: Some(vec![call]),
                ..Default::default()
            });
        }
        let mut events = Vec::with_capacity(deltas.len());
        for delta in deltas {
            let logprobs = self.take_logprobs(index);
            events.push(self.chunk(vec![ChunkChoice {
                index,
                delta,
                logprobs,
                finish_reason: None,
                stop_reason: None,
            }]));
        }
        events
    }
}

impl Renderer for ChatStream {
    fn start(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for index in 0..self.parsers.len() {
            events.push(self.chunk(vec![ChunkChoice {
                index,
                delta: ChatDelta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    ..Default::default()
                },
                logprobs: None,
                finish_reason: None,
                stop_reason: None,
            }]));
            if let Some(echo) = self.ctx.echo.clone().filter(|e| !e.is_empty()) {
                events.push(self.chunk(vec![ChunkChoice {
                    index,
                    delta: ChatDelta {
                        content: Some(echo),
                        ..Default::default()
                    },
                    logprobs: None,
                    finish_reason: None,
                    stop_reason: None,
                }]));
            }
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
                let entries = self.ctx.logprob_entries(&logprobs);
                self.pending_logprobs[index].extend(entries);
                let delta = self.parsers[index].push(&text);
                (self.delta_chunks(index, delta), false)
            }
            Event::Finished {
                reason,
                stop_reason,
                usage,
            } => {
                let delta = end_output(&mut self.parsers[index], reason);
                let mut events = self.delta_chunks(index, delta);
                let finish = match finish_reason(reason, self.parsers[index].called_tools()) {
                    Ok(f) => f,
                    Err(e) => {
                        events.push(error_event(&e));
                        return (events, true);
                    }
                };
                self.tokens[index] = usage.completion_tokens;
                self.usage[index] = Some(usage);
                let logprobs = self.take_logprobs(index);
                events.push(self.chunk(vec![ChunkChoice {
                    index,
                    delta: ChatDelta::default(),
                    logprobs,
                    finish_reason: Some(finish),
                    stop_reason: StopReasonValue::from_engine(stop_reason.as_ref()),
                }]));
                (events, false)
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
        let usages: Vec<Usage> = self.usage.iter().flatten().copied().collect();
        let prompt = usages
            .first()
            .map_or(self.ctx.prompt_tokens, |u| u.prompt_tokens);
        let cached = usages.first().map(|u| u.cached_tokens);
        let completion = usages.iter().map(|u| u.completion_tokens).sum();
        let usage = UsageInfo::new(prompt, completion, cached);
        vec![json_event(&ChatCompletionChunk {
            id: &self.ctx.id,
            object: "chat.completion.chunk",
            created: self.ctx.created,
            model: &self.ctx.model,
            choices: Vec::new(),
            usage: Some(usage),
        })]
    }
}
