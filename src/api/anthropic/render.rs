//! One message's output, from engine events to Anthropic stream events and the final message.
//!
//! As for the Responses API, one [`MessageRenderer`] serves both forms: a non-streamed request
//! runs it and keeps only the message, so streamed and non-streamed content agree.
//!
//! Stream: `message_start`, `ping` (at once, so a long prefill is visibly alive; the handler
//! also repeats it while nothing else is sent), then per content block `content_block_start`
//! (a `tool_use` block starts with `input: {}`), `content_block_delta` (`thinking_delta`,
//! `text_delta`, `input_json_delta`), `content_block_stop`; then `message_delta` (stop reason,
//! final usage) and `message_stop`. Every event is sent with an `event:` line naming its type
//! (the SDKs drop events without one). A failure after the start is an `error` event.

use serde_json::{Value, json};

use axum::response::sse::Event as SseEvent;

use super::error::error_object;
use super::events::{BlockDelta, MessageEvent, StopDelta};
use super::types::{MessageObject, MessageUsage};
use crate::api::error::{ApiError, ApiResult};
use crate::api::output::blocks::{BlockEvent, BlockKind, BlockTracker};
use crate::api::output::{self, Renderer};
use crate::api::request_builder::random_id;
use crate::engine::{Event, FinishReason, StopReason};

pub struct MessageRenderer {
    message: MessageObject,
    tracker: BlockTracker,
    prompt_tokens: usize,
    omit_thinking: bool,
    /// Why the message failed, once it has (it is finished once this or its stop reason is set).
    failed: Option<ApiError>,
}

impl MessageRenderer {
    /// `prompt_tokens`: reported in `message_start` before the engine has said what it cached;
    /// `omit_thinking`: send thinking blocks without their text (`thinking.display: omitted`).
    pub fn new(
        id: String,
        model: String,
        prompt_tokens: usize,
        tracker: BlockTracker,
        omit_thinking: bool,
    ) -> Self {
        Self {
            message: MessageObject {
                id,
                kind: "message".into(),
                role: "assistant".into(),
                model,
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: MessageUsage::new(prompt_tokens, 0, 0),
            },
            tracker,
            prompt_tokens,
            omit_thinking,
            failed: None,
        }
    }

    /// The message; the error it ended in, if it did.
    fn message(self) -> ApiResult<MessageObject> {
        match self.failed {
            Some(error) => Err(error),
            None if self.message.stop_reason.is_none() => {
                Err(ApiError::internal("the request ended before it finished"))
            }
            None => Ok(self.message),
        }
    }

    fn render_blocks(&mut self, blocks: Vec<BlockEvent>) -> Vec<MessageEvent> {
        let mut out = Vec::new();
        for e in blocks {
            match e {
                BlockEvent::Start { index, kind } => {
                    let block = match &kind {
                        BlockKind::Reasoning => {
                            json!({"type": "thinking", "thinking": "", "signature": ""})
                        }
                        BlockKind::Text => json!({"type": "text", "text": ""}),
                        BlockKind::Call { name } => {
                            json!({"type": "tool_use", "id": random_id("toolu_"), "name": name, "input": {}})
                        }
                    };
                    self.message.content.push(block.clone());
                    out.push(MessageEvent::ContentBlockStart {
                        index,
                        content_block: block,
                    });
                }
                BlockEvent::Delta { index, text } => {
                    let delta = match &self.tracker.blocks()[index].kind {
                        BlockKind::Reasoning if self.omit_thinking => continue,
                        BlockKind::Reasoning => BlockDelta::ThinkingDelta { thinking: text },
                        BlockKind::Text => BlockDelta::TextDelta { text },
                        BlockKind::Call { .. } => BlockDelta::InputJsonDelta { partial_json: text },
                    };
                    out.push(MessageEvent::ContentBlockDelta { index, delta });
                }
                BlockEvent::Stop { index, .. } => {
                    let text = self.tracker.blocks()[index].text.clone();
                    let block = &mut self.message.content[index];
                    match block["type"].as_str() {
                        Some("thinking") if !self.omit_thinking => {
                            block["thinking"] = Value::String(text)
                        }
                        Some("text") => block["text"] = Value::String(text),
                        Some("tool_use") => block["input"] = tool_input(&text),
                        _ => {}
                    }
                    out.push(MessageEvent::ContentBlockStop { index });
                }
            }
        }
        out
    }
}

/// A tool call's `input` object from the arguments JSON the model wrote; arguments that are not
/// a complete object (a call cut by `max_tokens`) give `{}`.
fn tool_input(arguments: &str) -> Value {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

impl Renderer for MessageRenderer {
    type Event = MessageEvent;
    type Whole = MessageObject;

    fn into_whole(self) -> ApiResult<MessageObject> {
        self.message()
    }

    /// `ping` at once, so a long prefill is visibly alive.
    fn start(&mut self) -> Vec<MessageEvent> {
        let message = self.message.clone();
        vec![MessageEvent::MessageStart { message }, MessageEvent::Ping]
    }

    fn on_engine(&mut self, _choice: usize, engine_event: Event) -> Vec<MessageEvent> {
        if self.is_finished() {
            return Vec::new();
        }
        match engine_event {
            Event::Delta { text, .. } => {
                let blocks = self.tracker.push(&text);
                self.render_blocks(blocks)
            }
            Event::Finished {
                reason,
                stop_reason,
                usage,
            } => {
                let (stop, sequence) = match (reason, stop_reason) {
                    (FinishReason::Abort, _) => {
                        return self.fail(&ApiError::unavailable("the server is shutting down"));
                    }
                    (FinishReason::Length, _) => ("max_tokens", None),
                    (FinishReason::Stop, _) if self.tracker.called_tools() => ("tool_use", None),
                    (FinishReason::Stop, Some(StopReason::String(s))) => ("stop_sequence", Some(s)),
                    (FinishReason::Stop, _) => ("end_turn", None),
                };
                let blocks = self.tracker.finish(reason == FinishReason::Length);
                let mut events = self.render_blocks(blocks);
                self.message.stop_reason = Some(stop.to_owned());
                self.message.stop_sequence = sequence.clone();
                self.message.usage = MessageUsage::new(
                    usage.prompt_tokens.max(self.prompt_tokens),
                    usage.cached_tokens,
                    usage.completion_tokens,
                );
                events.push(MessageEvent::MessageDelta {
                    delta: StopDelta {
                        stop_reason: stop,
                        stop_sequence: sequence,
                    },
                    usage: self.message.usage,
                });
                events.push(MessageEvent::MessageStop);
                events
            }
            Event::Error(message) => self.fail(&ApiError::internal(message)),
            Event::Pooled(_) => self.fail(&output::pooled_in_generation()),
        }
    }

    /// Ends the stream with an `error` event, typed by the same table as an error response
    /// ([`super::error::error_type`]).
    fn fail(&mut self, error: &ApiError) -> Vec<MessageEvent> {
        if self.is_finished() {
            return Vec::new();
        }
        self.failed = Some(error.clone());
        vec![MessageEvent::Error {
            error: error_object(error.status, &error.message),
        }]
    }

    fn is_finished(&self) -> bool {
        self.failed.is_some() || self.message.stop_reason.is_some()
    }

    fn to_sse(event: MessageEvent) -> SseEvent {
        event.into_sse()
    }

    /// Anthropic's stream stays alive with `ping` events.
    fn keep_alive() -> SseEvent {
        MessageEvent::Ping.into_sse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sse::{self, WireEvent};
    use crate::engine::Usage;
    use crate::parsers::ToolCallSyntax;
    use serde_json::json;

    fn wire(events: Vec<MessageEvent>) -> Vec<WireEvent> {
        sse::wire(events, MessageEvent::name)
    }

    fn on_engine(r: &mut MessageRenderer, event: Event) -> Vec<WireEvent> {
        wire(r.on_engine(0, event))
    }

    fn run(
        pieces: &[&str],
        reason: FinishReason,
        stop: Option<StopReason>,
    ) -> (Vec<WireEvent>, MessageObject) {
        let tracker = BlockTracker::new(Some(false), Some(&ToolCallSyntax::hermes()), false);
        let mut r = MessageRenderer::new("msg_1".into(), "m".into(), 12, tracker, false);
        let mut events = wire(r.start());
        for p in pieces {
            events.extend(on_engine(
                &mut r,
                Event::Delta {
                    text: (*p).into(),
                    token_ids: vec![1],
                    logprobs: vec![],
                },
            ));
        }
        events.extend(on_engine(
            &mut r,
            Event::Finished {
                reason,
                stop_reason: stop,
                usage: Usage {
                    prompt_tokens: 12,
                    completion_tokens: pieces.len(),
                    cached_tokens: 8,
                },
            },
        ));
        (events, r.into_whole().unwrap())
    }

    /// What the SDK's accumulator does: rebuild the message from the events.
    fn accumulate(events: &[WireEvent]) -> Value {
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(&kinds[..2], ["message_start", "ping"]);
        assert_eq!(&kinds[kinds.len() - 2..], ["message_delta", "message_stop"]);
        let mut message = events[0].data["message"].clone();
        let mut partial: Vec<String> = Vec::new();
        for e in events {
            assert_eq!(e.data["type"], e.kind);
            match e.kind.as_str() {
                "content_block_start" => {
                    let index = e.data["index"].as_u64().unwrap() as usize;
                    assert_eq!(index, message["content"].as_array().unwrap().len());
                    message["content"]
                        .as_array_mut()
                        .unwrap()
                        .push(e.data["content_block"].clone());
                    partial.push(String::new());
                }
                "content_block_delta" => {
                    let index = e.data["index"].as_u64().unwrap() as usize;
                    let block = &mut message["content"][index];
                    let d = &e.data["delta"];
                    match d["type"].as_str().unwrap() {
                        "text_delta" => {
                            assert_eq!(block["type"], "text");
                            block["text"] = json!(format!(
                                "{}{}",
                                block["text"].as_str().unwrap(),
                                d["text"].as_str().unwrap()
                            ));
                        }
                        "thinking_delta" => {
                            assert_eq!(block["type"], "thinking");
                            block["thinking"] = json!(format!(
                                "{}{}",
                                block["thinking"].as_str().unwrap(),
                                d["thinking"].as_str().unwrap()
                            ));
                        }
                        "input_json_delta" => {
                            assert_eq!(block["type"], "tool_use");
                            assert_eq!(block["input"], json!({}));
                            partial[index].push_str(d["partial_json"].as_str().unwrap());
                        }
                        other => panic!("{other}"),
                    }
                }
                "content_block_stop" => {
                    let index = e.data["index"].as_u64().unwrap() as usize;
                    if message["content"][index]["type"] == "tool_use" {
                        message["content"][index]["input"] =
                            serde_json::from_str(&partial[index]).unwrap();
                    }
                }
                "message_delta" => {
                    message["stop_reason"] = e.data["delta"]["stop_reason"].clone();
                    message["stop_sequence"] = e.data["delta"]["stop_sequence"].clone();
                    message["usage"] = e.data["usage"].clone();
                }
                _ => {}
            }
        }
        message
    }

    #[test]
    fn thinking_text_and_tool_use_stream_like_the_final_message() {
        let text = "<think>\nweather tool\n</think>\n\nLet me check.<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let pieces: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let (events, message) = run(&refs, FinishReason::Stop, None);
        let accumulated = accumulate(&events);
        assert_eq!(accumulated, serde_json::to_value(&message).unwrap());
        assert_eq!(message.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(
            message.content[0],
            json!({"type": "thinking", "thinking": "weather tool", "signature": ""})
        );
        assert_eq!(
            message.content[1],
            json!({"type": "text", "text": "Let me check."})
        );
        assert_eq!(message.content[2]["input"], json!({"city": "Paris"}));
        assert!(
            message.content[2]["id"]
                .as_str()
                .unwrap()
                .starts_with("toolu_")
        );
        assert_eq!(
            message.usage,
            MessageUsage {
                input_tokens: 4,
                output_tokens: refs.len(),
                cache_read_input_tokens: 8,
                cache_creation_input_tokens: 0
            }
        );
        let (_, whole) = run(&[text], FinishReason::Stop, None);
        assert_eq!(whole.content[..2], message.content[..2]);
    }

    #[test]
    fn stop_reasons() {
        let (_, m) = run(&["hi"], FinishReason::Stop, Some(StopReason::Eos));
        assert_eq!(
            (m.stop_reason.as_deref(), m.stop_sequence.as_deref()),
            (Some("end_turn"), None)
        );
        let (_, m) = run(
            &["hi"],
            FinishReason::Stop,
            Some(StopReason::String("END".into())),
        );
        assert_eq!(
            (m.stop_reason.as_deref(), m.stop_sequence.as_deref()),
            (Some("stop_sequence"), Some("END"))
        );
        let (events, m) = run(&["hi"], FinishReason::Length, None);
        assert_eq!(m.stop_reason.as_deref(), Some("max_tokens"));
        assert_eq!(accumulate(&events)["content"][0]["text"], "hi");
        let (_, m) = run(&[], FinishReason::Stop, None);
        assert!(m.content.is_empty());
    }

    #[test]
    fn omitted_thinking_and_failures() {
        let tracker = BlockTracker::new(Some(false), None, false);
        let mut r = MessageRenderer::new("msg_1".into(), "m".into(), 3, tracker, true);
        let mut events = wire(r.start());
        events.extend(on_engine(
            &mut r,
            Event::Delta {
                text: "<think>secret</think>ok".into(),
                token_ids: vec![1],
                logprobs: vec![],
            },
        ));
        assert!(
            events
                .iter()
                .all(|e| e.data["delta"]["type"] != "thinking_delta")
        );
        events.extend(on_engine(&mut r, Event::Error("boom".into())));
        assert_eq!(events.last().unwrap().kind, "error");
        assert_eq!(events.last().unwrap().data["error"]["type"], "api_error");
        assert!(r.is_finished() && r.into_whole().is_err());
    }

    /// A request aborted by shutdown ends with Anthropic's type for a 503, from the same table
    /// as the error responses.
    #[test]
    fn an_aborted_stream_ends_overloaded() {
        let tracker = BlockTracker::new(Some(false), None, false);
        let mut r = MessageRenderer::new("msg_1".into(), "m".into(), 3, tracker, false);
        let mut events = wire(r.start());
        events.extend(on_engine(
            &mut r,
            Event::Finished {
                reason: FinishReason::Abort,
                stop_reason: None,
                usage: Usage::default(),
            },
        ));
        let last = events.last().unwrap();
        assert_eq!(last.kind, "error");
        assert_eq!(last.data["type"], "error");
        assert_eq!(last.data["error"]["type"], "overloaded_error");
        assert_eq!(last.data["error"]["message"], "the server is shutting down");
        assert!(r.is_finished() && r.into_whole().is_err());
    }
}
