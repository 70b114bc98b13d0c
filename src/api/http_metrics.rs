//! The HTTP layer's own metrics (its own registry: they exist before the engine does): the
//! request counter, and gauges derived from the engine's state at scrape time. `/metrics`
//! ([`super::metrics`]) encodes them beside the engine's.

use prometheus::{Gauge, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::engine::EngineHandle;

/// Metrics kept outside the engine (their own registry: they exist before the engine does).
pub struct HttpMetrics {
    pub registry: Registry,
    /// Requests by method, route template and status ([`super::metrics_labels`]).
    pub requests: IntCounterVec,
    kv_usage: Gauge,
    prefix_hit_rate: Gauge,
    cache_config: IntGaugeVec,
    device_info: IntGaugeVec,
}

impl HttpMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tealight:http_requests_total",
                "HTTP requests by method, route and status.",
            ),
            &["method", "route", "status"],
        )
        .expect("valid counter");
        let kv_usage = Gauge::new(
            "tealight:kv_cache_usage_perc",
            "Fraction of KV-cache blocks in use (1 = full).",
        )
        .expect("valid gauge");
        let prefix_hit_rate = Gauge::new(
            "tealight:prefix_cache_hit_rate",
            "Fraction of prompt tokens served by the prefix cache since start.",
        )
        .expect("valid gauge");
        let cache_config = IntGaugeVec::new(
            Opts::new(
                "tealight:cache_config_info",
                "KV-cache configuration in the labels (the value is always 1).",
            ),
            &["block_size", "num_gpu_blocks"],
        )
        .expect("valid gauge vec");
        // Scripts check where the model really runs (`--device auto` may fall back to the CPU).
        let device_info = IntGaugeVec::new(
            Opts::new(
                "tealight:device_info",
                "The device the model runs on and the attention backend, in the labels (always 1).",
            ),
            &["device", "attention_backend"],
        )
        .expect("valid gauge vec");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(kv_usage.clone()),
            Box::new(prefix_hit_rate.clone()),
            Box::new(cache_config.clone()),
            Box::new(device_info.clone()),
        ] {
            registry.register(m).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            kv_usage,
            prefix_hit_rate,
            cache_config,
            device_info,
        }
    }

    /// Sets the gauges derived from the engine's state as of now.
    pub fn refresh(&self, engine: &EngineHandle) {
        engine.refresh_metrics();
        let m = engine.metrics();
        let total = m.kv_blocks_total.get().max(0) as f64;
        let used = m.kv_blocks_used.get().max(0) as f64;
        self.kv_usage
            .set(if total > 0.0 { used / total } else { 0.0 });
        self.prefix_hit_rate.set(m.prefix_hit_rate());
        let info = engine.info();
        // Fixed for the life of the process, so this stays one series.
        self.cache_config
            .with_label_values(&[
                info.block_size.to_string().as_str(),
                info.num_blocks.to_string().as_str(),
            ])
            .set(1);
        self.device_info
            .with_label_values(&[info.device.as_str(), info.attention_backend.as_str()])
            .set(1);
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}
