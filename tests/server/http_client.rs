//! Helpers for the HTTP tests: an in-process server on an ephemeral port over the tiny model,
//! and a small blocking client that returns status + JSON for any outcome.
#![allow(dead_code)]

use clap::Parser;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::sync::OnceLock;
use std::time::Duration;
use tealight::api::{AppState, serve_on};
use tealight::cli::serve::ServeArgs;

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: ServeArgs,
}

pub const KEY: &str = "test-key";

/// Flags every test server gets: a small context and KV pool so tests stay light.
const BASE_FLAGS: [&str; 5] = [
    "--max-model-len",
    "4096",
    "--kv-cache-memory",
    "64MiB",
    "--disable-log-requests",
];

pub struct TestServer {
    pub base: String,
    pub key: Option<String>,
    agent: ureq::Agent,
}

/// What `serve` with `flags` says before it would listen: the flags' and the loading's error.
pub fn try_load(flags: &[&str]) -> Result<(), String> {
    let mut argv = vec!["serve"];
    argv.extend(BASE_FLAGS);
    argv.extend(flags);
    let args = Wrapper::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .args;
    tealight::server::load(&args)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Starts a server with `flags` on a background runtime; it lives as long as the test process.
pub fn start(flags: &[&str]) -> TestServer {
    let mut argv = vec!["serve"];
    argv.extend(BASE_FLAGS);
    argv.extend(flags);
    let args = Wrapper::parse_from(argv).args;
    let loaded = tealight::server::load(&args).expect("model loads");
    let config = tealight::server::server_config(&args).expect("valid flags");
    let key = config.api_key.clone();
    let state = AppState::with_ready(config, loaded);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            serve_on(listener, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    let addr = rx.recv().expect("server started");
    TestServer {
        base: format!("http://{addr}"),
        key,
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(120))
            .build(),
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|n| response.header(&n).map(|v| (n.clone(), v.to_owned())))
        .collect();
    let mut body = String::new();
    response
        .into_reader()
        .take(64 << 20)
        .read_to_string(&mut body)
        .expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: &str, path: &str, key: Option<&str>) -> ureq::Request {
        let mut req = self.agent.request(method, &self.url(path));
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        req
    }

    pub fn get(&self, path: &str) -> Reply {
        reply(self.request("GET", path, self.key.as_deref()).call())
    }

    pub fn get_with_key(&self, path: &str, key: Option<&str>) -> Reply {
        reply(self.request("GET", path, key).call())
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(path, Some("application/json"), body.to_string().as_bytes())
    }

    pub fn post_raw(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let mut req = self.request("POST", path, self.key.as_deref());
        if let Some(ct) = content_type {
            req = req.set("Content-Type", ct);
        }
        reply(req.send_bytes(body))
    }

    pub fn method(&self, method: &str, path: &str) -> Reply {
        reply(self.request(method, path, self.key.as_deref()).call())
    }

    /// Opens a streaming request and returns the raw reader (drop it to disconnect).
    pub fn open_stream(
        &self,
        path: &str,
        body: &Value,
    ) -> (u16, Option<String>, Box<dyn BufRead + Send>) {
        let result = self
            .request("POST", path, self.key.as_deref())
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport error: {e}"),
        };
        let status = response.status();
        let ct = response.header("content-type").map(str::to_owned);
        (status, ct, Box::new(BufReader::new(response.into_reader())))
    }

    /// A whole SSE response: the JSON of each `data:` line, and whether it ended with `[DONE]`.
    /// Also checks the framing: only `data:` lines, each event followed by a blank line.
    pub fn stream(&self, path: &str, body: &Value) -> (Vec<Value>, bool) {
        let (status, ct, reader) = self.open_stream(path, body);
        let mut raw = String::new();
        let mut reader = reader;
        reader.read_to_string(&mut raw).expect("stream body");
        assert_eq!(status, 200, "{raw}");
        assert!(
            ct.as_deref()
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{ct:?}"
        );
        parse_sse(&raw)
    }

    pub fn chat(&self, body: Value) -> Value {
        let r = self.post("/v1/chat/completions", &body);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// Waits until the engine has nothing running or waiting and all KV blocks are free.
    pub fn wait_idle(&self) {
        let start = std::time::Instant::now();
        loop {
            let m = self.get("/metrics").body;
            if metric(&m, "tealight:num_requests_running") == Some(0.0)
                && metric(&m, "tealight:num_requests_waiting") == Some(0.0)
                && metric(&m, "tealight:kv_cache_blocks_used") == Some(0.0)
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "engine never went idle:\n{m}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn parse_sse(raw: &str) -> (Vec<Value>, bool) {
    assert!(
        raw.ends_with("\n\n"),
        "stream must end with a blank line: {raw:?}"
    );
    let mut events = Vec::new();
    let mut done = false;
    for block in raw.split("\n\n").filter(|b| !b.is_empty()) {
        if block.starts_with(':') {
            continue; // a keep-alive comment
        }
        assert!(!done, "data after [DONE]: {block:?}");
        let data = block
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not a data line: {block:?}"));
        assert!(!data.contains('\n'), "one data line per event: {block:?}");
        if data == "[DONE]" {
            done = true;
        } else {
            events.push(serde_json::from_str(data).expect("chunk JSON"));
        }
    }
    (events, done)
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

pub fn tokenizer() -> tealight::tokenizer::Tokenizer {
    tealight::tokenizer::Tokenizer::from_file(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny/tokenizer.json"),
    )
    .unwrap()
}

// Servers and fixtures the HTTP test binaries share.

/// The vLLM-style setup most users run: key, reasoning and tool parsers, two served names.
pub fn server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| {
        start(&[
            "--api-key",
            KEY,
            "--served-model-name",
            "tiny",
            "tiny-alias",
            "--reasoning-parser",
            "qwen3",
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "hermes",
        ])
    })
}

/// For tests that fill `small_server`'s two slots: held for the test, so that two of them never
/// take each other's slots.
pub fn small_server_alone() -> (&'static TestServer, std::sync::MutexGuard<'static, ()>) {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    (small_server(), guard)
}

/// No key, no parsers: one running sequence and one waiting slot, to provoke 429.
pub fn small_server() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--max-num-seqs", "1", "--max-waiting", "1"]))
}

pub fn fixture_case(name: &str) -> Value {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference.json"),
    )
    .unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    let model = all["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["shape"] == "tiny")
        .unwrap();
    model["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
        .clone()
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn hello() -> Value {
    json!([{"role": "user", "content": "Hello there"}])
}

pub fn assert_error(reply: &Reply, status: u16, kind: &str, param: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    let err = &body["error"];
    assert_eq!(err["type"], kind, "{}", reply.body);
    // The code is the status, but for a request over the context: OpenAI's string, which
    // agents look for to compact their history.
    if err["code"] == "context_length_exceeded" {
        assert!(
            err["message"]
                .as_str()
                .is_some_and(|m| m.contains("maximum context length")),
            "{}",
            reply.body
        );
    } else {
        assert_eq!(err["code"], status, "{}", reply.body);
    }
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        reply.body
    );
    match param {
        Some(p) => assert_eq!(err["param"], p, "{}", reply.body),
        None => assert!(err.get("param").is_some(), "param key present"),
    }
}

pub fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}})
}

/// An SSE body of named events (`event: NAME` then `data: JSON`, as the Responses and Messages
/// APIs send them); keep-alive comments are skipped. Checks that every event is named, that the
/// name is the data's `type`, and the framing.
pub fn parse_named_sse(raw: &str) -> Vec<(String, Value)> {
    assert!(raw.ends_with("\n\n"), "{raw:?}");
    raw.split("\n\n")
        .filter(|b| !b.is_empty() && !b.starts_with(':'))
        .map(|block| {
            let (name, data) = block
                .strip_prefix("event: ")
                .and_then(|b| b.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not an event: line then a data: line: {block:?}"));
            let data: Value = serde_json::from_str(data).expect("event JSON");
            assert_eq!(data["type"], name, "{block}");
            (name.to_owned(), data)
        })
        .collect()
}

impl TestServer {
    /// Opens a stream, reads `lines` lines, and hangs up; then waits for the engine to drop
    /// the request (it must, within 20 s).
    pub fn hang_up_after(&self, path: &str, body: &Value, lines: usize) {
        let (status, _, mut reader) = self.open_stream(path, body);
        assert_eq!(status, 200);
        let mut line = String::new();
        for _ in 0..lines {
            line.clear();
            reader.read_line(&mut line).unwrap();
        }
        drop(reader);
        let start = std::time::Instant::now();
        self.wait_idle();
        assert!(start.elapsed() < Duration::from_secs(20));
    }
}
