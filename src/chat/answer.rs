//! Streams one answer to the screen as it arrives: reasoning (`delta.reasoning_content`, or
//! `delta.reasoning` as newer vLLM names it) dimmed, then the content. Ctrl-C stops the
//! answer, not the program: the stream is dropped, which closes the connection and lets the
//! server cancel the request.

use super::style::Style;
use crate::client::{ClientError, Endpoint, SseEvent};
use serde_json::Value;
use std::io::Write;
use std::time::Instant;

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub content: String,
    pub reasoning: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Chunks that carried text, the fallback count when the server sends no usage.
    pub chunks: u64,
    /// Seconds to the first text, and in all.
    pub first_token: Option<f64>,
    pub elapsed: f64,
    pub finish_reason: Option<String>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
}

impl Answer {
    /// The usage line shown after the answer.
    pub fn usage_line(&self) -> String {
        let completion = self.completion_tokens.unwrap_or(self.chunks);
        let mut parts = Vec::new();
        match self.prompt_tokens {
            Some(prompt) => parts.push(format!("{prompt} prompt + {completion} completion tokens")),
            None => parts.push(format!("{completion} completion tokens")),
        }
        if let Some(first) = self.first_token {
            parts.push(format!("first token {first:.2} s"));
            let decode = self.elapsed - first;
            if completion > 1 && decode > 0.0 {
                let rate = (completion - 1) as f64 / decode;
                parts.push(format!("{rate:.1} tok/s"));
            }
        }
        parts.push(format!("{:.2} s", self.elapsed));
        if self.interrupted {
            parts.push("interrupted".into());
        } else if let Some(reason) = self.finish_reason.as_deref().filter(|r| *r != "stop") {
            parts.push(format!("finish: {reason}"));
        }
        format!("[{}]", parts.join(" · "))
    }
}

/// Sends `body` and prints the answer to `out` as it streams; `interrupt` resolving stops it.
pub async fn stream_answer(
    endpoint: &Endpoint,
    body: &Value,
    out: &mut impl Write,
    style: Style,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<Answer, ClientError> {
    let start = Instant::now();
    let mut answer = Answer::default();
    let mut printer = Printer {
        out,
        style,
        in_reasoning: false,
        wrote: false,
    };
    tokio::pin!(interrupt);
    let mut stream = tokio::select! {
        stream = endpoint.post_stream("/chat/completions", body) => stream?,
        _ = &mut interrupt => {
            answer.interrupted = true;
            answer.elapsed = start.elapsed().as_secs_f64();
            return Ok(answer);
        }
    };
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = &mut interrupt => {
                answer.interrupted = true;
                break;
            }
        };
        let data = match event {
            Ok(Some(SseEvent::Data(data))) => data,
            Ok(Some(SseEvent::Done)) | Ok(None) => break,
            Err(e) => {
                printer.end();
                return Err(e);
            }
        };
        let chunk: Value = serde_json::from_str(&data)
            .map_err(|e| ClientError::Protocol(format!("chunk is not JSON ({e}): {data}")))?;
        if let Some(error) = chunk.get("error") {
            printer.end();
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned);
            return Err(ClientError::Protocol(format!(
                "the server stopped the answer: {message}"
            )));
        }
        if let Some(choice) = chunk.pointer("/choices/0") {
            let delta = choice.get("delta");
            let reasoning = delta.and_then(|d| {
                ["reasoning_content", "reasoning"]
                    .iter()
                    .find_map(|k| d.get(*k).and_then(Value::as_str))
            });
            let content = delta.and_then(|d| d.get("content")).and_then(Value::as_str);
            let has_text =
                reasoning.is_some_and(|r| !r.is_empty()) || content.is_some_and(|c| !c.is_empty());
            if has_text {
                answer.chunks += 1;
                answer
                    .first_token
                    .get_or_insert(start.elapsed().as_secs_f64());
            }
            if let Some(r) = reasoning.filter(|r| !r.is_empty()) {
                printer.reasoning(r);
                answer.reasoning.push_str(r);
            }
            if let Some(c) = content.filter(|c| !c.is_empty()) {
                printer.content(c);
                answer.content.push_str(c);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                answer.finish_reason = Some(reason.to_owned());
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            answer.prompt_tokens = usage.get("prompt_tokens").and_then(Value::as_u64);
            answer.completion_tokens = usage.get("completion_tokens").and_then(Value::as_u64);
        }
    }
    printer.end();
    answer.elapsed = start.elapsed().as_secs_f64();
    Ok(answer)
}

/// Writes deltas as they come, switching styles between reasoning and content.
struct Printer<'a, W: Write> {
    out: &'a mut W,
    style: Style,
    in_reasoning: bool,
    wrote: bool,
}

impl<W: Write> Printer<'_, W> {
    fn reasoning(&mut self, text: &str) {
        if !self.in_reasoning {
            let _ = self.out.write_all(self.style.reasoning_start().as_bytes());
            self.in_reasoning = true;
        }
        self.write(text);
    }

    fn content(&mut self, text: &str) {
        self.close_reasoning();
        self.write(text);
    }

    fn write(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
        self.wrote = true;
    }

    fn close_reasoning(&mut self) {
        if self.in_reasoning {
            let _ = self.out.write_all(self.style.reasoning_end().as_bytes());
            self.in_reasoning = false;
        }
    }

    /// Ends the answer on a line of its own.
    fn end(&mut self) {
        self.close_reasoning();
        if self.wrote {
            let _ = self.out.write_all(b"\n");
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::Answer;

    #[test]
    fn the_usage_line_reports_tokens_and_speed() {
        let answer = Answer {
            prompt_tokens: Some(12),
            completion_tokens: Some(11),
            first_token: Some(0.5),
            elapsed: 1.5,
            finish_reason: Some("length".into()),
            ..Answer::default()
        };
        assert_eq!(
            answer.usage_line(),
            "[12 prompt + 11 completion tokens · first token 0.50 s · 10.0 tok/s · 1.50 s · finish: length]"
        );
    }
}
