//! The Responses API's stream events, typed: each body serialises with its `type` and the
//! response's `sequence_number` (counting from 0), and names its `event:` line. Items, parts and
//! the response object stay JSON values: they are the very values the final response holds.

use axum::response::sse::Event as SseEvent;
use serde::Serialize;
use serde_json::Value;

/// One event as sent: its body and its place in the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseEvent {
    #[serde(flatten)]
    pub body: EventBody,
    pub sequence_number: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum EventBody {
    #[serde(rename = "response.created")]
    Created { response: Value },
    #[serde(rename = "response.in_progress")]
    InProgress { response: Value },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded { output_index: usize, item: Value },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        item_id: String,
        output_index: usize,
        content_index: usize,
        part: Value,
    },
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningTextDelta {
        item_id: String,
        output_index: usize,
        content_index: usize,
        delta: String,
    },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        item_id: String,
        output_index: usize,
        content_index: usize,
        delta: String,
        logprobs: Vec<Value>,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta {
        item_id: String,
        output_index: usize,
        delta: String,
    },
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningTextDone {
        item_id: String,
        output_index: usize,
        content_index: usize,
        text: String,
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        item_id: String,
        output_index: usize,
        content_index: usize,
        text: String,
        logprobs: Value,
    },
    /// A custom tool's input comes whole, once the call is complete (the model writes it
    /// JSON-encoded).
    #[serde(rename = "response.custom_tool_call_input.delta")]
    CustomToolCallInputDelta {
        item_id: String,
        output_index: usize,
        delta: String,
    },
    #[serde(rename = "response.custom_tool_call_input.done")]
    CustomToolCallInputDone {
        item_id: String,
        output_index: usize,
        input: String,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        item_id: String,
        output_index: usize,
        name: String,
        arguments: String,
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        item_id: String,
        output_index: usize,
        content_index: usize,
        part: Value,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone { output_index: usize, item: Value },
    #[serde(rename = "response.completed")]
    Completed { response: Value },
    /// Ended by the token limit.
    #[serde(rename = "response.incomplete")]
    Incomplete { response: Value },
    /// Ended by an engine failure or the server's shutdown.
    #[serde(rename = "response.failed")]
    Failed { response: Value },
}

impl EventBody {
    /// The event's type, as its `event:` line and its body's `type` say it.
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::Created { .. } => "response.created",
            EventBody::InProgress { .. } => "response.in_progress",
            EventBody::OutputItemAdded { .. } => "response.output_item.added",
            EventBody::ContentPartAdded { .. } => "response.content_part.added",
            EventBody::ReasoningTextDelta { .. } => "response.reasoning_text.delta",
            EventBody::OutputTextDelta { .. } => "response.output_text.delta",
            EventBody::FunctionCallArgumentsDelta { .. } => {
                "response.function_call_arguments.delta"
            }
            EventBody::ReasoningTextDone { .. } => "response.reasoning_text.done",
            EventBody::OutputTextDone { .. } => "response.output_text.done",
            EventBody::CustomToolCallInputDelta { .. } => "response.custom_tool_call_input.delta",
            EventBody::CustomToolCallInputDone { .. } => "response.custom_tool_call_input.done",
            EventBody::FunctionCallArgumentsDone { .. } => "response.function_call_arguments.done",
            EventBody::ContentPartDone { .. } => "response.content_part.done",
            EventBody::OutputItemDone { .. } => "response.output_item.done",
            EventBody::Completed { .. } => "response.completed",
            EventBody::Incomplete { .. } => "response.incomplete",
            EventBody::Failed { .. } => "response.failed",
        }
    }
}

impl ResponseEvent {
    pub fn name(&self) -> &'static str {
        self.body.name()
    }

    pub fn into_sse(self) -> SseEvent {
        let data = serde_json::to_string(&self).unwrap_or_default();
        SseEvent::default().event(self.name()).data(data)
    }
}
