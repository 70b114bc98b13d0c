//! Chat completions' output: engine events → chunk choices (role, deltas, finish per choice) →
//! either SSE chunks (then usage and `[DONE]`) or, for a response sent whole, their fold into
//! one message per choice. Both forms come from the same chunk choices, so a streamed answer
//! concatenates to exactly the non-streamed one (tool-call ids included).

use std::sync::Arc;

use axum::response::sse::Event as SseEvent;

use crate::api::error::{ApiError, ApiResult};
use crate::api::logprobs::chat_entry;
use crate::api::openai::delivery::{Delivery, Failure};
use crate::api::output::parser::{OutputDelta, OutputParser};
use crate::api::output::{self, Renderer};
use crate::api::request_builder::random_id;
use crate::api::sse::{DataChunk, abort_error};
use crate::api::types::chat::{
    ChatChoice, ChatCompletionChunk, ChatCompletionResponse, ChatDelta, ChatLogprobToken,
    ChatLogprobs, ChatMessage, ChunkChoice, FunctionCall, FunctionChunk, ToolCall, ToolCallChunk,
};
use crate::api::types::common::{StopReasonValue, UsageInfo};
use crate::engine::{Event, FinishReason, TokenLogprob, Usage};
use crate::parsers::{ToolCallDelta, ToolCallSyntax};
use crate::tokenizer::Tokenizer;

/// What every choice of one response shares.
pub struct ChatContext {
    pub id: String,
    pub created: i64,
    pub model: String,
    pub tokenizer: Arc<Tokenizer>,
    /// `Some(prompt_opened)` when the reasoning parser is on.
    pub reasoning: Option<bool>,
    /// How the output is read for tool calls (`None`: it is not).
    pub tool_calls: Option<ToolCallSyntax>,
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
    failure: Failure,
}

impl ChatRenderer {
    pub fn new(ctx: ChatContext, n: usize, delivery: Delivery) -> Self {
        let choices = (0..n)
            .map(|_| Choice {
                parser: OutputParser::new(ctx.reasoning, ctx.tool_calls.as_ref()),
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
            failure: Failure::default(),
        }
    }

    /// The response sent whole; the error when it failed.
    fn whole(self) -> ApiResult<ChatCompletionResponse> {
        self.failure.check()?;
        let usage = self.usage();
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
            usage,
        })
    }

    /// The response's usage once every choice finished: the prompt once, every choice's output.
    fn usage(&self) -> UsageInfo {
        let usages: Vec<Usage> = self.choices.iter().filter_map(|c| c.usage).collect();
        let prompt = usages
            .first()
            .map_or(self.ctx.prompt_tokens, |u| u.prompt_tokens);
        let cached = usages.first().map_or(0, |u| u.cached_tokens);
        let completion = usages.iter().map(|u| u.completion_tokens).sum();
        UsageInfo::new(prompt, completion, Some(cached))
    }

    /// Sends `pieces` (SSE) or folds them into their choices' messages (whole).
    fn deliver(&mut self, pieces: Vec<ChunkChoice>) -> Vec<DataChunk> {
        if self.delivery.is_whole() {
            for piece in pieces {
                self.choices[piece.index].message.add(piece);
            }
            return Vec::new();
        }
        pieces.into_iter().map(|p| self.chunk(vec![p])).collect()
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> DataChunk {
        let continuous = self.delivery.continuous_usage();
        let usage = continuous.then(|| {
            let tokens = self.choices.iter().map(|c| c.tokens).sum();
            UsageInfo::new(self.ctx.prompt_tokens, tokens, None)
        });
        DataChunk::json(&ChatCompletionChunk {
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
    type Event = DataChunk;
    type Whole = ChatCompletionResponse;

    fn into_whole(self) -> ApiResult<ChatCompletionResponse> {
        self.whole()
    }

    fn start(&mut self) -> Vec<DataChunk> {
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

    fn on_engine(&mut self, index: usize, event: Event) -> Vec<DataChunk> {
        if self.failure.is_failed() {
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
            Event::Pooled(_) => self.fail(&output::pooled_in_generation()),
        }
    }

    fn fail(&mut self, error: &ApiError) -> Vec<DataChunk> {
        self.failure.fail(error)
    }

    fn is_finished(&self) -> bool {
        self.failure.is_failed() || self.choices.iter().all(|c| c.usage.is_some())
    }

    fn end(&mut self) -> Vec<DataChunk> {
        self.delivery.end(&self.failure, || {
            DataChunk::json(&ChatCompletionChunk {
                id: &self.ctx.id,
                object: "chat.completion.chunk",
                created: self.ctx.created,
                model: &self.ctx.model,
                choices: Vec::new(),
                usage: Some(self.usage()),
            })
        })
    }

    fn to_sse(event: DataChunk) -> SseEvent {
        event.into_sse()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn renderer(delivery: Delivery, n: usize) -> ChatRenderer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/qwen3-tiny/tokenizer.json"
        );
        let ctx = ChatContext {
            id: "chatcmpl-1".into(),
            created: 1,
            model: "m".into(),
            tokenizer: Arc::new(Tokenizer::from_file(path).expect("tokenizer")),
            reasoning: Some(false),
            tool_calls: Some(ToolCallSyntax::hermes()),
            logprobs: false,
            echo: Some("Sure: ".into()),
            prompt_tokens: 7,
        };
        ChatRenderer::new(ctx, n, delivery)
    }

    /// Engine events for `text` cut into `pieces`-byte deltas, choice by choice interleaved.
    fn run(renderer: &mut ChatRenderer, text: &str, pieces: usize, n: usize) -> Vec<DataChunk> {
        let mut events = renderer.start();
        let chunks: Vec<String> = text
            .chars()
            .collect::<Vec<_>>()
            .chunks(pieces)
            .map(|c| c.iter().collect())
            .collect();
        for chunk in &chunks {
            for index in 0..n {
                let delta = Event::Delta {
                    text: chunk.clone(),
                    token_ids: vec![1],
                    logprobs: Vec::new(),
                };
                events.extend(renderer.on_engine(index, delta));
            }
        }
        for index in 0..n {
            let usage = Usage {
                prompt_tokens: 7,
                completion_tokens: chunks.len(),
                cached_tokens: 0,
            };
            let finished = Event::Finished {
                reason: FinishReason::Stop,
                stop_reason: None,
                usage,
            };
            events.extend(renderer.on_engine(index, finished));
        }
        assert!(renderer.is_finished());
        events.extend(renderer.end());
        events
    }

    /// What the `openai` SDK's stream accumulator does: one message per choice from the chunks.
    fn accumulate(events: &[DataChunk], n: usize) -> Vec<Value> {
        let mut out = vec![json!({"content": "", "reasoning": "", "tool_calls": []}); n];
        assert_eq!(events.last(), Some(&DataChunk::done()));
        for e in &events[..events.len() - 1] {
            let chunk: Value = serde_json::from_str(&e.0).expect("chunk JSON");
            for choice in chunk["choices"].as_array().expect("choices") {
                let i = choice["index"].as_u64().expect("index") as usize;
                let d = &choice["delta"];
                for field in ["content", "reasoning"] {
                    if let Some(t) = d[field].as_str() {
                        let joined = format!("{}{t}", out[i][field].as_str().unwrap_or(""));
                        out[i][field] = json!(joined);
                    }
                }
                for call in d["tool_calls"].as_array().into_iter().flatten() {
                    let calls = out[i]["tool_calls"].as_array_mut().expect("calls");
                    let k = call["index"].as_u64().expect("call index") as usize;
                    if k == calls.len() {
                        calls.push(json!({"name": call["function"]["name"], "arguments": ""}));
                    }
                    let args = format!(
                        "{}{}",
                        calls[k]["arguments"].as_str().unwrap_or(""),
                        call["function"]["arguments"].as_str().unwrap_or("")
                    );
                    calls[k]["arguments"] = json!(args);
                }
                if let Some(f) = choice["finish_reason"].as_str() {
                    out[i]["finish_reason"] = json!(f);
                }
            }
        }
        out
    }

    #[test]
    fn the_whole_answer_is_the_fold_of_the_streamed_chunks() {
        let text = "<think>\nlook it up\n</think>\n\nChecking.<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"Paris {1}\"}}\n</tool_call>";
        let n = 2;
        for pieces in [1, 3, 7, 1000] {
            let mut whole = renderer(Delivery::Whole, n);
            assert!(run(&mut whole, text, pieces, n).is_empty());
            let whole = serde_json::to_value(whole.into_whole().expect("answer")).unwrap();
            let mut streamed = renderer(
                Delivery::Stream {
                    include_usage: true,
                    continuous_usage: false,
                },
                n,
            );
            let streamed = accumulate(&run(&mut streamed, text, pieces, n), n);
            for (i, s) in streamed.iter().enumerate() {
                let w = &whole["choices"][i];
                assert_eq!(w["message"]["content"], s["content"], "{pieces}");
                assert_eq!(w["message"]["content"], "Sure: Checking.");
                assert_eq!(w["message"]["reasoning"], s["reasoning"]);
                assert_eq!(w["message"]["reasoning"], "look it up");
                assert_eq!(w["finish_reason"], s["finish_reason"]);
                assert_eq!(w["finish_reason"], "tool_calls");
                let call = &w["message"]["tool_calls"][0];
                assert_eq!(call["function"]["name"], s["tool_calls"][0]["name"]);
                assert_eq!(
                    call["function"]["arguments"],
                    s["tool_calls"][0]["arguments"]
                );
                assert_eq!(call["function"]["arguments"], "{\"city\": \"Paris {1}\"}");
                assert!(
                    call["id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("call_"))
                );
            }
            assert_eq!(
                whole["usage"]["completion_tokens"],
                json!(2 * text.chars().count().div_ceil(pieces))
            );
        }
    }

    #[test]
    fn an_engine_error_fails_both_forms() {
        let mut whole = renderer(Delivery::Whole, 1);
        whole.start();
        whole.on_engine(0, Event::Error("device lost".into()));
        assert!(whole.is_finished());
        let error = whole.into_whole().expect_err("a failed answer");
        assert_eq!(error.status.as_u16(), 500);
        let mut streamed = renderer(
            Delivery::Stream {
                include_usage: true,
                continuous_usage: false,
            },
            1,
        );
        streamed.start();
        let events = streamed.on_engine(0, Event::Error("device lost".into()));
        let error: Value = serde_json::from_str(&events[0].0).expect("error chunk");
        assert_eq!(error["error"]["message"], "device lost");
        assert_eq!(
            streamed.end(),
            [DataChunk::done()],
            "no usage after a failure"
        );
    }
}
