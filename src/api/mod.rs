//! The OpenAI-compatible HTTP API (axum), shaped after vLLM's so its clients work unchanged.
//!
//! Routes:
//! - `POST /v1/chat/completions`, `POST /v1/completions` (JSON or SSE with `stream: true`)
//! - `GET /v1/models`
//! - `POST /tokenize`, `POST /detokenize` (vLLM's shapes)
//! - `GET /health` (200 ready; 503 while loading or draining), `GET|POST /ping`, `GET /version`,
//!   `GET /metrics` (Prometheus text; see [`metrics`])
//!
//! Errors: every failure is `{"error": {"message", "type", "param", "code"}}`, vLLM's current
//! shape (`type` a class name such as `BadRequestError`, `code` the HTTP status); see
//! [`error`]. Statuses: 400 invalid input (including malformed JSON, a non-JSON content type and
//! template failures), 401 missing/wrong key, 404 unknown route or model, 405 wrong method,
//! 413 body over 32 MiB, 429 waiting queue full (`--max-waiting`), 503 loading or draining,
//! 500 engine failures.
//!
//! Caps beyond vLLM's sampling ranges ([`state::Limits`]): `n` ≤ 16, `stop` ≤ 16 strings,
//! `stop_token_ids` ≤ 64, `top_logprobs`/`logprobs` ≤ 20, `logit_bias` ≤ 1024 entries,
//! `tools` ≤ 128, completions `prompt` lists ≤ 64, request body ≤ 32 MiB.
//!
//! Handlers are thin: parse ([`extract::ApiJson`]) → validate ([`tools`],
//! [`request_builder`]) → submit to the engine → render ([`chat`], [`completions`], [`sse`]).
//! Output parsing (reasoning, tool calls) lives in [`crate::parsers`].

pub mod auth;
pub mod chat;
pub mod chat_output;
pub mod completions;
pub mod error;
pub mod extract;
pub mod health;
pub mod logprobs;
pub mod metrics;
pub mod metrics_vllm;
pub mod models;
pub mod request_builder;
pub mod router;
pub mod sse;
pub mod state;
pub mod tokenize;
pub mod tools;
pub mod types;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub use router::router;
pub use state::{AppState, ServerConfig};

use crate::cli::serve::{Loaded, ServeArgs};
use crate::error::{Error, Result};

/// `tealight serve`: binds the port first (a busy port fails at once), answers `/health` with
/// 503 while the model loads, then serves until Ctrl-C or SIGTERM and drains.
pub async fn run(args: ServeArgs) -> Result<()> {
    let config = ServerConfig::from_args(&args)?;
    let shutdown_timeout = config.shutdown_timeout;
    let state = AppState::new(config);
    let listener = bind(&args).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, state.clone(), async {
        let _ = stop_rx.await;
    }));

    let loading = tokio::task::spawn_blocking(move || crate::cli::serve::load(&args));
    tokio::select! {
        loaded = loading => {
            let loaded = loaded.map_err(|e| Error::Internal(format!("model loading panicked: {e}")))?;
            match loaded {
                Ok(loaded) => state.set_ready(loaded),
                Err(e) => {
                    let _ = stop_tx.send(());
                    return Err(e);
                }
            }
        }
        () = shutdown_signal() => {
            tracing::info!("shutdown requested while loading");
            let _ = stop_tx.send(());
            return Ok(());
        }
    }
    tracing::info!("model loaded; serving");
    shutdown_signal().await;
    drain(&state, stop_tx, server, shutdown_timeout).await
}

/// Serves an already loaded model (the listener binds after loading).
pub async fn serve(loaded: Loaded, args: &ServeArgs) -> Result<()> {
    let config = ServerConfig::from_args(args)?;
    let shutdown_timeout = config.shutdown_timeout;
    let state = AppState::with_loaded(config, loaded);
    let listener = bind(args).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, state.clone(), async {
        let _ = stop_rx.await;
    }));
    shutdown_signal().await;
    drain(&state, stop_tx, server, shutdown_timeout).await
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes open requests.
/// (Tests and embedders call this with their own listener and shutdown future.)
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Io)
}

async fn bind(args: &ServeArgs) -> Result<TcpListener> {
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {}:{}: {e}", args.host, args.port),
            ))
        })?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    Ok(listener)
}

/// Shutdown: `/health` turns 503 and new generation requests are refused, the listener stops
/// accepting, running requests get `--shutdown-timeout` to finish (then they are aborted).
async fn drain(
    state: &AppState,
    stop_server: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<()>>,
    timeout: Duration,
) -> Result<()> {
    tracing::info!(timeout_s = timeout.as_secs(), "draining");
    state.start_draining();
    let _ = stop_server.send(());
    if let Some(ready) = state.loaded() {
        let engine = ready.engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.shutdown(timeout)).await;
    }
    // Streams end once the engine has finished or aborted them; a little slack for the last
    // bytes to reach the clients.
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(Error::Internal(format!("server task failed: {e}"))),
        Err(_) => {
            tracing::warn!("connections still open after the drain; closing");
            Ok(())
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
