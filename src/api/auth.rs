//! `--api-key`: `Authorization: Bearer <key>` or `x-api-key: <key>` on every route except the
//! operational ones.
//!
//! `/`, `/health`, `/ping`, `/metrics` and `/version` stay open (vLLM leaves them open too, so load
//! balancers and Prometheus need no secret), as do CORS preflights. vLLM checks only `/v1/*`;
//! here `/tokenize` and `/detokenize` need the key as well, since they run the model's template
//! on client input. The comparison takes the same time wherever the keys differ.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;

const OPEN_PATHS: [&str; 5] = ["/", "/health", "/ping", "/metrics", "/version"];

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = state.config().api_key.as_deref() else {
        return next.run(req).await;
    };
    if req.method() == Method::OPTIONS || OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let presented = presented_key(req.headers());
    match presented {
        Some(token) if keys_match(token, expected) => next.run(req).await,
        Some(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "Incorrect API key provided.").into_response()
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
        )
        .into_response(),
    }
}

/// The key a request presents: `Authorization: Bearer <key>` (OpenAI clients) or
/// `x-api-key: <key>` (Anthropic clients, Claude Code with `ANTHROPIC_API_KEY`).
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    bearer.or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    })
}

/// Constant time in the contents; only the length can differ in timing.
fn keys_match(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}
