//! One benchmark run as a whole: what was asked (the configuration) and what was measured.
//! Serialised with the key names of vLLM's `--save-result` file, so tools that read those
//! files read these too.

use super::arrivals::RequestRate;
use super::metrics::Metrics;
use super::request::EndpointKind;
use super::stats::Summary;
use serde_json::{Map, Value, json};

/// What a run was asked to do.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub base_url: String,
    pub endpoint: EndpointKind,
    pub model: String,
    pub tokenizer: String,
    pub input_len: usize,
    pub output_len: usize,
    pub num_prompts: usize,
    pub request_rate: RequestRate,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    pub seed: u64,
    /// Tokens the chat template adds around each prompt (chat endpoint).
    pub template_overhead: Option<usize>,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub config: RunConfig,
    pub metrics: Metrics,
    /// When the run started, local time.
    pub date: String,
    /// The server's speculative decoding over the run, when it speculated.
    pub spec: Option<super::spec_stats::SpecCounters>,
}

impl BenchResult {
    /// The JSON object of this run (vLLM's names plus `failures` and the cross-checks).
    pub fn to_json(&self, include_details: bool) -> Value {
        let c = &self.config;
        let m = &self.metrics;
        let mut o = Map::new();
        let mut put = |k: &str, v: Value| {
            o.insert(k.to_owned(), v);
        };
        put("date", json!(self.date));
        put("backend", json!("openai"));
        put("base_url", json!(c.base_url));
        put("endpoint_type", json!(c.endpoint));
        put("model_id", json!(c.model));
        put("tokenizer_id", json!(c.tokenizer));
        put("random_input_len", json!(c.input_len));
        put("random_output_len", json!(c.output_len));
        put("num_prompts", json!(c.num_prompts));
        put("request_rate", rate_json(c.request_rate));
        put("burstiness", json!(c.burstiness));
        put("max_concurrency", json!(c.max_concurrency));
        put("seed", json!(c.seed));
        put("chat_template_overhead_tokens", json!(c.template_overhead));
        put("duration", json!(m.duration));
        put("completed", json!(m.completed));
        put("failed", json!(m.failed));
        put("failures", json!(m.failures));
        put("total_input_tokens", json!(m.total_input_tokens));
        put("total_output_tokens", json!(m.total_output_tokens));
        put("request_throughput", json!(m.request_throughput));
        put("output_throughput", json!(m.output_throughput));
        put("total_token_throughput", json!(m.total_token_throughput));
        put("chunk_count_mismatches", json!(m.chunk_mismatches));
        put("usage_missing", json!(m.usage_missing));
        for (name, s) in self.summaries() {
            put(&format!("mean_{name}_ms"), json!(s.mean));
            put(&format!("median_{name}_ms"), json!(s.median));
            put(&format!("std_{name}_ms"), json!(s.std));
            for &(p, v) in &s.percentiles {
                put(&format!("p{}_{name}_ms", percentile_label(p)), json!(v));
            }
        }
        if let Some(Value::Object(spec)) = self.spec.as_ref().map(|s| s.to_json()) {
            for (k, v) in spec {
                put(&k, v);
            }
        }
        if include_details {
            put("input_lens", json!(m.input_lens));
            put("output_lens", json!(m.output_lens));
            put("ttfts", json!(m.ttfts));
            put("itls", json!(m.itls));
            put("errors", json!(m.errors));
        }
        Value::Object(o)
    }

    /// The four latency metrics by their short names, in report order.
    pub fn summaries(&self) -> [(&'static str, &Summary); 4] {
        let m = &self.metrics;
        [
            ("ttft", &m.ttft),
            ("tpot", &m.tpot),
            ("itl", &m.itl),
            ("e2el", &m.e2el),
        ]
    }
}

fn rate_json(rate: RequestRate) -> Value {
    match rate {
        RequestRate::Infinite => json!("inf"),
        RequestRate::PerSecond(r) => json!(r),
    }
}

/// `99.0` → `99`, `99.9` → `99.9`, as vLLM names the keys.
pub fn percentile_label(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}
