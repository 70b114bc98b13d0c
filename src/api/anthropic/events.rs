//! The Messages API's stream events, typed: each variant serialises to its JSON body (with its
//! `type`) and names the `event:` line it is sent under (the Anthropic SDKs drop events without
//! one).

use axum::response::sse::Event as SseEvent;
use serde::Serialize;
use serde_json::Value;

use super::types::{MessageObject, MessageUsage};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageEvent {
    MessageStart {
        message: MessageObject,
    },
    Ping,
    /// A content block opens: `thinking`, `text` or `tool_use` (with `input: {}`).
    ContentBlockStart {
        index: usize,
        content_block: Value,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: usize,
    },
    /// The stop reason and the final usage.
    MessageDelta {
        delta: StopDelta,
        usage: MessageUsage,
    },
    MessageStop,
    /// A failure after the stream began: `{"type", "message"}` from the error table.
    Error {
        error: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    ThinkingDelta { thinking: String },
    TextDelta { text: String },
    InputJsonDelta { partial_json: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StopDelta {
    pub stop_reason: &'static str,
    pub stop_sequence: Option<String>,
}

impl MessageEvent {
    /// The event's type, as its `event:` line and its body's `type` say it.
    pub fn name(&self) -> &'static str {
        match self {
            MessageEvent::MessageStart { .. } => "message_start",
            MessageEvent::Ping => "ping",
            MessageEvent::ContentBlockStart { .. } => "content_block_start",
            MessageEvent::ContentBlockDelta { .. } => "content_block_delta",
            MessageEvent::ContentBlockStop { .. } => "content_block_stop",
            MessageEvent::MessageDelta { .. } => "message_delta",
            MessageEvent::MessageStop => "message_stop",
            MessageEvent::Error { .. } => "error",
        }
    }

    pub fn into_sse(self) -> SseEvent {
        let data = serde_json::to_string(&self).unwrap_or_default();
        SseEvent::default().event(self.name()).data(data)
    }
}
