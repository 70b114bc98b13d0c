//! Prefill-only requests from the API's side: submitted at most a window at a time, each read
//! to its pooled result (an embedding's hidden state, a reranker's chosen logits).

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};

use super::error::{ApiError, ApiResult};
use super::state::Ready;
use crate::engine::{CheckedRequest, Event, FinishReason};

/// Every request's pooled state and prompt tokens, in order; at most `window` of them in the
/// engine at once, so that one large request cannot fill the waiting queue. A failure drops
/// the rest (their streams, which cancels them).
pub async fn run(
    ready: &Arc<Ready>,
    requests: Vec<CheckedRequest>,
    window: usize,
) -> ApiResult<Vec<(Vec<f32>, usize)>> {
    futures_util::stream::iter(requests)
        .map(|request| run_one(ready, request))
        .buffered(window.max(1))
        .try_collect()
        .await
}

async fn run_one(ready: &Ready, request: CheckedRequest) -> ApiResult<(Vec<f32>, usize)> {
    let mut stream = ready.engine.submit_checked(request, None)?;
    let mut pooled = None;
    loop {
        match stream.recv().await {
            Some(Event::Pooled(values)) => pooled = Some(values),
            Some(Event::Finished { reason, usage, .. }) => {
                return match (reason, pooled) {
                    (FinishReason::Abort, _) | (_, None) => {
                        Err(ApiError::unavailable("the server is shutting down"))
                    }
                    (_, Some(values)) => Ok((values, usage.prompt_tokens)),
                };
            }
            Some(Event::Error(message)) => return Err(ApiError::internal(message)),
            Some(Event::Delta { .. }) => {
                return Err(ApiError::internal("a pooling request generated text"));
            }
            None => {
                return Err(ApiError::internal(
                    "the engine stopped before the request finished",
                ));
            }
        }
    }
}
