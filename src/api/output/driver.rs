//! One renderer trait and one driver for the four generation APIs.
//!
//! A response reads one or more engine requests (`n` choices, several prompts). Their event
//! streams are merged, tagged with the choice's index, and each event goes to the protocol's
//! [`Renderer`], which turns it into wire events and keeps what a non-streamed answer needs.
//! [`stream`] sends those events as SSE; [`collect`] runs the same renderer to its end and hands
//! it back, holding the final object, so streamed and whole answers always agree.
//!
//! The driver owns the engine streams: when the client disconnects, axum drops the SSE stream,
//! which drops them, which cancels the requests in the engine; when the renderer is finished
//! (every choice done, or the response failed) the rest are dropped too. A failure after the
//! first event cannot change the HTTP status any more, so the renderer reports it in its
//! protocol's error event. While no event flows (queued, or a long prefill) the renderer's
//! keep-alive goes out after each `--sse-keep-alive` of silence: proxies keep the connection, and
//! a client that went away is found by the failed write, which cancels its requests even before
//! they leave the queue.

use std::time::Duration;

use axum::Json;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self as futures_stream, BoxStream, StreamExt};
use serde::Serialize;

use crate::api::error::{ApiError, ApiResult};
use crate::api::sse::with_keep_alive;
use crate::engine::{Event, EventStream};

/// Turns the merged engine events of one response into a protocol's events.
pub trait Renderer: Send + 'static {
    /// One event of the protocol's stream.
    type Event: Send + 'static;
    /// The answer sent whole (not streamed): the final object the renderer built.
    type Whole: Serialize;

    /// The events before any engine event.
    fn start(&mut self) -> Vec<Self::Event>;
    /// The events for engine event `event` of choice `index`.
    fn on_engine(&mut self, index: usize, event: Event) -> Vec<Self::Event>;
    /// Ends the response in `error` (the engine went away before it finished).
    fn fail(&mut self, error: &ApiError) -> Vec<Self::Event>;
    /// Whether the response is over: every choice finished, or it failed.
    fn is_finished(&self) -> bool;
    /// The events after the last one (chat's usage chunk and `[DONE]`).
    fn end(&mut self) -> Vec<Self::Event> {
        Vec::new()
    }
    /// An event as it goes on the wire.
    fn to_sse(event: Self::Event) -> SseEvent;
    /// The final object, once the response is over; the error it failed with, if it did.
    fn into_whole(self) -> ApiResult<Self::Whole>;
    /// What is sent after each `--sse-keep-alive` of silence.
    fn keep_alive() -> SseEvent {
        SseEvent::default().comment("keep-alive")
    }
}

const ENGINE_GONE: &str = "the engine stopped before the request finished";

/// The failure of a generation response whose engine request was a pooling one: a bug, never
/// the client's doing (pooling requests are rendered by the embeddings route alone).
pub fn pooled_in_generation() -> ApiError {
    ApiError::internal("a generation request received a pooled result")
}

/// Events of all `streams`, tagged with the stream's index, as they arrive.
fn merge(streams: Vec<EventStream>) -> BoxStream<'static, (usize, Event)> {
    let tagged = streams.into_iter().enumerate().map(|(i, s)| {
        futures_stream::unfold(s, move |mut s| async move {
            s.recv().await.map(|e| ((i, e), s))
        })
        .boxed()
    });
    futures_stream::select_all(tagged).boxed()
}

/// The events of the next engine event, and whether the response is over: finished, failed,
/// or left without an engine (then the renderer has failed it).
async fn step<R: Renderer>(
    merged: &mut BoxStream<'static, (usize, Event)>,
    renderer: &mut R,
) -> (Vec<R::Event>, bool) {
    match merged.next().await {
        Some((index, event)) => {
            let events = renderer.on_engine(index, event);
            (events, renderer.is_finished())
        }
        None => (renderer.fail(&ApiError::internal(ENGINE_GONE)), true),
    }
}

/// The SSE response for `streams` rendered by `renderer`, with its keep-alive after each
/// `interval` of silence.
pub fn stream<R: Renderer>(
    streams: Vec<EventStream>,
    mut renderer: R,
    interval: Duration,
) -> Response {
    let first = renderer.start();
    let state = (Some(merge(streams)), renderer);
    let rest = futures_stream::unfold(state, |(merged, mut renderer)| async move {
        let mut merged = merged?;
        let (mut events, over) = match renderer.is_finished() {
            true => (Vec::new(), true),
            false => step(&mut merged, &mut renderer).await,
        };
        // Dropping the merged streams cancels whatever still runs.
        let merged = if over {
            events.extend(renderer.end());
            None
        } else {
            Some(merged)
        };
        Some((futures_stream::iter(events), (merged, renderer)))
    })
    .flatten();
    let events = futures_stream::iter(first).chain(rest).map(R::to_sse);
    with_keep_alive(events, interval, R::keep_alive())
}

/// Runs `renderer` over `streams` to the end without sending anything; the renderer then holds
/// the final object. Every choice is read as it runs (a choice nobody reads would be parked by
/// the engine).
pub async fn collect<R: Renderer>(streams: Vec<EventStream>, mut renderer: R) -> R {
    renderer.start();
    let mut merged = merge(streams);
    let mut over = renderer.is_finished();
    while !over {
        over = step(&mut merged, &mut renderer).await.1;
    }
    renderer
}

/// The HTTP answer to a generation request: the SSE stream when `streamed`, else the final
/// object as JSON (or the error the response failed with).
pub async fn respond<R: Renderer>(
    streams: Vec<EventStream>,
    renderer: R,
    streamed: bool,
    keep_alive: Duration,
) -> ApiResult<Response> {
    if streamed {
        return Ok(stream(streams, renderer, keep_alive));
    }
    let whole = collect(streams, renderer).await.into_whole()?;
    Ok(Json(whole).into_response())
}
