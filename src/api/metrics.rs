//! `/metrics`: the engine's Prometheus metrics, gauges derived at scrape time, and the HTTP
//! layer's own request counter.
//!
//! Load-aware routers scrape this often (the inference gateway's endpoint picker every 50 ms),
//! so a scrape only reads the metrics' atomics and encodes once; the engine thread never waits
//! for it. Their three signals are plain gauges with one series each — `tealight:num_requests_waiting`,
//! `tealight:num_requests_running` and `tealight:kv_cache_usage_perc` (0–1) — plus
//! `tealight:cache_config_info{block_size,num_gpu_blocks}` for prefix-aware pickers.
//! `--metrics-compat vllm` adds vLLM's names beside them ([`super::metrics_vllm`]).
//!
//! The request counter's labels come from fixed sets ([`super::metrics_labels`]), so the
//! series are bounded whatever clients send; encoding runs on a blocking thread, never on the
//! async workers.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use super::error::ApiError;
use super::metrics_labels;
use super::metrics_vllm::{MetricsCompat, vllm_twins};
use super::state::{AppState, Ready};

/// Metrics kept outside the engine (their own registry: they exist before the engine does).
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
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
    fn refresh(&self, ready: &Ready) {
        let engine = &ready.engine;
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

/// Everything `/metrics` reports, as metric families ready to encode.
fn gather(state: &AppState) -> Vec<MetricFamily> {
    let http = state.http_metrics();
    let mut families = Vec::new();
    let ready = state.loaded();
    if let Some(ready) = ready {
        http.refresh(ready);
        families.extend(ready.engine.metrics().registry().gather());
    }
    families.extend(http.registry.gather());
    if let (MetricsCompat::Vllm, Some(ready)) = (state.config().metrics_compat, ready) {
        let twins = vllm_twins(&families, ready.model_name());
        families.extend(twins);
    }
    families
}

/// Everything `/metrics` reports, as Prometheus text.
fn encode(state: &AppState) -> String {
    let mut text = String::with_capacity(16 << 10);
    // Encoding only fails on malformed families, which the registries do not build.
    let _ = TextEncoder::new().encode_utf8(&gather(state), &mut text);
    text
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    // Not the request-sized pool: a scrape is small and must not queue behind heavy requests.
    let text = match tokio::task::spawn_blocking(move || encode(&state)).await {
        Ok(text) => text,
        Err(e) => {
            return ApiError::internal(format!("encoding the metrics failed: {e}")).into_response();
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Counts every request by its method and route template (from fixed sets: not the raw method
/// or path, which clients control).
pub async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = metrics_labels::method(req.method());
    let route = metrics_labels::route(req.extensions().get::<MatchedPath>());
    let response = next.run(req).await;
    let status = metrics_labels::status(response.status());
    state
        .http_metrics()
        .requests
        .with_label_values(&[method, route.as_str(), status.as_str()])
        .inc();
    response
}
