//! `tealight bench` end to end: against a live `tealight serve` (exact request and token
//! counts, both endpoints, a sweep with its plot), and against a scripted mock for the failures
//! a benchmark must count rather than drop (HTTP errors, cut streams, short outputs, bad key,
//! no server).

use crate::openai_mock;

use openai_mock::{BIN, Behaviour, LiveServer, Mock, MockConfig};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn bench(base_url: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("bench")
        .args(["--base-url", base_url, "--no-progress"])
        .args(extra)
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn live_server_counts_are_exact_on_both_endpoints() {
    let server = LiveServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for endpoint in ["completions", "chat"] {
        let result = dir.path().join(format!("{endpoint}.json"));
        let out = bench(
            &server.base_url,
            &[
                "--endpoint",
                endpoint,
                "--input-len",
                "48",
                "--output-len",
                "6",
                "--num-prompts",
                "5",
                "--max-concurrency",
                "2",
                "--result-file",
                result.to_str().unwrap(),
                "--save-detailed",
            ],
        );
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{endpoint}: {}", text(&out.stderr));
        assert!(stdout.contains("============ Serving Benchmark Result ============"));
        assert!(stdout.contains("Mean TTFT (ms):"));
        assert!(stdout.contains("P99 E2EL (ms):"));
        let r = read_json(&result);
        assert_eq!(r["completed"], 5, "{endpoint}: {r}");
        assert_eq!(r["failed"], 0);
        // The completions prompt is sent as ids; the chat prompt's text is shortened by the
        // template's tokens, so the server counts the same 48 either way.
        assert_eq!(r["total_input_tokens"], 5 * 48, "{endpoint}");
        assert_eq!(r["total_output_tokens"], 5 * 6, "{endpoint}");
        assert_eq!(r["usage_missing"], 0);
        assert_eq!(r["output_lens"], serde_json::json!([6, 6, 6, 6, 6]));
        assert!(r["mean_ttft_ms"].as_f64().unwrap() > 0.0);
        assert!(r["p99_e2el_ms"].as_f64().unwrap() >= r["median_e2el_ms"].as_f64().unwrap());
        assert_eq!(
            r["itls"][0].as_array().unwrap().len(),
            5,
            "one gap per token after the first"
        );
    }
}

#[test]
fn a_sweep_reports_each_level_and_draws_the_plot() {
    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("sweep.json");
    let out = bench(
        &mock.base_url,
        &[
            "--input-len",
            "16",
            "--output-len",
            "4",
            "--num-prompts",
            "6",
            "--sweep-concurrency",
            "1,2,4",
            "--result-file",
            result.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches("Serving Benchmark Result").count(), 3);
    let r = read_json(&result);
    assert_eq!(r["sweep_concurrency"], serde_json::json!([1, 2, 4]));
    for run in r["runs"].as_array().unwrap() {
        assert_eq!(run["completed"], 6);
        assert_eq!(run["total_output_tokens"], 24);
        assert_eq!(run["total_input_tokens"], 96);
    }
    let svg = std::fs::read_to_string(dir.path().join("sweep.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("max concurrency"));
    let png = std::fs::read(dir.path().join("sweep.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000, "a drawn plot, not an empty image");
}

#[test]
fn failures_are_counted_by_kind_and_never_dropped() {
    let mock = Mock::start(MockConfig {
        behaviour: |n| match n % 5 {
            1 => Behaviour::Status(500),
            2 => Behaviour::CutAfter(3),
            3 => Behaviour::ShortBy(2),
            _ => Behaviour::Normal,
        },
        ..MockConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("r.json");
    let out = bench(
        &mock.base_url,
        &[
            "--endpoint",
            "chat",
            "--input-len",
            "32",
            "--output-len",
            "8",
            "--num-prompts",
            "10",
            "--max-concurrency",
            "1",
            "--num-warmups",
            "0",
            "--result-file",
            result.to_str().unwrap(),
            "--save-detailed",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Successful requests:                     4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Failed requests:                         6"),
        "{stdout}"
    );
    assert!(stdout.contains("  HTTP 500:"), "{stdout}");
    assert!(stdout.contains("  broken stream:"), "{stdout}");
    assert!(stdout.contains("  short output:"), "{stdout}");
    let r = read_json(&result);
    assert_eq!(r["completed"], 4);
    assert_eq!(r["failed"], 6);
    assert_eq!(r["failures"]["HTTP 500"], 2);
    assert_eq!(r["failures"]["broken stream"], 2);
    assert_eq!(r["failures"]["short output"], 2);
    assert_eq!(r["total_output_tokens"], 4 * 8);
    let errors = r["errors"].as_array().unwrap();
    assert!(errors[1].as_str().unwrap().contains("scripted failure"));
    assert!(errors[3].as_str().unwrap().contains("6 of 8"));
    assert_eq!(errors[0], "");
}

#[test]
fn requests_fix_the_output_length_and_stream_with_usage() {
    let mock = Mock::start(MockConfig::default());
    let out = bench(
        &mock.base_url,
        &[
            "--input-len",
            "20",
            "--output-len",
            "3",
            "--num-prompts",
            "2",
            "--seed",
            "7",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let requests = mock.requests();
    assert_eq!(requests.len(), 3, "one warm-up and two measured requests");
    for body in &requests {
        assert_eq!(
            body["model"],
            openai_mock::MOCK_MODEL,
            "the first listed model"
        );
        assert_eq!(body["max_tokens"], 3);
        assert_eq!(body["min_tokens"], 3);
        assert_eq!(body["ignore_eos"], true);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["prompt"].as_array().unwrap().len(), 20);
    }
    assert!(
        requests[1..]
            .iter()
            .all(|r| r["prompt"] != requests[0]["prompt"]),
        "the warm-up prompt is not measured (a prefix cache would flatter it)"
    );
    assert_ne!(requests[1]["prompt"], requests[2]["prompt"]);
    // The same seed gives the same prompts.
    let again = Mock::start(MockConfig::default());
    bench(
        &again.base_url,
        &[
            "--input-len",
            "20",
            "--output-len",
            "3",
            "--num-prompts",
            "2",
            "--seed",
            "7",
        ],
    );
    // The measured requests go out concurrently, so compare them in a canonical order.
    let measured = |requests: &[Value]| {
        let mut prompts: Vec<String> = requests[1..]
            .iter()
            .map(|r| r["prompt"].to_string())
            .collect();
        prompts.sort();
        prompts
    };
    assert_eq!(measured(&again.requests()), measured(&requests));
}

#[test]
fn a_wrong_key_or_no_server_is_a_clear_error() {
    let mock = Mock::start(MockConfig {
        api_key: Some("right".into()),
        ..MockConfig::default()
    });
    let out = bench(
        &mock.base_url,
        &["--api-key", "wrong", "--num-prompts", "1"],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("rejected the API key") && stderr.contains("--api-key"),
        "{stderr}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bench(&format!("http://127.0.0.1:{port}"), &["--num-prompts", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot reach the server"),
        "{}",
        text(&out.stderr)
    );

    // A warm-up that fails stops the run with the server's message.
    let failing = Mock::start(MockConfig {
        behaviour: |_| Behaviour::Status(503),
        ..MockConfig::default()
    });
    let out = bench(
        &failing.base_url,
        &["--num-prompts", "2", "--input-len", "8"],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warm-up request failed") && stderr.contains("HTTP 503"),
        "{stderr}"
    );
}

#[test]
fn sweep_levels_and_the_warm_up_never_repeat_a_prompt() {
    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let out = bench(
        &mock.base_url,
        &[
            "--input-len",
            "12",
            "--output-len",
            "2",
            "--num-prompts",
            "3",
            "--sweep-concurrency",
            "1,2",
            "--plot",
            dir.path().join("p").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut prompts: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r["prompt"].to_string())
        .collect();
    assert_eq!(
        prompts.len(),
        1 + 2 * 3,
        "one warm-up, three prompts per level"
    );
    prompts.sort();
    prompts.dedup();
    assert_eq!(prompts.len(), 7, "every request has a prompt of its own");
}
