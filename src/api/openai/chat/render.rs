//! Chat completions' output: engine events → chunk choices (role, deltas, finish per choice) →
//! either SSE chunks (then usage and `[DONE]`) or, for a response sent whole, their fold into
//! one message per choice. Both forms come from the same chunk choices, so a streamed answer
//! concatenates to exactly the non-streamed one (tool-call ids included).

use std::sync::Arc;

use axum::response::sse::Event as SseEvent;

use crate::api::error::{ApiError, ApiResult};
use crate::api::logprobs::chat_entry;
use crate::api::output::Renderer;
use crate::api::output::parser::{OutputDelta, OutputParser};
use crate::api::request_builder::random_id;
use crate::api::sse::{abort_error, done_event, error_event, json_event};
use crate::api::types::chat::{
    ChatChoice, ChatCompletionChunk, ChatCompletionResponse, ChatDelta, ChatLogprobToken,
    ChatLogprobs, ChatMessage, ChunkChoice, FunctionCall, FunctionChunk, ToolCall, ToolCallChunk,
};
use crate::api::types::common::{StopReasonValue, UsageInfo};
use crate::engine::{Event, FinishReason, TokenLogprob, Usage};
use crate::parsers::ToolCallDelta;
use crate::tokenizer::Tokenizer;

/// What every choice of one response shares.
pub struct ChatContext {
    pub id: String,
    pub created: i64,
    pub model: String,
    pub tokenizer: Arc<Tokenizer>,
    /// `Some(prompt_opened)` when the reasoning parser is on.
    pub reasoning: Option<bool>,
    pub parse_tools: bool,
    pub logprobs: bool,
    /// `echo`: the final assistant message's text, repeated before the output.
    pub echo: Option<String>,
    pub prompt_tokens: usize,
}

impl ChatContext {
    fn logprob_entries(&self, logprobs: &[TokenLogprob]) -> Vec<ChatLogprobToken> {
        if !self.logprobs {
            return Vec::new();
        }
        logprobs
            .iter()
            .map(|lp| chat_entry(&self.tokenizer, lp))
            .collect()
    }
}

/// How the response goes out.
pub enum Delivery {
    /// SSE chunks; `include_usage`: a usage chunk before `[DONE]`; `continuous_usage`: usage
    /// on every chunk too.
    Stream {
        include_usage: bool,
        continuous_usage: bool,
    },
    /// One JSON object, folded from the chunk choices.
    Whole,
}

/// One choice as it runs.
struct Choice {
    parser: OutputParser,
    /// Logprobs of tokens whose text is not out yet; they ride on the next chunk.
    pending_logprobs: Vec<ChatLogprobToken>,
    tokens: usize,
    usage: Option<Usage>,
    /// The fold of this choice's chunk choices (a response sent whole).
    message: FoldedMessage,
}

#[derive(Default)]
struct FoldedMessage {
    reasoning: String,
    content: String,
    tool_calls: Vec<ToolCall>,
    logprobs: Vec<ChatLogprobToken>,
    finish_reason: Option<&'static str>,
    stop_reason: Option<StopReasonValue>,
}

impl FoldedMessage {
    fn add(&mut self, piece: ChunkChoice) {
        let ChatDelta {
            content,
            reasoning,
            tool_calls,
            ..
        } = piece.delta;
        self.content.push_str(content.as_deref().unwrap_or(""));
        self.reasoning.push_str(reasoning.as_deref().unwrap_or(""));
        for chunk in tool_calls.into_iter().flatten() {
            match chunk.id {
                Some(id) => self.tool_calls.push(ToolCall {
                    id,
                    kind: "function",
                    function: FunctionCall {
                        name: chunk.function.name.unwrap_or_default(),
                        arguments: chunk.function.arguments,
                    },
                }),
                None => {
                    if let Some(call) = self.tool_calls.get_mut(chunk.index) {
                        call.function.arguments.push_str(&chunk.function.arguments);
                    }
                }
            }
        }
        if let Some(logprobs) = piece.logprobs {
            self.logprobs.extend(logprobs.content);
        }
        if piece.finish_reason.is_some() {
            self.finish_reason = piece.finish_reason;
            self.stop_reason = piece.stop_reason;
        }
    }
}

pub struct ChatRenderer {
    ctx: ChatContext,
    choices: Vec<Choice>,
    delivery: Delivery,
    failed: Option<ApiError>,
}

impl ChatRenderer {
    pub fn new(ctx: ChatContext, n: usize, delivery: Delivery) -> Self {
        let choices = (0..n)
            .map(|_| Choice {
                parser: OutputParser::new(ctx.reasoning, ctx.parse_tools),
                pending_logprobs: Vec::new(),
                tokens: 0,
                usage: None,
                message: FoldedMessage::default(),
            })
            .collect();
        Self {
            ctx,
            choices,
            delivery,
            failed: None,
        }
    }

    /// The response sent whole; the error when it failed.
    pub fn into_response(self) -> ApiResult<ChatCompletionResponse> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let usages: Vec<Usage> = self.choices.iter().filter_map(|c| c.usage).collect();
        let prompt_tokens = usages.first().map_or(0, |u| u.prompt_tokens);
        let cached = usages.first().map_or(0, |u| u.cached_tokens);
        let completion_tokens = usages.iter().map(|u| u.completion_tokens).sum();
        let logprobs = self.ctx.logprobs;
        let choices = self
            .choices
            .into_iter()
            .enumerate()
            .map(|(index, c)| {
                let FoldedMessage {
                    reasoning,
                    content,
                    tool_calls,
                    logprobs: entries,
                    finish_reason,
                    stop_reason,
                } = c.message;
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
                    logprobs: logprobs.then_some(ChatLogprobs { content: entries }),
                    finish_reason: finish_reason.unwrap_or("stop"),
                    stop_reason,
                }
            })
            .collect();
        Ok(ChatCompletionResponse {
            id: self.ctx.id,
            object: "chat.completion",
            created: self.ctx.created,
            model: self.ctx.model,
            choices,
            usage: UsageInfo::new(prompt_tokens, completion_tokens, Some(cached)),
        })
    }

    /// Sends `pieces` (SSE) or folds them into their choices' messages (whole).
    fn deliver(&mut self, pieces: Vec<ChunkChoice>) -> Vec<SseEvent> {
        if let Delivery::Whole = self.delivery {
            for piece in pieces {
                self.choices[piece.index].message.add(piece);
            }
            return Vec::new();
        }
        pieces.into_iter().map(|p| self.chunk(vec![p])).collect()
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> SseEvent {
        let continuous = matches!(
            self.delivery,
            Delivery::Stream {
                continuous_usage: true,
                ..
            }
        );
        let usage = continuous.then(|| {
            let tokens = self.choices.iter().map(|c| c.tokens).sum();
            UsageInfo::new(self.ctx.prompt_tokens, tokens, None)
        });
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
        let pending = &mut self.choices[index].pending_logprobs;
        if !self.ctx.logprobs || pending.is_empty() {
            return None;
        }
        Some(ChatLogprobs {
            content: std::mem::take(pending),
        })
    }

    /// The chunk choices of a parsed delta: text first, then each tool-call piece on its own.
    fn pieces(&mut self, index: usize, delta: OutputDelta) -> Vec<ChunkChoice> {
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
            let call = wire_call(call);
            deltas.push(ChatDelta {
                tool_calls: Some(vec![call]),
                ..Default::default()
            });
        }
        deltas
            .into_iter()
            .map(|delta| ChunkChoice {
                index,
                delta,
                logprobs: self.take_logprobs(index),
                finish_reason: None,
                stop_reason: None,
            })
            .collect()
    }

    /// The last chunk choices of choice `index`; `cut`: it ended at its token limit.
    fn finished(
        &mut self,
        index: usize,
        cut: bool,
        stop: Option<StopReasonValue>,
        usage: Usage,
    ) -> Vec<ChunkChoice> {
        let parser = &mut self.choices[index].parser;
        // An output cut by the length limit leaks no tool-call markup.
        let delta = if cut {
            parser.finish_cut()
        } else {
            parser.finish()
        };
        let mut pieces = self.pieces(index, delta);
        let finish = if cut {
            "length"
        } else if self.choices[index].parser.called_tools() {
            "tool_calls"
        } else {
            "stop"
        };
        let choice = &mut self.choices[index];
        choice.tokens = usage.completion_tokens;
        choice.usage = Some(usage);
        pieces.push(ChunkChoice {
            index,
            delta: ChatDelta::default(),
            logprobs: self.take_logprobs(index),
            finish_reason: Some(finish),
            stop_reason: stop,
        });
        pieces
    }
}

impl Renderer for ChatRenderer {
    type Event = SseEvent;

    fn start(&mut self) -> Vec<SseEvent> {
        let echo = self.ctx.echo.clone().filter(|e| !e.is_empty());
        let mut pieces = Vec::new();
        for index in 0..self.choices.len() {
            pieces.push(ChunkChoice {
                index,
                delta: ChatDelta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    ..Default::default()
                },
                logprobs: None,
                finish_reason: None,
                stop_reason: None,
            });
            if let Some(echo) = echo.clone() {
                pieces.push(ChunkChoice {
                    index,
                    delta: ChatDelta {
                        content: Some(echo),
                        ..Default::default()
                    },
                    logprobs: None,
                    finish_reason: None,
                    stop_reason: None,
                });
            }
        }
        self.deliver(pieces)
    }

    fn on_engine(&mut self, index: usize, event: Event) -> Vec<SseEvent> {
        if self.failed.is_some() {
            return Vec::new();
        }
        match event {
            Event::Delta {
                text,
                token_ids,
                logprobs,
            } => {
                let entries = self.ctx.logprob_entries(&logprobs);
                let choice = &mut self.choices[index];
                choice.tokens += token_ids.len();
                choice.pending_logprobs.extend(entries);
                let delta = choice.parser.push(&text);
                let pieces = self.pieces(index, delta);
                self.deliver(pieces)
            }
            Event::Finished {
                reason: FinishReason::Abort,
                ..
            } => self.fail(&abort_error()),
            Event::Finished {
                reason,
                stop_reason,
                usage,
            } => {
                let stop = StopReasonValue::from_engine(stop_reason.as_ref());
                let cut = reason == FinishReason::Length;
                let pieces = self.finished(index, cut, stop, usage);
                self.deliver(pieces)
            }
            Event::Error(message) => self.fail(&ApiError::internal(message)),
        }
    }

    fn fail(&mut self, error: &ApiError) -> Vec<SseEvent> {
        if self.failed.is_some() {
            return Vec::new();
        }
        self.failed = Some(error.clone());
        vec![error_event(error)]
    }

    fn is_finished(&self) -> bool {
        self.failed.is_some() || self.choices.iter().all(|c| c.usage.is_some())
    }

    fn end(&mut self) -> Vec<SseEvent> {
        let Delivery::Stream { include_usage, .. } = self.delivery else {
            return Vec::new();
        };
        let mut events = Vec::new();
        if include_usage && self.failed.is_none() {
            let usages: Vec<Usage> = self.choices.iter().filter_map(|c| c.usage).collect();
            let prompt = usages
                .first()
                .map_or(self.ctx.prompt_tokens, |u| u.prompt_tokens);
            let cached = usages.first().map(|u| u.cached_tokens);
            let completion = usages.iter().map(|u| u.completion_tokens).sum();
            events.push(json_event(&ChatCompletionChunk {
                id: &self.ctx.id,
                object: "chat.completion.chunk",
                created: self.ctx.created,
                model: &self.ctx.model,
                choices: Vec::new(),
                usage: Some(UsageInfo::new(prompt, completion, cached)),
            }));
        }
        events.push(done_event());
        events
    }

    fn to_sse(event: SseEvent) -> SseEvent {
        event
    }
}

/// A tool-call delta in OpenAI's shape: a call's first piece gets its `call_…` id.
fn wire_call(call: ToolCallDelta) -> ToolCallChunk {
    let id = call.name.as_ref().map(|_| random_id("call_"));
    ToolCallChunk {
        index: call.index,
        kind: id.as_ref().map(|_| "function"),
        id,
        function: FunctionChunk {
            name: call.name,
            arguments: call.arguments,
        },
    }
}
