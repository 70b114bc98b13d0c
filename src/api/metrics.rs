//! `/metrics`: the engine's Prometheus metrics plus gauges derived at scrape time and the HTTP
//! layer's own request counter.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Gauge, IntCounterVec, Opts, Registry, TextEncoder};

use super::state::AppState;

/// Counters kept by the HTTP layer (their own registry: they exist before the engine does).
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    kv_usage: Gauge,
    prefix_hit_rate: Gauge,
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
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(kv_usage.clone()),
            Box::new(prefix_hit_rate.clone()),
        ] {
            registry.register(m).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            kv_usage,
            prefix_hit_rate,
        }
    }

    fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let http = state.http_metrics();
    let mut text = String::new();
    if let Some(ready) = state.loaded() {
        let engine = ready.engine.metrics();
        let total = engine.kv_blocks_total.get().max(0) as f64;
        let used = engine.kv_blocks_used.get().max(0) as f64;
        http.kv_usage
            .set(if total > 0.0 { used / total } else { 0.0 });
        http.prefix_hit_rate.set(engine.prefix_hit_rate());
        text.push_str(&engine.render());
    }
    text.push_str(&http.render());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Counts every request by its route template (not the raw path, which clients control).
pub async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(req).await;
    state
        .http_metrics()
        .requests
        .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
        .inc();
    response
}
