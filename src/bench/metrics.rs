//! Turns the outcomes of a run into the numbers `vllm bench serve` reports. Latency metrics
//! cover successful requests only; failures are counted by kind, never dropped silently.

use super::measure::Outcome;
use super::stats::Summary;
use std::collections::BTreeMap;

/// The measured side of one benchmark run.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub completed: usize,
    pub failed: usize,
    /// Failures by kind ("HTTP 500", "broken stream", "short output", ...).
    pub failures: BTreeMap<String, usize>,
    /// The first few failure messages, to show what went wrong.
    pub failure_examples: Vec<String>,
    pub duration: f64,
    /// Prompt tokens of successful requests, as the server counted them (`usage`), falling
    /// back to the client's count for a request without usage.
    pub total_input_tokens: usize,
    pub total_output_tokens: usize,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub ttft: Summary,
    pub tpot: Summary,
    pub itl: Summary,
    pub e2el: Summary,
    /// Successful requests whose chunk count differs from the server's token count.
    pub chunk_mismatches: usize,
    /// Successful requests that came without a usage chunk (tokens counted by chunks).
    pub usage_missing: usize,
    /// Per request, in prompt order (0 / empty for failures), as vLLM's result file has them.
    pub input_lens: Vec<usize>,
    pub output_lens: Vec<usize>,
    pub ttfts: Vec<f64>,
    pub itls: Vec<Vec<f64>>,
    pub errors: Vec<String>,
}

/// How many failure messages a report quotes.
const EXAMPLES: usize = 3;

/// Aggregates `outcomes`; `client_input_lens[i]` is prompt `i`'s token count on the client.
pub fn compute(
    outcomes: &[Outcome],
    client_input_lens: &[usize],
    duration: f64,
    percentiles: &[f64],
) -> Metrics {
    let mut m = Metrics {
        completed: 0,
        failed: 0,
        failures: BTreeMap::new(),
        failure_examples: Vec::new(),
        duration,
        total_input_tokens: 0,
        total_output_tokens: 0,
        request_throughput: 0.0,
        output_throughput: 0.0,
        total_token_throughput: 0.0,
        ttft: Summary::default(),
        tpot: Summary::default(),
        itl: Summary::default(),
        e2el: Summary::default(),
        chunk_mismatches: 0,
        usage_missing: 0,
        input_lens: Vec::with_capacity(outcomes.len()),
        output_lens: Vec::with_capacity(outcomes.len()),
        ttfts: Vec::with_capacity(outcomes.len()),
        itls: Vec::with_capacity(outcomes.len()),
        errors: Vec::with_capacity(outcomes.len()),
    };
    let (mut ttfts, mut tpots, mut itls, mut e2els) = (vec![], vec![], vec![], vec![]);
    for (i, o) in outcomes.iter().enumerate() {
        let client_len = client_input_lens.get(i).copied().unwrap_or(0);
        if let Some(failure) = &o.error {
            m.failed += 1;
            *m.failures.entry(failure.kind.clone()).or_default() += 1;
            if m.failure_examples.len() < EXAMPLES {
                m.failure_examples
                    .push(format!("{}: {}", failure.kind, failure.message));
            }
            m.input_lens.push(0);
            m.output_lens.push(0);
            m.ttfts.push(0.0);
            m.itls.push(Vec::new());
            m.errors
                .push(format!("{}: {}", failure.kind, failure.message));
            continue;
        }
        m.completed += 1;
        let input = o.prompt_tokens.unwrap_or(client_len);
        let output = o.output_tokens();
        m.total_input_tokens += input;
        m.total_output_tokens += output;
        match o.usage_output_tokens {
            None => m.usage_missing += 1,
            Some(n) if n != o.content_chunks => m.chunk_mismatches += 1,
            Some(_) => {}
        }
        let ttft = o.ttft.unwrap_or(o.e2el);
        ttfts.push(ttft);
        if output > 1 {
            tpots.push((o.e2el - ttft) / (output - 1) as f64);
        }
        itls.extend_from_slice(&o.itl);
        e2els.push(o.e2el);
        m.input_lens.push(input);
        m.output_lens.push(output);
        m.ttfts.push(ttft);
        m.itls.push(o.itl.clone());
        m.errors.push(String::new());
    }
    if duration > 0.0 {
        m.request_throughput = m.completed as f64 / duration;
        m.output_throughput = m.total_output_tokens as f64 / duration;
        m.total_token_throughput = (m.total_input_tokens + m.total_output_tokens) as f64 / duration;
    }
    m.ttft = Summary::of_seconds(&ttfts, percentiles);
    m.tpot = Summary::of_seconds(&tpots, percentiles);
    m.itl = Summary::of_seconds(&itls, percentiles);
    m.e2el = Summary::of_seconds(&e2els, percentiles);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::measure::Failure;

    fn ok(ttft: f64, e2el: f64, out: usize, prompt: usize) -> Outcome {
        Outcome {
            ttft: Some(ttft),
            itl: vec![(e2el - ttft) / (out - 1) as f64; out - 1],
            e2el,
            prompt_tokens: Some(prompt),
            usage_output_tokens: Some(out),
            content_chunks: out,
            ..Outcome::default()
        }
    }

    #[test]
    fn failures_are_counted_and_excluded_from_latencies() {
        let failed = Outcome {
            error: Some(Failure {
                kind: "HTTP 500".into(),
                message: "boom".into(),
            }),
            ..Outcome::default()
        };
        let outcomes = [ok(0.1, 1.1, 11, 20), failed, ok(0.3, 1.3, 11, 20)];
        let m = compute(&outcomes, &[20, 20, 20], 2.0, &[99.0]);
        assert_eq!((m.completed, m.failed), (2, 1));
        assert_eq!(m.failures.get("HTTP 500"), Some(&1));
        assert_eq!(m.total_input_tokens, 40);
        assert_eq!(m.total_output_tokens, 22);
        assert!((m.request_throughput - 1.0).abs() < 1e-9);
        assert!((m.output_throughput - 11.0).abs() < 1e-9);
        assert!((m.total_token_throughput - 31.0).abs() < 1e-9);
        assert!((m.ttft.mean - 200.0).abs() < 1e-9);
        assert!((m.tpot.mean - 100.0).abs() < 1e-9);
        assert!((m.itl.mean - 100.0).abs() < 1e-9);
        assert_eq!(m.errors[1], "HTTP 500: boom");
    }

    #[test]
    fn chunk_count_disagreements_are_noticed() {
        let mut o = ok(0.1, 1.1, 11, 5);
        o.content_chunks = 9;
        let mut no_usage = ok(0.1, 1.1, 11, 5);
        no_usage.usage_output_tokens = None;
        no_usage.prompt_tokens = None;
        let m = compute(&[o, no_usage], &[5, 7], 1.0, &[]);
        assert_eq!(m.chunk_mismatches, 1);
        assert_eq!(m.usage_missing, 1);
        assert_eq!(m.total_input_tokens, 12);
    }
}
