//! Sends one streamed request and times it the way `vllm bench serve` does: TTFT is the time
//! to the first chunk that carries generated text, ITL the gaps between consecutive such
//! chunks, E2EL the time to the last event. Token counts come from the server's usage chunk.

use crate::client::{ClientError, Endpoint, SseEvent};
use serde_json::Value;
use std::time::{Duration, Instant};

/// What happened to one request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `None` when the request succeeded; otherwise why it failed.
    pub error: Option<Failure>,
    /// Seconds from sending to the first generated text.
    pub ttft: Option<f64>,
    /// Seconds between consecutive chunks with generated text.
    pub itl: Vec<f64>,
    /// Seconds from sending to the last event.
    pub e2el: f64,
    /// `usage.prompt_tokens`, if the server sent usage.
    pub prompt_tokens: Option<usize>,
    /// `usage.completion_tokens`, if the server sent usage.
    pub usage_output_tokens: Option<usize>,
    /// Chunks that carried generated text (a token can be split over several or a chunk can
    /// hold several, so this only cross-checks the usage count).
    pub content_chunks: usize,
    /// Generated text, kept for short checks and debugging (not reported by default).
    pub text: String,
}

/// A failed request, by kind (for counting) with the detail.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: String,
    pub message: String,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }

    /// Output tokens: the server's count, else the chunk count.
    pub fn output_tokens(&self) -> usize {
        self.usage_output_tokens.unwrap_or(self.content_chunks)
    }

    fn fail(mut self, kind: impl Into<String>, message: impl Into<String>) -> Self {
        self.error = Some(Failure {
            kind: kind.into(),
            message: message.into(),
        });
        self
    }
}

/// Sends `body` to `path` and reads the whole stream. `expected_output` marks a response with
/// fewer tokens as failed (a server that stopped early would otherwise look fast).
pub async fn measure(
    endpoint: &Endpoint,
    path: &str,
    body: &Value,
    expected_output: Option<usize>,
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    let outcome = match tokio::time::timeout(timeout, read_stream(endpoint, path, body, start))
        .await
    {
        Ok(outcome) => outcome,
        Err(_) => Outcome::default().fail("timeout", format!("no complete answer in {timeout:?}")),
    };
    let mut outcome = outcome;
    if outcome.e2el == 0.0 {
        outcome.e2el = start.elapsed().as_secs_f64();
    }
    match expected_output {
        Some(expected) if outcome.is_success() && outcome.output_tokens() < expected => {
            let got = outcome.output_tokens();
            outcome.fail(
                "short output",
                format!("{got} of {expected} requested output tokens"),
            )
        }
        _ => outcome,
    }
}

async fn read_stream(endpoint: &Endpoint, path: &str, body: &Value, start: Instant) -> Outcome {
    let mut out = Outcome::default();
    let mut stream = match endpoint.post_stream(path, body).await {
        Ok(stream) => stream,
        Err(e) => return out.fail(e.kind(), e.to_string()),
    };
    let mut last_token_at: Option<Instant> = None;
    let mut done = false;
    loop {
        let event = match stream.next().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(e) => return out.fail(e.kind(), e.to_string()),
        };
        let now = Instant::now();
        let data = match event {
            SseEvent::Done => {
                done = true;
                break;
            }
            SseEvent::Data(data) => data,
        };
        out.e2el = (now - start).as_secs_f64();
        let chunk: Value = match serde_json::from_str(&data) {
            Ok(chunk) => chunk,
            Err(e) => {
                let err = ClientError::Protocol(format!("chunk is not JSON ({e}): {data}"));
                return out.fail(err.kind(), err.to_string());
            }
        };
        if let Some(error) = chunk.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned);
            return out.fail("error in stream", message);
        }
        if let Some(text) = generated_text(&chunk) {
            match last_token_at {
                None => out.ttft = Some((now - start).as_secs_f64()),
                Some(previous) => out.itl.push((now - previous).as_secs_f64()),
            }
            last_token_at = Some(now);
            out.content_chunks += 1;
            out.text.push_str(&text);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            out.prompt_tokens = count(usage, "prompt_tokens");
            out.usage_output_tokens = count(usage, "completion_tokens");
        }
    }
    if !done {
        return out.fail("broken stream", "the stream ended without data: [DONE]");
    }
    if out.ttft.is_none() && out.usage_output_tokens.unwrap_or(0) > 0 {
        // A server that reported tokens but streamed no text (e.g. all whitespace trimmed):
        // time the first event as the first token so TTFT still exists.
        out.ttft = Some(out.e2el);
    }
    out
}

/// The generated text of a chunk: chat `delta.content` / reasoning / tool-call arguments, or
/// completions `text`. `None` when the chunk carries none (role chunk, usage chunk).
fn generated_text(chunk: &Value) -> Option<String> {
    let choice = chunk.get("choices")?.as_array()?.first()?;
    let mut text = String::new();
    if let Some(t) = choice.get("text").and_then(Value::as_str) {
        text.push_str(t);
    }
    if let Some(delta) = choice.get("delta") {
        for key in ["reasoning_content", "reasoning"] {
            if let Some(t) = delta.get(key).and_then(Value::as_str) {
                text.push_str(t);
                break; // servers may send both names with the same text
            }
        }
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    text.push_str(args);
                }
            }
        }
    }
    (!text.is_empty()).then_some(text)
}

fn count(usage: &Value, key: &str) -> Option<usize> {
    usage
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::generated_text;
    use serde_json::json;

    #[test]
    fn role_and_usage_chunks_carry_no_text() {
        let role = json!({"choices":[{"delta":{"role":"assistant","content":""}}]});
        let usage = json!({"choices":[],"usage":{"completion_tokens":3}});
        assert_eq!(generated_text(&role), None);
        assert_eq!(generated_text(&usage), None);
    }

    #[test]
    fn content_reasoning_and_completion_text_count() {
        let chat = json!({"choices":[{"delta":{"content":"hi"}}]});
        let think = json!({"choices":[{"delta":{"reasoning_content":"hm","reasoning":"hm"}}]});
        let completion = json!({"choices":[{"text":" x","index":0}]});
        assert_eq!(generated_text(&chat).as_deref(), Some("hi"));
        assert_eq!(generated_text(&think).as_deref(), Some("hm"));
        assert_eq!(generated_text(&completion).as_deref(), Some(" x"));
    }
}
