//! `tealight chat` driven through piped stdin: a scripted session against a mock whose answers
//! reveal what it was sent (so the transcript shows the history at work), reasoning kept out
//! of the history, Ctrl-C stopping an answer without leaving, the clear errors for a wrong key
//! or no server, and one session against a live `tealight serve`.

use crate::openai_mock;

use openai_mock::{BIN, LiveServer, Mock, MockConfig};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn chat(base_url: &str, args: &[&str], script: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("chat")
        .args(["--base-url", base_url])
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The transcript with the usage lines' timings cut (they vary run to run).
fn without_timings(transcript: &str) -> String {
    transcript
        .lines()
        .map(|l| match l.find(" · first token") {
            Some(at) if l.starts_with('[') => format!("{}]", &l[..at]),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_scripted_session_streams_keeps_history_clears_and_exits() {
    let mock = Mock::start(MockConfig {
        reasoning: true,
        ..MockConfig::default()
    });
    let out = chat(
        &mock.base_url,
        &[
            "--system",
            "be brief",
            "--max-tokens",
            "50",
            "--temperature",
            "0.3",
        ],
        "hello there\nand again\n\nclear\n重置\nafter clear\nexit\nnever sent\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = "\
>>> hello there
<think>
Let me think.
</think>
echo: hello there (2 messages)
[4 prompt + 7 completion tokens]
>>> and again
<think>
Let me think.
</think>
echo: and again (4 messages)
[11 prompt + 7 completion tokens]
>>> 
>>> clear
(conversation cleared)
>>> 重置
(conversation cleared)
>>> after clear
<think>
Let me think.
</think>
echo: after clear (2 messages)
[4 prompt + 7 completion tokens]
>>> exit";
    assert_eq!(without_timings(&text(&out.stdout)), expected);
    assert!(text(&out.stderr).contains("Chatting with mock-model"));

    let requests = mock.requests();
    assert_eq!(requests.len(), 3, "commands and empty lines are not sent");
    let second = &requests[1];
    assert_eq!(second["model"], "mock-model");
    assert_eq!(second["stream"], true);
    assert_eq!(second["max_tokens"], 50);
    assert_eq!(second["temperature"], 0.3);
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[0]["content"], "be brief");
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(
        messages[2]["content"], "echo: hello there (2 messages)",
        "the answer without its reasoning"
    );
    assert!(
        !second.to_string().contains("think"),
        "no reasoning in the history"
    );
    assert_eq!(requests[2]["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn ctrl_c_stops_the_answer_and_the_chat_goes_on() {
    let mock = Mock::start(MockConfig {
        token_delay: Duration::from_millis(300),
        ..MockConfig::default()
    });
    let mut child = Command::new(BIN)
        .args(["chat", "--base-url", &mock.base_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"a long answer please\n").unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Wait for the answer to start streaming ("echo:" arrives after a few chunks).
    let mut seen = Vec::new();
    let start = Instant::now();
    while !String::from_utf8_lossy(&seen).contains("echo:") {
        let mut byte = [0u8; 1];
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "output ended early");
        seen.push(byte[0]);
        assert!(start.elapsed() < Duration::from_secs(30));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    stdin.write_all(b"second\nexit\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "Ctrl-C during an answer does not end the chat"
    );
    let transcript = format!("{}{rest}", String::from_utf8_lossy(&seen));
    let lines: Vec<&str> = transcript.lines().collect();
    assert!(
        lines[1].starts_with("echo:") && !lines[1].contains("messages)"),
        "{transcript}"
    );
    assert!(lines[2].contains("interrupted"), "{transcript}");
    assert_eq!(lines[3], ">>> second");
    // The stopped answer stays in the history as far as it was shown.
    let second = &mock.requests()[1];
    assert_eq!(second["messages"].as_array().unwrap().len(), 3);
    assert!(
        second["messages"][1]["content"]
            .as_str()
            .unwrap()
            .starts_with("echo:")
    );
    assert_eq!(lines.last().copied(), Some(">>> exit"));
    let _ = stdout.fill_buf();
}

#[test]
fn a_wrong_key_and_a_missing_server_are_reported_plainly() {
    let mock = Mock::start(MockConfig {
        api_key: Some("111".into()),
        ..MockConfig::default()
    });
    let out = chat(&mock.base_url, &["--api-key", "nope"], "hi\n");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("rejected the API key (HTTP 401)"),
        "{stderr}"
    );
    assert!(stderr.contains("Invalid API Key"), "{stderr}");

    let ok = chat(&mock.base_url, &["--api-key", "111"], "hi\n");
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("echo: hi (1 messages)"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = chat(&format!("http://127.0.0.1:{port}/v1"), &[], "hi\n");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cannot reach the server at"), "{stderr}");
    assert!(stderr.contains("--base-url"), "{stderr}");
}

#[test]
fn a_failed_turn_is_reported_and_the_chat_continues() {
    let mock = Mock::start(MockConfig {
        behaviour: |n| {
            if n == 0 {
                openai_mock::Behaviour::Status(500)
            } else {
                openai_mock::Behaviour::Normal
            }
        },
        ..MockConfig::default()
    });
    let out = chat(&mock.base_url, &[], "first\nsecond\n");
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("HTTP 500"),
        "{}",
        text(&out.stderr)
    );
    // The failed question was taken back: the next request holds only the new one.
    assert!(text(&out.stdout).contains("echo: second (1 messages)"));
}

#[test]
fn a_session_with_a_live_tealight_serve() {
    let server = LiveServer::start(&["--served-model-name", "tiny"]);
    let out = chat(
        &server.base_url,
        &["--max-tokens", "5", "--temperature", "0"],
        "hello\nagain\nquit\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(text(&out.stderr).contains("Chatting with tiny"));
    let usage: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(usage.len(), 2, "{stdout}");
    assert!(
        usage.iter().all(|l| l.contains("+ 5 completion tokens")),
        "{stdout}"
    );
    assert!(
        usage.iter().all(|l| l.contains("finish: length")),
        "{stdout}"
    );
    // The second turn's prompt holds the first exchange.
    let prompt = |l: &str| -> usize { l[1..].split(' ').next().unwrap().parse().unwrap() };
    assert!(prompt(usage[1]) > prompt(usage[0]) + 5, "{stdout}");
}
