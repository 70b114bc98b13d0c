//! `--metrics-compat vllm`: the metrics vLLM also has, exposed a second time under vLLM's names
//! (`vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`, `vllm:cache_config_info`, …), so
//! tools configured for vLLM work unchanged: the inference gateway's endpoint picker with its
//! default flags, the vLLM production-stack router, KEDA and HPA recipes, vLLM's dashboards.
//!
//! The twins are copies of the gathered `tealight:` families, renamed and labelled
//! `model_name` as vLLM labels them; nothing is counted twice.

use prometheus::proto::{LabelPair, MetricFamily};

/// Which extra metric names `/metrics` exposes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsCompat {
    /// Only tealight's own names (`tealight:*`).
    #[default]
    None,
    /// Also vLLM's names (`vllm:*`) for the metrics both servers have.
    Vllm,
}

/// tealight's name → vLLM's, for metrics with the same meaning and type.
const TWINS: &[(&str, &str)] = &[
    ("tealight:num_requests_waiting", "vllm:num_requests_waiting"),
    ("tealight:num_requests_running", "vllm:num_requests_running"),
    ("tealight:kv_cache_usage_perc", "vllm:kv_cache_usage_perc"),
    // The name before vLLM 0.10, still in many router and autoscaler configurations.
    ("tealight:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    ("tealight:cache_config_info", "vllm:cache_config_info"),
    (
        "tealight:prefix_cache_queries_total",
        "vllm:prefix_cache_queries_total",
    ),
    (
        "tealight:prefix_cache_hits_total",
        "vllm:prefix_cache_hits_total",
    ),
    (
        "tealight:num_preemptions_total",
        "vllm:num_preemptions_total",
    ),
    ("tealight:prompt_tokens_total", "vllm:prompt_tokens_total"),
    (
        "tealight:generation_tokens_total",
        "vllm:generation_tokens_total",
    ),
    (
        "tealight:request_success_total",
        "vllm:request_success_total",
    ),
    (
        "tealight:time_to_first_token_seconds",
        "vllm:time_to_first_token_seconds",
    ),
    (
        "tealight:inter_token_latency_seconds",
        "vllm:inter_token_latency_seconds",
    ),
    (
        "tealight:e2e_request_latency_seconds",
        "vllm:e2e_request_latency_seconds",
    ),
    (
        "tealight:spec_decode_num_drafts_total",
        "vllm:spec_decode_num_drafts_total",
    ),
    (
        "tealight:spec_decode_num_draft_tokens_total",
        "vllm:spec_decode_num_draft_tokens_total",
    ),
    (
        "tealight:spec_decode_num_accepted_tokens_total",
        "vllm:spec_decode_num_accepted_tokens_total",
    ),
    (
        "tealight:spec_decode_num_accepted_tokens_per_pos_total",
        "vllm:spec_decode_num_accepted_tokens_per_pos_total",
    ),
];

/// vLLM's copies of the families in `families` that have a vLLM twin. vLLM labels its
/// per-model metrics with `model_name`; its config-info metric carries only the config.
pub fn vllm_twins(families: &[MetricFamily], model_name: &str) -> Vec<MetricFamily> {
    let mut twins = Vec::new();
    for family in families {
        for &(_, vllm_name) in TWINS.iter().filter(|(ours, _)| *ours == family.name()) {
            let mut twin = family.clone();
            twin.set_name(vllm_name.to_owned());
            if !vllm_name.ends_with("_info") {
                for metric in twin.mut_metric() {
                    let mut labels = metric.take_label();
                    let mut label = LabelPair::default();
                    label.set_name("model_name".to_owned());
                    label.set_value(model_name.to_owned());
                    labels.insert(0, label);
                    metric.set_label(labels);
                }
            }
            twins.push(twin);
        }
    }
    twins
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

    #[test]
    fn twins_are_renamed_labelled_copies_of_known_families_only() {
        let registry = Registry::new();
        let waiting = IntGauge::new("tealight:num_requests_waiting", "w").unwrap();
        let own = IntGauge::new("tealight:kv_cache_blocks_used", "only ours").unwrap();
        let success = IntCounterVec::new(
            Opts::new("tealight:request_success_total", "s"),
            &["finished_reason"],
        )
        .unwrap();
        registry.register(Box::new(waiting.clone())).unwrap();
        registry.register(Box::new(own.clone())).unwrap();
        registry.register(Box::new(success.clone())).unwrap();
        waiting.set(3);
        own.set(7);
        success.with_label_values(&["stop"]).inc();

        let twins = vllm_twins(&registry.gather(), "Qwen3-4B");
        let text = TextEncoder::new().encode_to_string(&twins).unwrap();
        assert_eq!(
            text,
            "# HELP vllm:num_requests_waiting w\n\
             # TYPE vllm:num_requests_waiting gauge\n\
             vllm:num_requests_waiting{model_name=\"Qwen3-4B\"} 3\n\
             # HELP vllm:request_success_total s\n\
             # TYPE vllm:request_success_total counter\n\
             vllm:request_success_total{model_name=\"Qwen3-4B\",finished_reason=\"stop\"} 1\n"
        );
    }
}
