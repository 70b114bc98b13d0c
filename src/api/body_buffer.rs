//! Reading request bodies: within a time limit, and within a budget of bytes buffered at once
//! across all connections.
//!
//! A client that sends its body slowly, or holds back the last byte, is answered 408 once
//! `--body-read-timeout` has passed since its request head arrived. Before reading, a body
//! reserves its declared length (or, without one, each chunk as it comes) from
//! `--max-buffered-body-bytes`; the reservation is given back when the buffered bytes are
//! freed (after the handler has parsed them), so bodies the server holds never add up past the
//! budget. A body that cannot get its share before the timeout is answered 503. Bodies up to
//! [`UNBUDGETED_BYTES`] are not counted: the connection cap bounds those, and ordinary requests
//! never wait behind large ones.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::body_budget::{BodyBudget, Reserved, UNBUDGETED_BYTES, UNIT};
use super::error::ApiError;
use super::state::AppState;

/// Why a body could not be read.
enum Refusal {
    TooSlow,
    BudgetFull,
    /// Over the body size limit (the limit, and the flag that sets it when there is one).
    TooLarge(usize, &'static str),
    Broken(String),
}

/// The middleware: replaces the request's streaming body with the buffered bytes.
pub async fn buffer_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let timeout = state.config().transport.body_read_timeout;
    let deadline = Instant::now() + timeout;
    let max_body = state.config().limits.max_body_bytes;
    let (parts, body) = req.into_parts();
    match read(body, state.body_budget(), deadline, max_body).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(refusal) => refuse(refusal, timeout),
    }
}

async fn read(
    mut body: Body,
    budget: &BodyBudget,
    deadline: Instant,
    max_body: usize,
) -> Result<Bytes, Refusal> {
    let (limit, flag) = if budget.total_bytes() < max_body {
        (budget.total_bytes(), " (--max-buffered-body-bytes)")
    } else {
        (max_body, " (--max-request-body-bytes)")
    };
    let declared = body.size_hint().exact().map(|n| n as usize);
    if declared.is_some_and(|n| n > limit) {
        return Err(Refusal::TooLarge(limit, flag));
    }
    let mut permits = Vec::new();
    // Bytes the body may reach without reserving more.
    let mut covered = UNBUDGETED_BYTES;
    if let Some(n) = declared.filter(|&n| n > UNBUDGETED_BYTES) {
        permits.push(
            budget
                .reserve(n, deadline)
                .await
                .ok_or(Refusal::BudgetFull)?,
        );
        covered = n;
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(Refusal::TooSlow),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(Refusal::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let len = bytes.len() + data.len();
        if len > limit {
            return Err(Refusal::TooLarge(limit, flag));
        }
        // Without a declared length (chunked), reserve as the body grows.
        if len > covered {
            let more = (len - covered).div_ceil(UNIT) * UNIT;
            permits.push(
                budget
                    .reserve(more, deadline)
                    .await
                    .ok_or(Refusal::BudgetFull)?,
            );
            covered += more;
        }
        bytes.extend_from_slice(&data);
    }
    if permits.is_empty() {
        return Ok(Bytes::from(bytes));
    }
    Ok(Bytes::from_owner(Reserved { bytes, permits }))
}

/// The refusal as an API error. The rest of the body is unread, so the connection cannot carry
/// another request: it is closed after the answer.
fn refuse(refusal: Refusal, timeout: Duration) -> Response {
    let error = match refusal {
        Refusal::TooSlow => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s (--body-read-timeout)",
                timeout.as_secs_f64()
            ),
        ),
        Refusal::BudgetFull => ApiError::unavailable(
            "the server is buffering too many request bodies at once \
             (--max-buffered-body-bytes); retry shortly",
        ),
        Refusal::TooLarge(limit, flag) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is too large (limit {limit} bytes{flag})"),
        ),
        Refusal::Broken(why) => {
            ApiError::bad_request(format!("could not read the request body: {why}"))
        }
    };
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn buffered_bodies_hold_their_share_of_the_budget_until_dropped() {
        let budget = BodyBudget::new(1 << 20);
        let body = Body::from(vec![7u8; 600 << 10]);
        let bytes = read(body, &budget, deadline(1000), 32 << 20)
            .await
            .ok()
            .unwrap();
        assert_eq!(bytes.len(), 600 << 10);
        assert_eq!(budget.available_bytes(), (1 << 20) - (600 << 10));
        // A second body of the same size does not fit while the first is held.
        let second = read(
            Body::from(vec![7u8; 600 << 10]),
            &budget,
            deadline(100),
            32 << 20,
        )
        .await;
        assert!(matches!(second, Err(Refusal::BudgetFull)));
        let view = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(budget.available_bytes(), (1 << 20) - (600 << 10));
        drop(view);
        assert_eq!(budget.available_bytes(), 1 << 20);
    }

    #[tokio::test]
    async fn small_bodies_skip_the_budget_and_oversized_ones_are_refused() {
        let budget = BodyBudget::new(UNBUDGETED_BYTES * 2);
        let small = read(Body::from(vec![1u8; 1000]), &budget, deadline(100), 1 << 20).await;
        assert_eq!(small.ok().unwrap().len(), 1000);
        assert_eq!(budget.available_bytes(), UNBUDGETED_BYTES * 2);
        let big = read(Body::from(vec![1u8; 2000]), &budget, deadline(100), 1500).await;
        assert!(matches!(
            big,
            Err(Refusal::TooLarge(1500, " (--max-request-body-bytes)"))
        ));
    }

    #[tokio::test]
    async fn a_held_back_body_times_out() {
        let budget = BodyBudget::new(1 << 20);
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, axum::Error>>(1);
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"{\"a\""))))
            .await
            .unwrap();
        let body = Body::new(http_body_util::StreamBody::new(tokio_stream_from(rx)));
        let started = std::time::Instant::now();
        let result = read(body, &budget, deadline(200), 1 << 20).await;
        assert!(matches!(result, Err(Refusal::TooSlow)));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(tx);
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Send + 'static {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
