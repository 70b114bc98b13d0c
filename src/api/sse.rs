//! Server-sent events: `data: <json>` chunks, then `data: [DONE]`.
//!
//! A response streams one or more engine requests (`n` choices, several prompts). Their event
//! streams are merged, and a [`Renderer`] turns each engine event into chunks. The stream owns
//! the engine streams: when the client disconnects, axum drops it, which drops them, which
//! cancels the requests in the engine. A failure after the first chunk cannot change the HTTP
//! status any more, so it is sent as an error event (`data: {"error": {...}}`, which the
//! `openai` SDK raises as an exception) followed by `[DONE]`.
//!
//! While no event flows (queued, or a long prefill) a comment line (`: keep-alive`) goes out
//! after each `Limits::sse_keep_alive` of silence: proxies keep the connection, and a client
//! that went away is found by the failed write, which cancels its requests even before they
//! leave the queue. Clients ignore comment lines (the SSE spec).

use serde_json::Value;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use serde::Serialize;

use super::error::ApiError;
use crate::engine::{Event, EventStream};

/// One named event of an agent API's stream (`event: <kind>`): its type and its JSON body
/// (which repeats the type), as the Responses and Messages APIs send them.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub kind: String,
    pub data: Value,
}

/// Turns merged engine events into SSE chunks for one response.
pub trait Renderer: Send + 'static {
    /// Chunks sent before any engine event (the role chunk of each choice).
    fn start(&mut self) -> Vec<SseEvent>;
    /// Chunks for one event of choice `index`; `true` ends the stream (an error was sent).
    fn event(&mut self, index: usize, event: Event) -> (Vec<SseEvent>, bool);
    /// Whether every choice has finished.
    fn all_finished(&self) -> bool;
    /// Chunks after the last choice finished (the usage chunk).
    fn finish(&mut self) -> Vec<SseEvent>;
}

pub fn json_event<T: Serialize>(value: &T) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(value).unwrap_or_default())
}

pub fn error_event(error: &ApiError) -> SseEvent {
    SseEvent::default().data(error.body().to_string())
}

pub fn done_event() -> SseEvent {
    SseEvent::default().data("[DONE]")
}

/// Events of all `streams`, tagged with the stream's index, as they arrive.
fn merge(streams: Vec<EventStream>) -> BoxStream<'static, (usize, Event)> {
    let tagged = streams.into_iter().enumerate().map(|(i, s)| {
        stream::unfold(s, move |mut s| async move {
            s.recv().await.map(|e| ((i, e), s))
        })
        .boxed()
    });
    stream::select_all(tagged).boxed()
}

struct Driver<R> {
    merged: Option<BoxStream<'static, (usize, Event)>>,
    renderer: R,
    pending: VecDeque<SseEvent>,
    ended: bool,
}

/// The SSE response for `streams` rendered by `renderer`, with a keep-alive comment after each
/// `keep_alive` of silence.
pub fn response<R: Renderer>(
    streams: Vec<EventStream>,
    mut renderer: R,
    keep_alive: Duration,
) -> Response {
    let pending = renderer.start().into();
    let driver = Driver {
        merged: Some(merge(streams)),
        renderer,
        pending,
        ended: false,
    };
    let events = stream::unfold(driver, |mut d| async move {
        loop {
            if let Some(event) = d.pending.pop_front() {
                return Some((event, d));
            }
            if d.ended {
                return None;
            }
            let next = match d.merged.as_mut() {
                Some(merged) => merged.next().await,
                None => None,
            };
            match next {
                Some((index, event)) => {
                    let (events, stop) = d.renderer.event(index, event);
                    d.pending.extend(events);
                    if stop {
                        d.merged = None; // cancels the other choices
                        d.pending.push_back(done_event());
                        d.ended = true;
                    }
                }
                None => {
                    d.merged = None;
                    if d.renderer.all_finished() {
                        d.pending.extend(d.renderer.finish());
                    } else {
                        d.pending.push_back(error_event(&ApiError::internal(
                            "the engine stopped before the request finished",
                        )));
                    }
                    d.pending.push_back(done_event());
                    d.ended = true;
                }
            }
        }
    });
    with_keep_alive(
        events,
        keep_alive,
        SseEvent::default().comment("keep-alive"),
    )
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
