//! Binding the port, waiting for a stop signal, and draining.

use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::AppState;
use crate::error::{Error, Result};

pub async fn bind(host: &str, port: u16) -> Result<TcpListener> {
    let listener = TcpListener::bind((host, port)).await.map_err(|e| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot listen on {host}:{port}: {e}"),
        ))
    })?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    Ok(listener)
}

/// Shutdown: `/health` turns 503 and new generation requests are refused, the listener stops
/// accepting, running requests get `--shutdown-timeout` to finish (then they are aborted).
pub async fn drain(
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
pub async fn shutdown_signal() {
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
