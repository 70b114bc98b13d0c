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
use prometheus::TextEncoder;
use prometheus::proto::MetricFamily;

use super::error::ApiError;
use super::metrics_labels;
use super::metrics_vllm::{MetricsCompat, vllm_twins};
use super::state::AppState;

/// Everything `/metrics` reports, as metric families ready to encode.
fn gather(state: &AppState) -> Vec<MetricFamily> {
    let http = state.http_metrics();
    let mut families = Vec::new();
    let ready = state.loaded();
    if let Some(ready) = ready {
        http.refresh(&ready.engine);
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
