//! Test servers for the client tools: a scripted OpenAI mock (deterministic streams, and the
//! failures a real server is hard to make fail on purpose), and a live `tealight serve` on the
//! embedded tiny model.
#![allow(dead_code)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::process::BIN;
use crate::process::{free_port, serve_command};
pub const MOCK_MODEL: &str = "mock-model";

/// What the mock does with the n-th streamed request (0-based, in arrival order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    Normal,
    /// Answer with this HTTP status and an OpenAI error body.
    Status(u16),
    /// Stream this many chunks, then break the connection.
    CutAfter(usize),
    /// Stop this many tokens early, cleanly (`finish_reason: stop`).
    ShortBy(usize),
}

pub struct MockConfig {
    pub api_key: Option<String>,
    pub behaviour: fn(usize) -> Behaviour,
    pub token_delay: Duration,
    /// Chat answers start with reasoning (`reasoning_content` and `reasoning`).
    pub reasoning: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            behaviour: |_| Behaviour::Normal,
            token_delay: Duration::from_millis(1),
            reasoning: false,
        }
    }
}

struct Shared {
    config: MockConfig,
    count: AtomicUsize,
    requests: Mutex<Vec<Value>>,
}

/// A running mock; it lives until the test process ends.
pub struct Mock {
    pub base_url: String,
    shared: Arc<Shared>,
}

impl Mock {
    pub fn start(config: MockConfig) -> Mock {
        let shared = Arc::new(Shared {
            config,
            count: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/completions", post(completions))
            .route("/v1/chat/completions", post(chat))
            .with_state(Arc::clone(&shared));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Mock {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            shared,
        }
    }

    /// Bodies of the POSTs received so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(key) = &shared.config.api_key else {
        return true;
    };
    let expected = format!("Bearer {key}");
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

fn error(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let body =
        json!({"error": {"message": message, "type": "mock_error", "code": status.as_u16()}});
    (status, Json(body)).into_response()
}

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return error(401, "Invalid API Key");
    }
    Json(json!({"object": "list", "data": [{"id": MOCK_MODEL, "object": "model"}]})).into_response()
}

async fn completions(State(s): State<Arc<Shared>>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    respond(s, h, b, false).await
}

async fn chat(State(s): State<Arc<Shared>>, h: HeaderMap, Json(b): Json<Value>) -> Response {
    respond(s, h, b, true).await
}

async fn respond(shared: Arc<Shared>, headers: HeaderMap, body: Value, chat: bool) -> Response {
    if !authorized(&shared, &headers) {
        return error(401, "Invalid API Key");
    }
    shared.requests.lock().unwrap().push(body.clone());
    let n = shared.count.fetch_add(1, Ordering::SeqCst);
    let behaviour = (shared.config.behaviour)(n);
    if let Behaviour::Status(code) = behaviour {
        return error(code, "scripted failure");
    }
    let prompt_tokens = count_prompt(&body, chat);
    let pieces = answer_pieces(&body, chat);
    let short = match behaviour {
        Behaviour::ShortBy(k) => k,
        _ => 0,
    };
    let pieces: Vec<String> = pieces[..pieces.len().saturating_sub(short)].to_vec();

    let mut events: Vec<Value> = Vec::new();
    let id = format!("mock-{n}");
    if chat {
        events.push(chunk(&id, json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null})));
        if shared.config.reasoning {
            for r in ["Let me ", "think."] {
                events.push(chunk(&id, json!({"index": 0, "delta": {"reasoning_content": r, "reasoning": r}, "finish_reason": null})));
            }
        }
    }
    let reasoning_tokens = if chat && shared.config.reasoning {
        2
    } else {
        0
    };
    for p in &pieces {
        let choice = if chat {
            json!({"index": 0, "delta": {"content": p}, "finish_reason": null})
        } else {
            json!({"index": 0, "text": p, "finish_reason": null})
        };
        events.push(chunk(&id, choice));
    }
    let finish = if short > 0 || body.get("ignore_eos").is_none() {
        "stop"
    } else {
        "length"
    };
    let last = if chat {
        json!({"index": 0, "delta": {}, "finish_reason": finish})
    } else {
        json!({"index": 0, "text": "", "finish_reason": finish})
    };
    events.push(chunk(&id, last));
    let completion = pieces.len() + reasoning_tokens;
    if body.pointer("/stream_options/include_usage") == Some(&json!(true)) {
        events.push(json!({"id": id, "choices": [], "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }}));
    }
    let mut frames: Vec<Result<Bytes, std::io::Error>> = events
        .iter()
        .map(|e| Ok(Bytes::from(format!("data: {e}\n\n"))))
        .collect();
    frames.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    if let Behaviour::CutAfter(k) = behaviour {
        frames.truncate(k);
        frames.push(Err(std::io::Error::other("scripted cut")));
    }
    let delay = shared.config.token_delay;
    let stream = futures_util::stream::iter(frames).then(move |frame| async move {
        tokio::time::sleep(delay).await;
        frame
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn chunk(id: &str, choice: Value) -> Value {
    json!({"id": id, "object": "chunk", "model": MOCK_MODEL, "choices": [choice]})
}

/// One "token" per prompt id, or per whitespace-separated word of the text.
fn count_prompt(body: &Value, chat: bool) -> usize {
    if chat {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        return messages
            .iter()
            .map(|m| {
                m["content"]
                    .as_str()
                    .unwrap_or("")
                    .split_whitespace()
                    .count()
            })
            .sum();
    }
    match &body["prompt"] {
        Value::Array(ids) => ids.len(),
        Value::String(text) => text.split_whitespace().count(),
        _ => 0,
    }
}

/// `max_tokens` pieces when the output length is forced (benchmarks); otherwise an echo of the
/// last user message and the number of messages received (chat sessions).
fn answer_pieces(body: &Value, chat: bool) -> Vec<String> {
    if body.get("ignore_eos") == Some(&json!(true)) || !chat {
        let n = body["max_tokens"].as_u64().unwrap_or(16) as usize;
        return (0..n).map(|i| format!("t{i} ")).collect();
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages
        .last()
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned();
    let reply = format!("echo: {last} ({} messages)", messages.len());
    let words: Vec<&str> = reply.split(' ').collect();
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i + 1 < words.len() {
                format!("{w} ")
            } else {
                (*w).to_owned()
            }
        })
        .collect()
}

/// `tealight serve` on the embedded tiny model, killed on drop.
pub struct LiveServer {
    child: Child,
    pub base_url: String,
}

impl LiveServer {
    pub fn start(extra: &[&str]) -> LiveServer {
        let port = free_port();
        let mut flags = vec!["--max-model-len", "4096", "--kv-cache-memory", "64MiB"];
        flags.extend_from_slice(extra);
        let child = serve_command(port, &flags).spawn().unwrap();
        let server = LiveServer {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
        };
        let health = format!("http://127.0.0.1:{port}/health");
        let start = Instant::now();
        while ureq::get(&health).call().map(|r| r.status()).ok() != Some(200) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "tealight serve never became ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
