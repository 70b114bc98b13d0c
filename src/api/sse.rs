//! Server-sent events on the wire: OpenAI's `data: <json>` chunks ending in `data: [DONE]`
//! (a failure after the first chunk is an error chunk, `data: {"error": {...}}`, which the
//! `openai` SDK raises as an exception), the agent APIs' named events (`event: <type>`, typed
//! per protocol: `openai::responses::events`, `anthropic::events`), and the
//! keep-alive every streaming route sends after `--sse-keep-alive` of silence (a comment line,
//! which clients ignore, per the SSE spec). [`crate::api::output`] drives the streams.

#[cfg(test)]
use serde_json::Value;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{Stream, StreamExt};
use serde::Serialize;

use super::error::ApiError;

/// An agent API's event as a test reads it off the wire: its `event:` name and its JSON body
/// (which repeats the type).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub struct WireEvent {
    pub kind: String,
    pub data: Value,
}

/// `events` as they go on the wire, named by `name`.
#[cfg(test)]
pub fn wire<E: Serialize>(events: Vec<E>, name: fn(&E) -> &'static str) -> Vec<WireEvent> {
    events
        .into_iter()
        .map(|e| WireEvent {
            kind: name(&e).to_owned(),
            data: serde_json::to_value(&e).expect("event JSON"),
        })
        .collect()
}

/// One `data:` line of OpenAI's streams (chat completions, completions): a JSON chunk, an error
/// chunk, or `[DONE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChunk(pub String);

impl DataChunk {
    pub fn json<T: Serialize>(value: &T) -> Self {
        Self(serde_json::to_string(value).unwrap_or_default())
    }

    /// The error after the first chunk: `{"error": {...}}`, which the `openai` SDK raises.
    pub fn error(error: &ApiError) -> Self {
        Self(error.body().to_string())
    }

    pub fn done() -> Self {
        Self("[DONE]".into())
    }

    pub fn into_sse(self) -> SseEvent {
        SseEvent::default().data(self.0)
    }
}

/// The SSE response for `events`, sending `keep_alive` after each `interval` of silence (every
/// streaming route's one keep-alive: `--sse-keep-alive`).
pub fn with_keep_alive(
    events: impl Stream<Item = SseEvent> + Send + 'static,
    interval: Duration,
    keep_alive: SseEvent,
) -> Response {
    Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(interval).event(keep_alive))
        .into_response()
}

/// The error for an engine event that ends a request abnormally.
pub fn abort_error() -> ApiError {
    ApiError::unavailable("the request was aborted: the server is shutting down")
}
