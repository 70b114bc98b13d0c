//! A minimal client of the OpenAI HTTP API, shared by `tealight bench` and `tealight chat`:
//! base-URL handling, the bearer key, `/v1/models`, and streamed POSTs read as server-sent
//! events. It talks to any OpenAI-compatible server, not only tealight.

mod error;
mod sse;

pub use error::ClientError;
pub use sse::{SseDecoder, SseEvent};

use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// Where the server is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Base URL ending in `/v1`, without a trailing slash.
    base: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl Endpoint {
    /// `base_url` may be given with or without the `/v1` suffix (`http://host:8000` as vLLM's
    /// bench takes it, or `http://host:8000/v1` as the OpenAI SDK does); both mean the same.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self, ClientError> {
        let base = normalize_base_url(base_url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Benchmarks open many streams at once; the default pool would otherwise be fine, but
            // idle connections kept by a server that closes them cause spurious broken streams.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(Self {
            base,
            api_key: api_key.filter(|k| !k.is_empty()),
            http,
        })
    }

    /// The base URL, ending in `/v1`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The full URL of `path` (e.g. `/chat/completions`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends `request` (with the key, when there is one) and returns the response once its
    /// status is known to be 2xx.
    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let request = match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::from_send(url, e))?;
        ClientError::check_status(url, response).await
    }

    /// Ids of the served models, in the server's order.
    pub async fn models(&self) -> Result<Vec<String>, ClientError> {
        let url = self.url("/models");
        let response = self.send(&url, self.http.get(&url)).await?;
        let body: Value = response
            .json_value()
            .await
            .map_err(|e| ClientError::Protocol(format!("{url}: {e}")))?;
        let ids = body
            .get("data")
            .and_then(Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ids)
    }

    /// The first served model: the default when `--model` is not given.
    pub async fn first_model(&self) -> Result<String, ClientError> {
        self.models().await?.into_iter().next().ok_or_else(|| {
            ClientError::Protocol(format!(
                "{}: the server lists no models",
                self.url("/models")
            ))
        })
    }

    /// The server's Prometheus page (`/metrics` beside `/v1`).
    pub async fn server_metrics(&self) -> Result<String, ClientError> {
        let url = format!("{}/metrics", self.base.trim_end_matches("/v1"));
        let response = self.send(&url, self.http.get(&url)).await?;
        response
            .text()
            .await
            .map_err(|e| ClientError::Protocol(format!("{url}: {e}")))
    }

    /// POSTs `body` to `path` and returns the response once its status is known to be 2xx.
    /// Errors say whether the server could not be reached, rejected the key, or answered with
    /// an error (its message included).
    pub async fn post_stream(&self, path: &str, body: &Value) -> Result<EventStream, ClientError> {
        let url = self.url(path);
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json_body(body);
        let response = self.send(&url, request).await?;
        Ok(EventStream {
            body: Box::pin(response.bytes_stream()),
            decoder: SseDecoder::new(),
            queued: std::collections::VecDeque::new(),
            ended: false,
        })
    }
}

/// The events of one streamed response, in arrival order.
pub struct EventStream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    decoder: SseDecoder,
    queued: std::collections::VecDeque<SseEvent>,
    ended: bool,
}

impl EventStream {
    /// The next event; `Ok(None)` when the body ended. A connection that breaks mid-body is an
    /// error, so a cut stream is never mistaken for a complete one.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, ClientError> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.queued.extend(self.decoder.push(&chunk)),
                Some(Err(e)) => return Err(ClientError::Broken(e.to_string())),
                None => {
                    self.ended = true;
                    self.queued.extend(self.decoder.finish());
                }
            }
        }
    }
}

/// Accepts `host:port`, `http://host:port`, `.../v1` and `.../v1/`; returns `scheme://host:port/v1`.
fn normalize_base_url(base_url: &str) -> Result<String, ClientError> {
    let trimmed = base_url.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(ClientError::Setup("--base-url is empty".into()));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let parsed = reqwest::Url::parse(&with_scheme)
        .map_err(|e| ClientError::Setup(format!("--base-url {base_url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ClientError::Setup(format!(
            "--base-url {base_url:?}: only http and https are supported"
        )));
    }
    if with_scheme.ends_with("/v1") {
        Ok(with_scheme)
    } else {
        Ok(format!("{with_scheme}/v1"))
    }
}

/// JSON bodies without reqwest's `json` feature: serde_json is already here, and this keeps
/// the body exactly as built (key order preserved).
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }
}

/// Reads a whole response body as JSON.
trait JsonValue {
    async fn json_value(self) -> Result<Value, String>;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Result<Value, String> {
        let bytes = self.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| format!("response is not JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_base_url;

    #[test]
    fn base_urls_with_and_without_v1_mean_the_same() {
        for url in [
            "http://localhost:8000",
            "http://localhost:8000/",
            "http://localhost:8000/v1",
            "http://localhost:8000/v1/",
            "localhost:8000",
        ] {
            assert_eq!(
                normalize_base_url(url).ok().as_deref(),
                Some("http://localhost:8000/v1"),
                "{url}"
            );
        }
        assert!(normalize_base_url("").is_err());
        assert!(normalize_base_url("ftp://x").is_err());
    }
}
