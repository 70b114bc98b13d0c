//! `/health`, `/ping` and `/version`: what load balancers and scripts poll.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::state::AppState;

/// 200 with an empty body once the model is loaded (as vLLM); 503 while loading or draining.
pub async fn health(State(state): State<AppState>) -> Response {
    match state.ready() {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /` (and `HEAD /`, which Claude Code sends without a key to see that the server is
/// up): 200 whenever the server is listening.
pub async fn root() -> Response {
    Json(json!({ "name": "tealight", "version": env!("CARGO_PKG_VERSION") })).into_response()
}

pub async fn version() -> Response {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") })).into_response()
}

/// Any route that does not exist.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("Route {} not found", uri.path()))
}
