//! Binding the port, waiting for a stop signal, and draining.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

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

/// The end of the drain kept for the last responses to reach their clients: a quarter of the
/// timeout, at most this.
const FLUSH_SLACK: Duration = Duration::from_secs(1);

/// Shutdown, over within `timeout`: `/health` turns 503 and new requests get 503; requests in
/// flight (generation, and pool work such as `/tokenize`) get until the deadline less a flush
/// slack to finish. Then the engine aborts what is left (their streams end with an error),
/// handlers still working answer 503, the listener stops and the connections close once their
/// last response is written. Every accepted request gets a response.
pub async fn drain(
    state: &AppState,
    stop_server: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<()>>,
    timeout: Duration,
) -> Result<()> {
    tracing::info!(timeout_s = timeout.as_secs_f64(), "draining");
    let deadline = Instant::now() + timeout;
    let cut_at = deadline - (timeout / 4).min(FLUSH_SLACK);
    state.start_draining();
    // The listener stays open while requests drain, so that new requests (and load balancers'
    // health checks) get a 503 rather than a refused connection.
    let engine = state.loaded().map(|ready| {
        let engine = ready.engine.clone();
        let budget = cut_at.saturating_duration_since(Instant::now());
        tokio::task::spawn_blocking(move || engine.shutdown(budget))
    });
    let connections = state.connections().clone();
    let _ = tokio::time::timeout_at(cut_at, connections.all_answered()).await;
    if connections.requests_in_flight() > 0 {
        tracing::warn!(
            requests = connections.requests_in_flight(),
            "shutdown timeout reached; answering the requests left with 503"
        );
    }
    state.cut_requests();
    if let Some(engine) = engine {
        let _ = tokio::time::timeout_at(deadline, engine).await;
    }
    let _ = stop_server.send(());
    match tokio::time::timeout_at(deadline, server).await {
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
