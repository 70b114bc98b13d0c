//! The routes and the layers around them.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

use super::error::ApiError;
use super::state::AppState;
use super::{
    anthropic, auth, body_buffer, health, metrics, models, openai, openapi, rerank, tokenize,
};

pub fn router(state: AppState) -> Router {
    let config = state.config().clone();
    let mut router = Router::new()
        .route("/health", get(health::health))
        .route("/ping", get(health::health).post(health::health))
        .route("/version", get(health::version))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/models", get(models::list))
        .route("/v1/chat/completions", post(openai::chat::create))
        .route("/v1/completions", post(openai::completions::create))
        .route("/v1/embeddings", post(openai::embeddings::create))
        .route("/v1/rerank", post(rerank::jina::rerank))
        .route("/v2/rerank", post(rerank::jina::rerank))
        .route("/rerank", post(rerank::jina::rerank))
        .route("/v1/score", post(rerank::score::score))
        .route("/score", post(rerank::score::score))
        .route("/v1/responses", post(openai::responses::handler::create))
        .route(
            "/v1/responses/{id}",
            get(openai::responses::handler::retrieve),
        )
        .route("/v1/messages", post(anthropic::handler::create))
        .route(
            "/v1/messages/count_tokens",
            post(anthropic::handler::count_tokens),
        )
        .route("/", get(health::root))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/openapi.json", get(openapi::document))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .fallback(health::not_found)
        // Bodies are read once the key has been checked, within a time limit and a budget.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            body_buffer::buffer_body,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(DefaultBodyLimit::max(config.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            reject_oversized,
        ));
    if let Some(origins) = &config.allowed_origins {
        router = router.layer(cors(origins));
    }
    if config.log_requests {
        router = router.layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        );
    }
    router
        .layer(middleware::from_fn_with_state(
            state.clone(),
            answer_before_exit,
        ))
        .layer(middleware::from_fn(shape_errors))
        .layer(middleware::from_fn(anthropic_errors))
        .with_state(state)
}

/// Shutdown: a request still being handled when the drain's time is up is answered 503 (its
/// work abandoned) rather than losing its connection without a response.
async fn answer_before_exit(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    tokio::select! {
        response = next.run(req) => response,
        () = state.requests_cut() => {
            let mut response = ApiError::unavailable("the server is shutting down").into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// Errors on the Messages routes in Anthropic's shape, whichever layer produced them (the
/// handler, the key check, the body limit, the JSON extractor).
async fn anthropic_errors(req: Request, next: Next) -> Response {
    let anthropic = req.uri().path().starts_with("/v1/messages");
    let response = next.run(req).await;
    if anthropic {
        anthropic::error::in_anthropic_shape(response)
    } else {
        response
    }
}

/// CORS for browser clients; `*` allows any origin.
fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods(Any)
        .allow_headers(Any)
}

/// Refuses a body whose declared length is over the limit before reading any of it (the body
/// limit alone only trips after 32 MiB have been received).
async fn reject_oversized(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = state.config().limits.max_body_bytes as u64;
    if declared.is_some_and(|n| n > limit) {
        return ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is too large (limit {limit} bytes, --max-request-body-bytes)"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Gives error responses produced outside the handlers (axum's 405, a layer's 413) the API's
/// error body, keeping headers such as `Allow`.
async fn shape_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut shaped = ApiError::new(status, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped
}
