//! `tealight serve` as a process: its help, the API key from the environment, `/health` while
//! loading, and a graceful drain on SIGTERM that lets a running stream finish.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{BIN, free_port, serve_command};

#[test]
fn serve_help_reads_well() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--model",
        "--served-model-name",
        "--host",
        "--port",
        "--api-key",
        "--max-model-len",
        "--gpu-memory-utilization",
        "--dtype",
        "--max-num-seqs",
        "--max-num-batched-tokens",
        "--reasoning-parser",
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "--chat-template",
        "--generation-config",
        "--allowed-origins",
        "--disable-log-requests",
        "--seed",
        "--shutdown-timeout",
    ] {
        assert!(help.contains(flag), "{flag} missing from serve --help");
    }
    assert!(help.contains("[default: 8000]"));
    assert!(help.contains("[default: 0.0.0.0]"));
}

#[test]
fn unknown_parser_fails_at_startup() {
    let out = Command::new(BIN)
        .args(["serve", "--port", "0", "--reasoning-parser", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reasoning-parser"));
}

fn status_of(agent: &ureq::Agent, url: &str, key: Option<&str>) -> Result<(u16, String), String> {
    let mut req = agent.get(url);
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    match req.call() {
        Ok(r) => Ok((r.status(), r.into_string().unwrap_or_default())),
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn health_while_loading_env_key_and_sigterm_drain() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = serve_command(
        port,
        &[
            "--max-model-len",
            "4096",
            "--kv-cache-memory",
            "64MiB",
            "--shutdown-timeout",
            "30",
        ],
    )
    .env("TEALIGHT_API_KEY", "env-key")
    .spawn()
    .unwrap();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();

    // Until ready, /health answers 503 with the error body (or the port is not open yet).
    let start = Instant::now();
    loop {
        match status_of(&agent, &format!("{base}/health"), None) {
            Ok((200, _)) => break,
            Ok((503, body)) => {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["error"]["type"], "ServiceUnavailableError");
            }
            Ok((code, body)) => panic!("unexpected /health {code}: {body}"),
            Err(_) => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never became ready"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // The key came from the environment.
    assert_eq!(
        status_of(&agent, &format!("{base}/v1/models"), None)
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        status_of(&agent, &format!("{base}/v1/models"), Some("env-key"))
            .unwrap()
            .0,
        200
    );

    // A long stream is running when SIGTERM arrives; it still completes.
    let stream_url = format!("{base}/v1/chat/completions");
    let reader = std::thread::spawn(move || {
        let resp = ureq::post(&stream_url)
            .set("Authorization", "Bearer env-key")
            .send_json(json!({"messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 150, "ignore_eos": true, "stream": true,
                "stream_options": {"include_usage": true}}))
            .unwrap();
        let mut lines = BufReader::new(resp.into_reader()).lines();
        let mut finish = None;
        let mut usage = None;
        let mut done = false;
        while let Some(Ok(line)) = lines.next() {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
                break;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            assert!(v.get("error").is_none(), "{v}");
            if let Some(f) = v["choices"]
                .get(0)
                .and_then(|c| c["finish_reason"].as_str())
            {
                finish = Some(f.to_owned());
            }
            if v["usage"].is_object() {
                usage = Some(v["usage"]["completion_tokens"].clone());
            }
        }
        (finish, usage, done, Instant::now())
    });
    // Let the stream start, then ask the server to stop.
    std::thread::sleep(Duration::from_millis(300));
    let term_at = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(100));
    // Draining: not healthy any more (503 on a kept-alive connection, or no listener).
    if let Ok((code, _)) = status_of(&agent, &format!("{base}/health"), None) {
        assert_eq!(code, 503);
    }
    let (finish, usage, done, ended_at) = reader.join().unwrap();
    assert!(
        ended_at > term_at,
        "the stream was still running at SIGTERM"
    );
    eprintln!("stream ended {:?} after SIGTERM", ended_at - term_at);
    assert!(done, "stream ended with [DONE]");
    assert_eq!(finish.as_deref(), Some("length"));
    assert_eq!(usage, Some(json!(150)));

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "server did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("exited {:?} after SIGTERM", term_at.elapsed());
    assert!(status.success(), "{status:?}");
}
