//! One response's output, from engine events to Responses stream events and the final object.
//!
//! The same [`ResponseRenderer`] serves streamed and non-streamed requests (a non-streamed
//! request runs it and drops the events), and the items of `response.completed` are the very
//! values sent in `response.output_item.done`, so both forms always agree (ids and `call_id`s
//! included).
//!
//! Event order: `response.created`, `response.in_progress`; per output item
//! `response.output_item.added`, for messages and reasoning `response.content_part.added`, the
//! deltas (`response.output_text.delta`, `response.reasoning_text.delta`,
//! `response.function_call_arguments.delta`; a custom tool's input comes whole in one
//! `response.custom_tool_call_input.delta` once the call is complete, since the model writes it
//! JSON-encoded), the matching `.done`, `response.content_part.done`,
//! `response.output_item.done`; last `response.completed`, `response.incomplete` (token limit)
//! or `response.failed` (engine failure, shutdown). Every event has `sequence_number`, counting
//! from 0; `content_index` is 0 (each item has one part).
//!
//! With logprobs asked for ([`ResponseRenderer::with_logprobs`]), each token of a message's text
//! has its entry in the delta that carries its text and in the finished `output_text` part; the
//! tokens of reasoning, tool calls and their markup have none.

use std::sync::Arc;

use axum::response::sse::Event as SseEvent;
use serde_json::{Value, json};

use super::events::{EventBody, ResponseEvent};
use super::types::{IncompleteDetails, ResponseError, ResponseObject, ResponseUsage};
use crate::api::conversation::{ToolCatalog, ToolOrigin, custom_tool_input};
use crate::api::error::{ApiError, ApiResult};
use crate::api::logprobs::chat_entry;
use crate::api::output::blocks::{BlockEvent, BlockKind, BlockStatus, BlockTracker};
use crate::api::output::{self, Renderer};
use crate::api::request_builder::random_id;
use crate::api::sse::abort_error;
use crate::api::state::unix_now;
use crate::engine::{Event, FinishReason, TokenLogprob};
use crate::tokenizer::Tokenizer;

pub struct ResponseRenderer {
    response: ResponseObject,
    catalog: ToolCatalog,
    tracker: BlockTracker,
    sequence: u64,
    /// Per block: the item id and, once closed, the finished item.
    item_ids: Vec<String>,
    /// Per block: the `call_id` of a tool call (empty for other blocks).
    call_ids: Vec<String>,
    items: Vec<Value>,
    reasoning_tokens: usize,
    finished: bool,
    /// Set when the request asked for logprobs: the tokenizer that spells their tokens.
    logprob_tokenizer: Option<Arc<Tokenizer>>,
    /// Per block: the logprobs of the tokens of its text (message blocks only).
    block_logprobs: Vec<Vec<Value>>,
    /// Logprobs of tokens whose text the tracker still holds back (a possible markup start).
    pending_logprobs: Vec<Value>,
}

impl ResponseRenderer {
    /// `response`: the shell (settings echoed, `status: in_progress`, no output yet).
    pub fn new(response: ResponseObject, catalog: ToolCatalog, tracker: BlockTracker) -> Self {
        Self {
            response,
            catalog,
            tracker,
            sequence: 0,
            item_ids: Vec::new(),
            call_ids: Vec::new(),
            items: Vec::new(),
            reasoning_tokens: 0,
            finished: false,
            logprob_tokenizer: None,
            block_logprobs: Vec::new(),
            pending_logprobs: Vec::new(),
        }
    }

    /// Reports each output text token's logprob (and the alternatives the engine computed) in
    /// the message's `output_text` parts and `response.output_text.delta` events.
    pub fn with_logprobs(mut self, tokenizer: Arc<Tokenizer>) -> Self {
        self.logprob_tokenizer = Some(tokenizer);
        self
    }

    pub fn response(&self) -> &ResponseObject {
        &self.response
    }

    fn hold_logprobs(&mut self, logprobs: &[TokenLogprob]) {
        if let Some(tokenizer) = &self.logprob_tokenizer {
            self.pending_logprobs.extend(
                logprobs
                    .iter()
                    .map(|lp| serde_json::to_value(chat_entry(tokenizer, lp)).unwrap_or_default()),
            );
        }
    }

    /// The held logprobs, now given to text block `index`.
    fn take_logprobs(&mut self, index: usize) -> Vec<Value> {
        let taken = std::mem::take(&mut self.pending_logprobs);
        if self.block_logprobs.len() <= index {
            self.block_logprobs.resize_with(index + 1, Vec::new);
        }
        self.block_logprobs[index].extend(taken.iter().cloned());
        taken
    }

    fn logprobs_of(&self, index: usize) -> Value {
        Value::Array(self.block_logprobs.get(index).cloned().unwrap_or_default())
    }

    /// The last event: the response with its output, under `end`'s type.
    fn terminal(&mut self, end: fn(Value) -> EventBody) -> ResponseEvent {
        self.finished = true;
        self.response.completed_at = Some(unix_now());
        self.response.output = self.items.clone();
        self.event(end(self.shell()))
    }

    fn shell(&self) -> Value {
        serde_json::to_value(&self.response).unwrap_or(Value::Null)
    }

    fn event(&mut self, body: EventBody) -> ResponseEvent {
        let sequence_number = self.sequence;
        self.sequence += 1;
        ResponseEvent {
            body,
            sequence_number,
        }
    }

    fn render_blocks(&mut self, block_events: Vec<BlockEvent>) -> Vec<ResponseEvent> {
        let mut out = Vec::new();
        for e in block_events {
            match e {
                BlockEvent::Start { index, kind } => self.started(index, &kind, &mut out),
                BlockEvent::Delta { index, text } => self.delta(index, text, &mut out),
                BlockEvent::Stop { index, status } => self.stopped(index, status, &mut out),
            }
        }
        out
    }

    fn started(&mut self, index: usize, kind: &BlockKind, out: &mut Vec<ResponseEvent>) {
        let prefix = match kind {
            BlockKind::Reasoning => "rs_",
            BlockKind::Text => "msg_",
            BlockKind::Call { name, .. } => match self.catalog.origin(name) {
                ToolOrigin::Custom | ToolOrigin::NamespacedCustom { .. } => "ctc_",
                _ => "fc_",
            },
        };
        self.item_ids.push(random_id(prefix));
        let call_id = match kind {
            BlockKind::Call { .. } => random_id("call_"),
            _ => String::new(),
        };
        self.call_ids.push(call_id);
        let item = self.item(index, "", None);
        out.push(self.event(EventBody::OutputItemAdded {
            output_index: index,
            item,
        }));
        if let Some(part) = self.part(index, "") {
            let item_id = self.item_ids[index].clone();
            out.push(self.event(EventBody::ContentPartAdded {
                item_id,
                output_index: index,
                content_index: 0,
                part,
            }));
        }
    }

    fn delta(&mut self, index: usize, delta: String, out: &mut Vec<ResponseEvent>) {
        let item_id = self.item_ids[index].clone();
        let output_index = index;
        let body = match self.tracker.blocks()[index].kind.clone() {
            BlockKind::Reasoning => EventBody::ReasoningTextDelta {
                item_id,
                output_index,
                content_index: 0,
                delta,
            },
            BlockKind::Text => EventBody::OutputTextDelta {
                item_id,
                output_index,
                content_index: 0,
                delta,
                logprobs: self.take_logprobs(index),
            },
            BlockKind::Call { name, .. } if self.is_custom(&name) => return,
            BlockKind::Call { .. } => EventBody::FunctionCallArgumentsDelta {
                item_id,
                output_index,
                delta,
            },
        };
        out.push(self.event(body));
    }

    fn stopped(&mut self, index: usize, status: BlockStatus, out: &mut Vec<ResponseEvent>) {
        let item_id = self.item_ids[index].clone();
        let output_index = index;
        let block = self.tracker.blocks()[index].clone();
        match &block.kind {
            BlockKind::Reasoning => out.push(self.event(EventBody::ReasoningTextDone {
                item_id: item_id.clone(),
                output_index,
                content_index: 0,
                text: block.text.clone(),
            })),
            BlockKind::Text => {
                let logprobs = self.logprobs_of(index);
                out.push(self.event(EventBody::OutputTextDone {
                    item_id: item_id.clone(),
                    output_index,
                    content_index: 0,
                    text: block.text.clone(),
                    logprobs,
                }));
            }
            BlockKind::Call { name, .. } if self.is_custom(name) => {
                let input = custom_tool_input(&block.text);
                if !input.is_empty() {
                    out.push(self.event(EventBody::CustomToolCallInputDelta {
                        item_id: item_id.clone(),
                        output_index,
                        delta: input.clone(),
                    }));
                }
                out.push(self.event(EventBody::CustomToolCallInputDone {
                    item_id: item_id.clone(),
                    output_index,
                    input,
                }));
            }
            BlockKind::Call { name, .. } => {
                let (_, name) = self.public_name(name);
                out.push(self.event(EventBody::FunctionCallArgumentsDone {
                    item_id: item_id.clone(),
                    output_index,
                    name,
                    arguments: block.text.clone(),
                }));
            }
        }
        if let Some(part) = self.part(index, &block.text) {
            out.push(self.event(EventBody::ContentPartDone {
                item_id,
                output_index,
                content_index: 0,
                part,
            }));
        }
        let item = self.item(index, &block.text, Some(status));
        self.items.push(item.clone());
        out.push(self.event(EventBody::OutputItemDone { output_index, item }));
    }

    fn is_custom(&self, name: &str) -> bool {
        matches!(
            self.catalog.origin(name),
            ToolOrigin::Custom | ToolOrigin::NamespacedCustom { .. }
        )
    }

    /// `(namespace, name)` as the client declared the tool the model called.
    fn public_name(&self, flat: &str) -> (Option<String>, String) {
        match self.catalog.origin(flat) {
            ToolOrigin::Namespaced { namespace, name }
            | ToolOrigin::NamespacedCustom { namespace, name } => (Some(namespace), name),
            _ => (None, flat.to_owned()),
        }
    }

    /// The content part of a message or reasoning item holding `text`.
    fn part(&self, index: usize, text: &str) -> Option<Value> {
        match self.tracker.blocks()[index].kind {
            BlockKind::Reasoning => Some(json!({"type": "reasoning_text", "text": text})),
            BlockKind::Text => Some(json!({"type": "output_text", "text": text,
                "annotations": [], "logprobs": self.logprobs_of(index)})),
            BlockKind::Call { .. } => None,
        }
    }

    /// Item `index` holding `text`; `status: None` while it is being generated.
    fn item(&self, index: usize, text: &str, status: Option<BlockStatus>) -> Value {
        let id = &self.item_ids[index];
        let status = match status {
            None => "in_progress",
            Some(BlockStatus::Completed) => "completed",
            Some(BlockStatus::Incomplete) => "incomplete",
        };
        let done = status != "in_progress";
        match &self.tracker.blocks()[index].kind {
            BlockKind::Reasoning => {
                let content = if done {
                    json!([{"type": "reasoning_text", "text": text}])
                } else {
                    json!([])
                };
                json!({"type": "reasoning", "id": id, "summary": [], "content": content})
            }
            BlockKind::Text => {
                let content: Vec<Value> = if done {
                    self.part(index, text).into_iter().collect()
                } else {
                    Vec::new()
                };
                json!({"type": "message", "id": id, "role": "assistant", "status": status, "content": content})
            }
            BlockKind::Call { name } => {
                let call_id = &self.call_ids[index];
                let (namespace, short) = self.public_name(name);
                let mut item = if self.is_custom(name) {
                    let input = if done {
                        custom_tool_input(text)
                    } else {
                        String::new()
                    };
                    json!({"type": "custom_tool_call", "id": id, "call_id": call_id, "name": short, "input": input})
                } else {
                    json!({"type": "function_call", "id": id, "call_id": call_id, "name": short,
                           "arguments": text, "status": status})
                };
                if let Some(ns) = namespace {
                    item["namespace"] = Value::String(ns);
                }
                item
            }
        }
    }
}

impl Renderer for ResponseRenderer {
    type Event = ResponseEvent;
    /// A failed response is still a response (`status: failed`), sent with 200.
    type Whole = ResponseObject;

    fn into_whole(self) -> ApiResult<ResponseObject> {
        Ok(self.response)
    }

    fn start(&mut self) -> Vec<ResponseEvent> {
        let shell = self.shell();
        vec![
            self.event(EventBody::Created {
                response: shell.clone(),
            }),
            self.event(EventBody::InProgress { response: shell }),
        ]
    }

    /// The events for one engine event; after `Finished` or `Error` the response is final.
    fn on_engine(&mut self, _choice: usize, event: Event) -> Vec<ResponseEvent> {
        if self.finished {
            return Vec::new();
        }
        match event {
            Event::Delta {
                text,
                token_ids,
                logprobs,
            } => {
                self.hold_logprobs(&logprobs);
                let block_events = self.tracker.push(&text);
                let in_text = matches!(
                    self.tracker.blocks().last(),
                    Some(b) if b.kind == BlockKind::Text
                );
                let text_delta = block_events.iter().any(|e| {
                    matches!(e, BlockEvent::Delta { index, .. }
                        if self.tracker.blocks()[*index].kind == BlockKind::Text)
                });
                if !in_text && !text_delta {
                    // Reasoning or a call: its tokens belong to no output text.
                    self.pending_logprobs.clear();
                }
                let in_reasoning = matches!(
                    self.tracker.blocks().last(),
                    Some(b) if b.kind == BlockKind::Reasoning
                ) && !block_events
                    .iter()
                    .any(|e| matches!(e, BlockEvent::Stop { .. }));
                if in_reasoning {
                    self.reasoning_tokens += token_ids.len();
                }
                self.render_blocks(block_events)
            }
            Event::Finished { reason, usage, .. } => {
                if reason == FinishReason::Abort {
                    return self.fail(&abort_error());
                }
                let cut = reason == FinishReason::Length;
                let block_events = self.tracker.finish(cut);
                let mut events = self.render_blocks(block_events);
                self.response.usage = Some(ResponseUsage::new(
                    usage.prompt_tokens,
                    usage.cached_tokens,
                    usage.completion_tokens,
                    self.reasoning_tokens.min(usage.completion_tokens),
                ));
                let end: fn(Value) -> EventBody = if cut {
                    self.response.status = "incomplete".into();
                    self.response.incomplete_details = Some(IncompleteDetails {
                        reason: "max_output_tokens".into(),
                    });
                    |response| EventBody::Incomplete { response }
                } else {
                    self.response.status = "completed".into();
                    |response| EventBody::Completed { response }
                };
                events.push(self.terminal(end));
                events
            }
            Event::Error(message) => self.fail(&ApiError::internal(message)),
            Event::Pooled(_) => self.fail(&output::pooled_in_generation()),
        }
    }

    /// The response failed: the engine went away or failed, or the server is shutting down.
    fn fail(&mut self, error: &ApiError) -> Vec<ResponseEvent> {
        if self.finished {
            return Vec::new();
        }
        self.response.status = "failed".into();
        self.response.error = Some(ResponseError {
            code: "server_error".into(),
            message: error.message.clone(),
        });
        vec![self.terminal(|response| EventBody::Failed { response })]
    }

    fn is_finished(&self) -> bool {
        self.finished
    }

    fn to_sse(event: ResponseEvent) -> SseEvent {
        event.into_sse()
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
