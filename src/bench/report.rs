//! The text report, laid out like `vllm bench serve`'s "Serving Benchmark Result" block so
//! numbers can be compared side by side, plus the failure breakdown and cross-check warnings.

use super::result::{BenchResult, percentile_label};
use std::fmt::Write;

const WIDTH: usize = 50;

/// The report of one run.
pub fn render(result: &BenchResult) -> String {
    let c = &result.config;
    let m = &result.metrics;
    let mut s = String::new();
    line(&mut s, &banner(" Serving Benchmark Result ", '='));
    row(&mut s, "Successful requests:", m.completed);
    row(&mut s, "Failed requests:", m.failed);
    for (kind, n) in &m.failures {
        row(&mut s, &format!("  {kind}:"), n);
    }
    match c.max_concurrency {
        Some(n) => row(&mut s, "Maximum request concurrency:", n),
        None => row(&mut s, "Maximum request concurrency:", "none"),
    }
    row(&mut s, "Request rate (req/s):", c.request_rate);
    row(&mut s, "Benchmark duration (s):", f2(m.duration));
    row(&mut s, "Total input tokens:", m.total_input_tokens);
    row(&mut s, "Total generated tokens:", m.total_output_tokens);
    row(
        &mut s,
        "Request throughput (req/s):",
        f2(m.request_throughput),
    );
    row(
        &mut s,
        "Output token throughput (tok/s):",
        f2(m.output_throughput),
    );
    row(
        &mut s,
        "Total Token throughput (tok/s):",
        f2(m.total_token_throughput),
    );
    let sections = [
        ("Time to First Token", "TTFT"),
        ("Time per Output Token (excl. 1st token)", "TPOT"),
        ("Inter-token Latency", "ITL"),
        ("End-to-end Latency", "E2EL"),
    ];
    for ((title, short), (_, summary)) in sections.iter().zip(result.summaries()) {
        line(&mut s, &banner(title, '-'));
        row(&mut s, &format!("Mean {short} (ms):"), f2(summary.mean));
        row(&mut s, &format!("Median {short} (ms):"), f2(summary.median));
        for &(p, v) in &summary.percentiles {
            row(
                &mut s,
                &format!("P{} {short} (ms):", percentile_label(p)),
                f2(v),
            );
        }
    }
    if let Some(spec) = &result.spec {
        line(&mut s, &banner("Speculative Decoding", '-'));
        row(
            &mut s,
            "Acceptance rate (%):",
            f2(spec.acceptance_rate() * 100.0),
        );
        row(&mut s, "Acceptance length:", f2(spec.acceptance_length()));
        row(&mut s, "Drafts:", spec.drafts);
        row(&mut s, "Draft tokens:", spec.draft_tokens);
        row(&mut s, "Accepted tokens:", spec.accepted_tokens);
    }
    line(&mut s, &"=".repeat(WIDTH));
    for warning in warnings(result) {
        line(&mut s, &format!("warning: {warning}"));
    }
    for example in &m.failure_examples {
        line(&mut s, &format!("failure: {example}"));
    }
    s
}

/// What a reader should know before trusting the numbers.
pub fn warnings(result: &BenchResult) -> Vec<String> {
    let m = &result.metrics;
    let mut w = Vec::new();
    if m.usage_missing > 0 {
        w.push(format!(
            "{} request(s) came without a usage chunk; their output tokens were counted by \
             streamed chunks",
            m.usage_missing
        ));
    }
    if m.chunk_mismatches > 0 {
        w.push(format!(
            "{} request(s) streamed a different number of text chunks than the completion_tokens \
             the server reported (tokens merged or split across chunks); ITL counts chunks",
            m.chunk_mismatches
        ));
    }
    if m.completed == 0 {
        w.push("no request succeeded: the latency numbers are empty".into());
    }
    w
}

fn banner(title: &str, fill: char) -> String {
    let pad = WIDTH.saturating_sub(title.chars().count());
    let left = pad / 2;
    format!(
        "{}{title}{}",
        fill.to_string().repeat(left),
        fill.to_string().repeat(pad - left)
    )
}

fn row(s: &mut String, label: &str, value: impl std::fmt::Display) {
    let value = value.to_string();
    let _ = writeln!(s, "{label:<40} {value:<10}");
}

fn line(s: &mut String, text: &str) {
    let _ = writeln!(s, "{text}");
}

fn f2(v: f64) -> String {
    format!("{v:.2}")
}
