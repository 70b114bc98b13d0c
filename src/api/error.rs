//! The one mapping from failures to HTTP: every error response, including the router's own
//! (unknown route, wrong method, oversized or malformed body), has the body
//! `{"error": {"message", "type", "param", "code"}}`.
//!
//! The shape is vLLM's current one: `type` is an error class name and `code` the HTTP status as
//! a number. The class names are the ones the `openai` SDK raises for each status
//! (`BadRequestError`, `AuthenticationError`, `NotFoundError`, `RateLimitError`,
//! `InternalServerError`, ...), so a client sees the same name in the body and in the exception.
//! One exception to the numeric `code`: a prompt longer than the context carries OpenAI's
//! `context_length_exceeded`, the string agents (Codex) look for to compact their history.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::field_names::FieldNames;
use crate::error::Error;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    /// Set when the request is refused for not fitting the context.
    pub overflow: Option<ContextOverflow>,
}

/// How far a request is over the context: the tokens it asks for (prompt, plus completion
/// where one was asked for) and the context length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextOverflow {
    pub tokens: usize,
    pub max_model_len: usize,
}

/// The `code` of a context-length refusal (OpenAI's).
pub const CONTEXT_LENGTH_EXCEEDED: &str = "context_length_exceeded";

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            overflow: None,
        }
    }

    /// A 400 for a request that does not fit the context, coded `context_length_exceeded`.
    pub fn context_length(
        param: impl Into<String>,
        message: impl Into<String>,
        overflow: ContextOverflow,
    ) -> Self {
        Self {
            overflow: Some(overflow),
            ..Self::invalid(param, message)
        }
    }

    /// A 400 naming the request field at fault.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.into()),
            overflow: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The error class name for a status (the `openai` SDK's exception names where it has one).
    pub fn type_name(status: StatusCode) -> &'static str {
        match status.as_u16() {
            400 => "BadRequestError",
            401 => "AuthenticationError",
            403 => "PermissionDeniedError",
            404 => "NotFoundError",
            405 => "MethodNotAllowedError",
            408 => "RequestTimeoutError",
            409 => "ConflictError",
            413 => "RequestTooLargeError",
            415 => "UnsupportedMediaTypeError",
            422 => "UnprocessableEntityError",
            429 => "RateLimitError",
            503 => "ServiceUnavailableError",
            s if s >= 500 => "InternalServerError",
            _ => "BadRequestError",
        }
    }

    /// The JSON body (also sent as the data of an error event inside a stream).
    pub fn body(&self) -> Value {
        let code = match self.overflow {
            Some(_) => json!(CONTEXT_LENGTH_EXCEEDED),
            None => json!(self.status.as_u16()),
        };
        json!({
            "error": {
                "message": self.message,
                "type": Self::type_name(self.status),
                "param": self.param,
                "code": code,
            }
        })
    }
}

impl ApiError {
    /// An engine error as this API's clients see it: a refusal of a request part names the
    /// part's field in `names`, the table of the API that received the request.
    pub fn from_engine(err: Error, names: &FieldNames) -> Self {
        match err {
            Error::InvalidRequest { part, message } => Self::invalid(names.name(part), message),
            Error::OutOfRange { part, problem } => {
                let field = names.name(part);
                Self::invalid(field, format!("{field} {problem}"))
            }
            Error::ContextLength {
                part,
                message,
                tokens,
                max_model_len,
            } => Self::context_length(
                names.name(part),
                message,
                ContextOverflow {
                    tokens,
                    max_model_len,
                },
            ),
            // A template fails on what the request's messages contain (e.g. its
            // `raise_exception` for an unsupported role order).
            Error::Template(message) => {
                Self::invalid(names.prompt, format!("chat template: {message}"))
            }
            Error::Tokenizer(message) => Self::bad_request(format!("tokenizer: {message}")),
            Error::Overloaded(message) => Self::new(StatusCode::TOO_MANY_REQUESTS, message),
            Error::Unavailable(message) => Self::unavailable(message),
            other => {
                tracing::error!(error = %other, "internal error");
                Self::internal(other.to_string())
            }
        }
    }
}

/// Where no API's table applies, a part takes the engine's own name (vLLM's completions
/// fields); the generation pipeline converts with its API's table ([`FieldNames`]).
impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        Self::from_engine(err, &FieldNames::COMPLETIONS)
    }
}

/// The OpenAI body; the error itself rides along as a response extension, so that a route
/// speaking another dialect (Anthropic's, [`crate::api::anthropic::error`]) renders its own body
/// from the typed error rather than by re-reading this one.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(self);
        response
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;
