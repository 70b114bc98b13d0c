//! `tealight serve`, composed: the one place that turns command-line flags into a loaded model,
//! a running engine and an HTTP server, and runs them until shutdown.
//!
//! - [`config`]: flags → the HTTP layer's [`ServerConfig`] (parsers, auth, CORS, limits).
//! - [`load`]: flags → checkpoint, tokenizer, template, sampling defaults, KV pool and engine,
//!   handed to the HTTP layer as [`Ready`].
//! - [`lifecycle`]: bind, wait for a signal, drain.
//!
//! The HTTP layer ([`crate::api`]) knows nothing of flags; the engine knows nothing of HTTP.

pub mod config;
pub mod lifecycle;
pub mod load;
pub mod task;

pub use config::server_config;
pub use load::load;

use crate::api::{AppState, ServerConfig, serve_on};
use crate::cli::serve::ServeArgs;
use crate::error::{Error, Result};

/// Binds the port first (a busy port fails at once), answers `/health` with 503 while the model
/// loads, then serves until Ctrl-C or SIGTERM and drains.
pub async fn run(args: ServeArgs) -> Result<()> {
    let config: ServerConfig = server_config(&args)?;
    let shutdown_timeout = config.shutdown_timeout;
    let state = AppState::new(config);
    let listener = lifecycle::bind(&args.host, args.port).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, state.clone(), async {
        let _ = stop_rx.await;
    }));

    let loading = tokio::task::spawn_blocking(move || load(&args));
    tokio::select! {
        loaded = loading => {
            let loaded = loaded.map_err(|e| Error::Internal(format!("model loading panicked: {e}")))?;
            match loaded {
                Ok(ready) => state.set_ready(ready),
                Err(e) => {
                    let _ = stop_tx.send(());
                    return Err(e);
                }
            }
        }
        () = lifecycle::shutdown_signal() => {
            tracing::info!("shutdown requested while loading");
            let _ = stop_tx.send(());
            return Ok(());
        }
    }
    tracing::info!("model loaded; serving");
    if let Some(ready) = state.loaded() {
        let config = state.config();
        if config.tool_parser {
            // Said once, since without the flag the format follows the chat template.
            let source = if config.tool_call_format.is_some() {
                "--tool-call-parser"
            } else {
                "the chat template"
            };
            tracing::info!(
                parser = ready.tool_call_format(config).name(),
                from = source,
                "tool-call parser"
            );
        }
    }
    let liveness = match state.loaded() {
        Some(ready) => ready.engine.liveness().clone(),
        None => return Err(Error::Internal("ready without a model".into())),
    };
    tokio::select! {
        () = lifecycle::shutdown_signal() => {
            lifecycle::drain(&state, stop_tx, server, shutdown_timeout).await
        }
        () = liveness.died() => {
            // /health already answers 503; give in-flight responses a moment to carry their
            // errors out, then exit non-zero so a supervisor restarts the process.
            let why = liveness.cause().unwrap_or_default();
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let _ = lifecycle::drain(&state, stop_tx, server, std::time::Duration::from_secs(1)).await;
            Err(Error::Device(format!("the engine died: {why}")))
        }
    }
}
