//! Engine counters for `/metrics`, named after vLLM's (`vllm:` → `tealight:`) so existing
//! dashboards map over.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct EngineMetrics {
    registry: Registry,
    pub requests_running: IntGauge,
    pub requests_waiting: IntGauge,
    pub kv_blocks_used: IntGauge,
    pub kv_blocks_total: IntGauge,
    pub prefix_cache_queries: IntCounter,
    pub prefix_cache_hits: IntCounter,
    pub preemptions: IntCounter,
    /// Evicted blocks handed to the offload tiers, restored from them, and refused by their
    /// checks.
    pub kv_offload_stored: IntCounter,
    pub kv_offload_restored: IntCounter,
    pub kv_offload_rejected: IntCounter,
    pub prompt_tokens: IntCounter,
    pub generation_tokens: IntCounter,
    pub request_success: IntCounterVec,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub e2e_request_latency: Histogram,
    /// Speculative decoding (vLLM's `spec_decode_*`): verified drafts, their tokens, the
    /// accepted ones, and acceptances by draft position.
    pub spec_drafts: IntCounter,
    pub spec_draft_tokens: IntCounter,
    pub spec_accepted_tokens: IntCounter,
    pub spec_accepted_per_position: IntCounterVec,
    /// Preempted requests back in the waiting queue (set each step; not exported by itself:
    /// it is part of `requests_waiting`).
    preempted_waiting: AtomicUsize,
}

const LATENCY_BUCKETS: [f64; 18] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    30.0, 60.0,
];

impl EngineMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! register {
            ($metric:expr) => {{
                let m = $metric;
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric names are unique and valid");
                m
            }};
        }
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid gauge");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid counter");
        let histogram = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
                .expect("valid histogram")
        };
        Self {
            requests_running: register!(gauge(
                "tealight:num_requests_running",
                "Requests in the running batch."
            )),
            requests_waiting: register!(gauge(
                "tealight:num_requests_waiting",
                "Requests waiting to be scheduled."
            )),
            kv_blocks_used: register!(gauge(
                "tealight:kv_cache_blocks_used",
                "KV-cache blocks in use."
            )),
            kv_blocks_total: register!(gauge(
                "tealight:kv_cache_capacity_blocks",
                "KV-cache blocks in the pool."
            )),
            prefix_cache_queries: register!(counter(
                "tealight:prefix_cache_queries_total",
                "Prompt tokens looked up in the prefix cache."
            )),
            prefix_cache_hits: register!(counter(
                "tealight:prefix_cache_hits_total",
                "Prompt tokens served by the prefix cache."
            )),
            preemptions: register!(counter(
                "tealight:num_preemptions_total",
                "Sequences preempted for KV space."
            )),
            kv_offload_stored: register!(counter(
                "tealight:kv_offload_stored_blocks_total",
                "Evicted KV blocks saved to the host or disk tier."
            )),
            kv_offload_restored: register!(counter(
                "tealight:kv_offload_restored_blocks_total",
                "KV blocks restored from the host or disk tier instead of recomputed."
            )),
            kv_offload_rejected: register!(counter(
                "tealight:kv_offload_rejected_blocks_total",
                "Stored KV blocks that failed their checks (deleted and recomputed)."
            )),
            prompt_tokens: register!(counter(
                "tealight:prompt_tokens_total",
                "Prompt tokens prefilled."
            )),
            generation_tokens: register!(counter(
                "tealight:generation_tokens_total",
                "Tokens generated."
            )),
            request_success: register!(
                IntCounterVec::new(
                    Opts::new(
                        "tealight:request_success_total",
                        "Finished requests by finish reason."
                    ),
                    &["finished_reason"],
                )
                .expect("valid counter vec")
            ),
            time_to_first_token: register!(histogram(
                "tealight:time_to_first_token_seconds",
                "Time from arrival to the first generated token."
            )),
            inter_token_latency: register!(histogram(
                "tealight:inter_token_latency_seconds",
                "Time between consecutive generated tokens."
            )),
            e2e_request_latency: register!(histogram(
                "tealight:e2e_request_latency_seconds",
                "Time from arrival to the finish of a request."
            )),
            spec_drafts: register!(counter(
                "tealight:spec_decode_num_drafts_total",
                "Drafts verified (one per sequence per step that carried one)."
            )),
            spec_draft_tokens: register!(counter(
                "tealight:spec_decode_num_draft_tokens_total",
                "Draft tokens verified."
            )),
            spec_accepted_tokens: register!(counter(
                "tealight:spec_decode_num_accepted_tokens_total",
                "Draft tokens accepted."
            )),
            spec_accepted_per_position: register!(
                IntCounterVec::new(
                    Opts::new(
                        "tealight:spec_decode_num_accepted_tokens_per_pos_total",
                        "Draft tokens accepted, by position in the draft (from 0)."
                    ),
                    &["position"],
                )
                .expect("valid counter vec")
            ),
            preempted_waiting: AtomicUsize::new(0),
            registry,
        }
    }

    /// The registry (`/metrics` gathers it with the API's own).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sets the waiting gauge to the requests waiting right now: `never_admitted` accepted
    /// requests that were never scheduled (also those still on their way to the engine thread,
    /// so a burst shows at once rather than a step later) plus the preempted ones last seen
    /// waiting to resume.
    pub fn set_waiting(&self, never_admitted: usize) {
        let preempted = self.preempted_waiting.load(Ordering::Relaxed);
        self.requests_waiting
            .set((never_admitted + preempted) as i64);
    }

    /// Records how many preempted requests wait to resume (the engine, after each step).
    pub fn set_preempted_waiting(&self, n: usize) {
        self.preempted_waiting.store(n, Ordering::Relaxed);
    }

    /// Counts one draft of `drafted` tokens about to be verified. Counted before any of the
    /// step's tokens reach a client, so a client that reads `/metrics` after its last token
    /// sees every draft of its request.
    pub fn record_draft(&self, drafted: usize) {
        self.spec_drafts.inc();
        self.spec_draft_tokens.inc_by(drafted as u64);
    }

    /// Counts the draft token at `position` as accepted (the target sampled it), before the
    /// token is delivered — whether or not it then ends the request, as vLLM counts it.
    pub fn record_accepted(&self, position: usize) {
        self.spec_accepted_tokens.inc();
        self.spec_accepted_per_position
            .with_label_values(&[&position.to_string()])
            .inc();
    }

    /// Fraction of prompt tokens served by the prefix cache so far.
    pub fn prefix_hit_rate(&self) -> f64 {
        let q = self.prefix_cache_queries.get();
        if q == 0 {
            0.0
        } else {
            self.prefix_cache_hits.get() as f64 / q as f64
        }
    }
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self::new()
    }
}
