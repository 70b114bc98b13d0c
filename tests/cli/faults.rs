//! `tealight serve` as a process under faults: bad sizes refused before anything divides by
//! them, ignored flags said to be ignored, and SIGTERM under load: every accepted stream
//! finishes, new requests get 503 until the process exits cleanly.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{BIN, free_port, serve_command};

#[test]
fn zero_sizes_are_refused_with_one_clear_error() {
    for flag in ["--block-size", "--max-num-seqs", "--max-num-batched-tokens"] {
        let out = Command::new(BIN)
            .args(["serve", "--port", "0", flag, "0"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{flag} must be positive")),
            "{flag}: {stderr}"
        );
    }
}

#[test]
fn ignored_flags_say_so_in_help() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--trust-remote-code",
        "--enforce-eager",
        "--disable-log-stats",
    ] {
        let line = help
            .lines()
            .skip_while(|l| !l.contains(flag))
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(line.contains("Ignored"), "{flag}: {line}");
    }
}

/// A fresh connection each time (no agent): new clients during the drain.
fn status_of(url: &str) -> Result<u16, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    match agent.get(url).call() {
        Ok(r) => Ok(r.status()),
        Err(ureq::Error::Status(code, _)) => Ok(code),
        Err(e) => Err(e.to_string()),
    }
}

struct StreamEnd {
    finish: Option<String>,
    completion_tokens: Option<u64>,
    done: bool,
    errors: Vec<Value>,
}

fn stream(url: &str, max_tokens: u64) -> StreamEnd {
    let resp = ureq::post(url)
        .send_json(json!({"messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens, "ignore_eos": true, "stream": true,
            "stream_options": {"include_usage": true}}))
        .unwrap();
    let mut end = StreamEnd {
        finish: None,
        completion_tokens: None,
        done: false,
        errors: Vec::new(),
    };
    for line in BufReader::new(resp.into_reader()).lines() {
        let Ok(line) = line else { break };
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            end.done = true;
            break;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if v.get("error").is_some() {
            end.errors.push(v.clone());
        }
        if let Some(f) = v["choices"]
            .get(0)
            .and_then(|c| c["finish_reason"].as_str())
        {
            end.finish = Some(f.to_owned());
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            end.completion_tokens = Some(n);
        }
    }
    end
}

#[test]
fn sigterm_under_load_finishes_accepted_streams_and_refuses_new_ones() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = serve_command(
        port,
        &[
            "--max-model-len",
            "2048",
            "--kv-cache-memory",
            "64MiB",
            "--max-num-seqs",
            "4",
            "--shutdown-timeout",
            "60",
        ],
    )
    .spawn()
    .unwrap();
    let start = Instant::now();
    while status_of(&format!("{base}/health")) != Ok(200) {
        assert!(start.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Eight streams: four running, four queued behind them when the signal comes.
    let url = format!("{base}/v1/chat/completions");
    let streams: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || stream(&url, 120))
        })
        .collect();
    let metrics = format!("{base}/metrics");
    let start = Instant::now();
    loop {
        let text = ureq::get(&metrics).call().unwrap().into_string().unwrap();
        let waiting = text
            .lines()
            .find(|l| l.starts_with("tealight:num_requests_waiting "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
        if waiting == Some(4.0) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{text}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let term_at = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    // New clients during the drain: 503, from /health and from the generation routes.
    assert_eq!(status_of(&format!("{base}/health")), Ok(503));
    let refused = ureq::post(&url)
        .send_json(json!({"messages": [{"role": "user", "content": "late"}], "max_tokens": 1}));
    match refused {
        Err(ureq::Error::Status(503, r)) => {
            let body: Value = r.into_json().unwrap();
            assert_eq!(body["error"]["type"], "ServiceUnavailableError");
        }
        other => panic!("a request during the drain got {other:?}"),
    }
    for handle in streams {
        let end = handle.join().unwrap();
        assert!(end.errors.is_empty(), "{:?}", end.errors);
        assert!(end.done);
        assert_eq!(end.finish.as_deref(), Some("length"));
        assert_eq!(end.completion_tokens, Some(120));
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(term_at.elapsed() < Duration::from_secs(60), "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    eprintln!("drained and exited {:?} after SIGTERM", term_at.elapsed());
}
