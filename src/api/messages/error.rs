//! Anthropic's error shape, `{"type": "error", "error": {"type", "message"}}`, for every
//! failure on the Messages routes — including the ones the router's layers produce (missing
//! key, oversized or malformed body), which are rewritten from the API's usual shape.

use axum::http::StatusCode;
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
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
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

/// The Anthropic body for an error response already rendered in the API's usual shape
/// (`{"error": {"message", ...}}`); any other body is kept as the message text.
pub fn reshape(status: StatusCode, openai_body: &[u8]) -> Value {
    let message = serde_json::from_slice::<Value>(openai_body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(openai_body).trim().to_owned());
    body(status, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let openai = ApiError::new(StatusCode::UNAUTHORIZED, "Incorrect API key provided.").body();
        let reshaped = reshape(StatusCode::UNAUTHORIZED, openai.to_string().as_bytes());
        assert_eq!(reshaped["error"]["type"], "authentication_error");
        assert_eq!(reshaped["error"]["message"], "Incorrect API key provided.");
        assert_eq!(
            reshape(StatusCode::NOT_FOUND, b"nope")["error"]["message"],
            "nope"
        );
        assert_eq!(
            error_type(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error"
        );
        assert_eq!(error_type(StatusCode::INTERNAL_SERVER_ERROR), "api_error");
    }
}
