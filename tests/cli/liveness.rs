//! The engine thread's death as a client and a supervisor see it: accepted requests end with an
//! error, `/health` turns 503, new requests are refused, and the process exits non-zero; a
//! warm-up step that fails stops start-up with one error line. Faults are injected through the
//! test-only `TEALIGHT_FAULT_PANIC_AFTER_STEPS` variable.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::process::{free_port, serve_command};

fn serve(port: u16, fault: &str) -> Child {
    serve_command(
        port,
        &["--max-model-len", "4096", "--kv-cache-memory", "64MiB"],
    )
    .env("TEALIGHT_FAULT_PANIC_AFTER_STEPS", fault)
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

fn status(agent: &ureq::Agent, url: &str) -> Option<u16> {
    match agent.get(url).call() {
        Ok(r) => Some(r.status()),
        Err(ureq::Error::Status(code, _)) => Some(code),
        Err(_) => None,
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

#[test]
fn engine_death_fails_requests_turns_health_503_and_exits_non_zero() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // The engine panics at its 30th step: inside the stream below.
    let mut child = serve(port, "30");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let start = Instant::now();
    while status(&agent, &format!("{base}/health")) != Some(200) {
        assert!(start.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(10));
    }

    let resp = ureq::post(&format!("{base}/v1/chat/completions"))
        .send_json(json!({"messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 500, "ignore_eos": true, "stream": true}))
        .unwrap();
    let mut lines = BufReader::new(resp.into_reader()).lines();
    let mut error = None;
    let mut done = false;
    let mut finish = None;
    while let Some(Ok(line)) = lines.next() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if v.get("error").is_some() {
            error = Some(
                v["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        if let Some(f) = v["choices"]
            .get(0)
            .and_then(|c| c["finish_reason"].as_str())
        {
            finish = Some(f.to_owned());
        }
    }
    let died_at = Instant::now();
    assert!(done, "the stream ends with [DONE]");
    assert_eq!(finish, None, "the stream did not finish normally");
    let error = error.expect("the in-flight stream got an error event");
    assert!(error.contains("engine"), "{error}");

    // Not healthy any more, and new work is refused, until the process is gone.
    if let Some(code) = status(&agent, &format!("{base}/health")) {
        assert_eq!(code, 503, "health after the engine died");
    }
    let refused = ureq::post(&format!("{base}/v1/completions"))
        .send_json(json!({"prompt": "hi", "max_tokens": 2}));
    match refused {
        Err(ureq::Error::Status(code, _)) => assert_eq!(code, 503),
        Err(ureq::Error::Transport(_)) => {} // already gone
        Ok(r) => panic!("a request was accepted by a dead engine: {}", r.status()),
    }

    let exit = wait_exit(&mut child, Duration::from_secs(20));
    assert!(!exit.success(), "exit status {exit:?}");
    eprintln!("exited {:?} after the fault", died_at.elapsed());
    let stderr = stderr_of(&mut child);
    assert!(stderr.contains("the engine died"), "{stderr}");
}

#[test]
fn a_failing_warm_up_step_stops_start_up_with_one_error_line() {
    let port = free_port();
    let mut child = serve(port, "warmup");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let exit = wait_exit(&mut child, Duration::from_secs(60));
    assert!(!exit.success());
    let stderr = stderr_of(&mut child);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("warm-up"), "{stderr}");
    // It never reported healthy.
    assert_eq!(
        status(&agent, &format!("http://127.0.0.1:{port}/health")),
        None
    );
}
