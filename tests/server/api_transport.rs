//! The HTTP transport over real sockets: slow heads and held-back bodies are timed out, idle
//! keep-alive connections are closed, and a stream outlives the keep-alive timeout.

use crate::http_client;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http_client::*;
use serde_json::json;

fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        start(&[
            "--header-read-timeout",
            "1",
            "--keep-alive-timeout",
            "1",
            "--body-read-timeout",
            "1",
        ])
    })
}

fn connect(s: &TestServer) -> TcpStream {
    let addr = s.base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection; returns what it sent and how long that took.
fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_head_sent_too_slowly_is_cut_off() {
    let mut stream = connect(server());
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (_, waited) = read_until_closed(&mut stream);
    assert!(waited < Duration::from_secs(4), "closed after {waited:?}");
}

#[test]
fn a_held_back_body_is_answered_408() {
    let mut stream = connect(server());
    stream
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"messages\":",
        )
        .unwrap();
    let (reply, waited) = read_until_closed(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("--body-read-timeout"), "{reply}");
    assert!(waited < Duration::from_secs(4), "answered after {waited:?}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let mut stream = connect(server());
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (reply, waited) = read_until_closed(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}

#[test]
fn a_stream_longer_than_the_keep_alive_timeout_is_not_cut() {
    let s = server();
    // Longer than the 1 s timeouts on the tiny model, in a release build too (500 tokens took
    // 0.74 s there).
    let started = Instant::now();
    let (events, done) = s.stream(
        "/v1/completions",
        &json!({"prompt": "hello", "max_tokens": 1500, "stream": true,
                "temperature": 0, "ignore_eos": true}),
    );
    let took = started.elapsed();
    assert!(done, "the stream ended without [DONE] after {took:?}");
    assert!(events.len() > 1);
    // Otherwise the test proves nothing: the stream must outlast the 1 s timeouts.
    assert!(
        took > Duration::from_millis(1500),
        "the stream took only {took:?}"
    );
}
