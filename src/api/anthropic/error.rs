//! Anthropic's error shape, `{"type": "error", "error": {"type", "message"}}`, for every
//! failure on the Messages routes — including the ones the router's layers produce (missing
//! key, oversized or malformed body): each is rendered from the [`ApiError`] its response
//! carries ([`in_anthropic_shape`]).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::error::ApiError;

/// Anthropic's error type for an HTTP status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

pub fn body(status: StatusCode, message: &str) -> Value {
    json!({"type": "error", "error": error_object(status, message)})
}

/// The `error` member of a body, and of a stream's `error` event: one table for both.
pub fn error_object(status: StatusCode, message: &str) -> Value {
    json!({"type": error_type(status), "message": message})
}

/// A refusal for a prompt over the context in Anthropic's words, the text Claude Code reads to
/// compact its conversation: `prompt is too long: N tokens > M maximum`. Other errors as they are.
pub fn prompt_too_long(mut error: ApiError) -> ApiError {
    if let Some(o) = error.overflow {
        error.message = format!(
            "prompt is too long: {} tokens > {} maximum",
            o.tokens, o.max_model_len
        );
    }
    error
}

pub fn from_api_error(error: &ApiError) -> Value {
    body(error.status, &error.message)
}

/// `response` with Anthropic's body when it is an error: rendered from the [`ApiError`] it
/// carries (every error response of this server does; see its `IntoResponse`), or from the
/// status alone for one that somehow does not. Headers other than the body's are kept.
pub fn in_anthropic_shape(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, _openai_body) = response.into_parts();
    let body = match parts.extensions.get::<ApiError>() {
        Some(error) => from_api_error(error),
        None => body(status, status.canonical_reason().unwrap_or("error")),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn context_refusals_use_anthropic_words() {
        let overflow = crate::api::error::ContextOverflow {
            tokens: 9000,
            max_model_len: 4096,
        };
        let e = prompt_too_long(ApiError::context_length("messages", "long", overflow));
        assert_eq!(e.message, "prompt is too long: 9000 tokens > 4096 maximum");
        assert_eq!(from_api_error(&e)["error"]["type"], "invalid_request_error");
        let other = prompt_too_long(ApiError::invalid("max_tokens", "too big"));
        assert_eq!(other.message, "too big");
    }

    #[test]
    fn shapes() {
        let e = ApiError::invalid("max_tokens", "too big");
        assert_eq!(
            from_api_error(&e),
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "too big"}})
        );
        let unauthorized = ApiError::new(StatusCode::UNAUTHORIZED, "Incorrect API key provided.");
        let response = in_anthropic_shape(unauthorized.into_response());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        let bytes = body_bytes(response);
        let reshaped: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(reshaped["error"]["type"], "authentication_error");
        assert_eq!(reshaped["error"]["message"], "Incorrect API key provided.");
        let bare = Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("nope"))
            .unwrap();
        let bytes = body_bytes(in_anthropic_shape(bare));
        let reshaped: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(reshaped["error"]["type"], "not_found_error");
        assert_eq!(reshaped["error"]["message"], "Not Found");
        assert_eq!(
            error_type(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error"
        );
        assert_eq!(error_type(StatusCode::INTERNAL_SERVER_ERROR), "api_error");
    }

    fn body_bytes(response: Response) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 16))
            .unwrap()
            .to_vec()
    }
}
