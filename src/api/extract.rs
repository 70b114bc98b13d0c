//! `ApiJson<T>`: the JSON body extractor every POST route uses (`ApiJsonWith<T, G>` where a
//! request also carries a shared field group).
//!
//! Replaces axum's `Json` so that every way a body can be wrong ends in the API's error shape
//! with the offending field named: a syntax error, a field of the wrong type
//! (`param: "temperature"`), a missing required field (`param: "messages"`), a non-JSON
//! content type, or a body over the size limit (413). Like OpenAI and vLLM, unknown fields are
//! ignored, and a request without a `Content-Type` is read as JSON.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::types::generation::SharedGenerationFields;
use super::types::sampling::SamplingFields;

pub struct ApiJson<T>(pub T);

/// Bodies larger than this are parsed on the blocking pool ([`super::blocking_pool`]).
const INLINE_PARSE_BYTES: usize = 256 << 10;

impl<S: Send + Sync, T: DeserializeOwned + Send + 'static> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_body(req, state).await?;
        parse_off_the_workers(bytes, |b| parse_json(b).map(ApiJson)).await
    }
}

/// Views of one JSON body: the request `T` and the field groups `G` several requests share
/// (each parsed on its own, so an error in any names its field; a flattened group would lose
/// the name). Unknown fields are ignored by all, so each view skips the others'.
pub struct ApiJsonWith<T, G>(pub T, pub G);

/// A field group read as a view of a request body: one group, or a pair of them.
pub trait BodyView: Sized + Send + 'static {
    fn parse(bytes: &[u8]) -> Result<Self, ApiError>;
}

impl BodyView for SamplingFields {
    fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        parse_json(bytes)
    }
}

impl BodyView for SharedGenerationFields {
    fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        parse_json(bytes)
    }
}

impl<A: BodyView, B: BodyView> BodyView for (A, B) {
    fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        Ok((A::parse(bytes)?, B::parse(bytes)?))
    }
}

impl<S, T, G> FromRequest<S> for ApiJsonWith<T, G>
where
    S: Send + Sync,
    T: DeserializeOwned + Send + 'static,
    G: BodyView,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_body(req, state).await?;
        parse_off_the_workers(bytes, |b| Ok(ApiJsonWith(parse_json(b)?, G::parse(b)?))).await
    }
}

/// The body of a JSON request (a missing `Content-Type` is read as JSON).
async fn json_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if let Some(value) = req.headers().get(header::CONTENT_TYPE) {
        let mime = value.to_str().unwrap_or_default().to_ascii_lowercase();
        let essence = mime.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::bad_request(format!(
                "Content-Type must be application/json, got {essence:?}"
            )));
        }
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
        } else {
            ApiError::bad_request(format!("could not read the request body: {rejection}"))
        }
    })
}

/// Runs `parse` inline for small bodies, on the blocking pool for large ones.
async fn parse_off_the_workers<R: Send + 'static>(
    bytes: Bytes,
    parse: impl FnOnce(&[u8]) -> Result<R, ApiError> + Send + 'static,
) -> Result<R, ApiError> {
    if bytes.len() <= INLINE_PARSE_BYTES {
        return parse(&bytes);
    }
    super::blocking_pool::run(move || parse(&bytes)).await?
}

/// Deserialises `bytes`, naming the field at fault in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let syntax = matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        );
        let param = if syntax || path == "?" {
            None
        } else if path == "." || path.is_empty() {
            missing_field(&inner.to_string())
        } else {
            Some(path.clone())
        };
        let message = if syntax {
            format!("The request body is not valid JSON: {inner}")
        } else if param.is_some() && path != "." {
            format!("{path}: {inner}")
        } else {
            format!("Invalid request: {inner}")
        };
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message,
            param,
            overflow: None,
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// The field of serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Req {
        messages: Vec<String>,
        temperature: Option<f64>,
        nested: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        include_usage: Option<bool>,
    }

    fn param(body: &str) -> Option<String> {
        parse_json::<Req>(body.as_bytes()).unwrap_err().param
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(param(r#"{"temperature": 1}"#).as_deref(), Some("messages"));
        assert_eq!(
            param(r#"{"messages": [], "temperature": "hot"}"#).as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param(r#"{"messages": [], "nested": {"include_usage": 3}}"#).as_deref(),
            Some("nested.include_usage")
        );
        assert_eq!(
            param(r#"{"messages": [1]}"#).as_deref(),
            Some("messages[0]")
        );
        assert_eq!(param("{not json"), None);
        assert!(parse_json::<Req>(br#"{"messages": [], "unknown": 1}"#).is_ok());
        assert!(parse_json::<Req>(br#"{"messages": []} trailing"#).is_err());
    }
}
