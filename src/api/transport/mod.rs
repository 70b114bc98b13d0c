//! The HTTP transport under the router: accepting connections and bounding what each may hold.
//!
//! - Header-read timeout (`--header-read-timeout`): a request head must arrive whole within it,
//!   counted from when the connection starts waiting for one (slow-header clients are closed).
//! - Keep-alive timeout (`--keep-alive-timeout`): a connection with no request in flight and no
//!   bytes arriving for this long is closed. It never cuts a response: a stream, however long,
//!   keeps its request in flight until its last byte is sent.
//! - Connection cap (`--max-connections`, lowered to leave descriptors for the process below
//!   RLIMIT_NOFILE): at the cap, the connection idle longest (a slow-header one first) is
//!   closed to make room; when every connection has a request in flight, newcomers wait in the
//!   kernel's accept backlog, holding no descriptor.
//! - Request bodies (`--body-read-timeout`, `--max-buffered-body-bytes`): see
//!   [`super::body_buffer`].
//!
//! Shutdown stops accepting, lets each connection finish its request in flight, and closes
//! idle ones at once; [`Registry::all_answered`] tells the drain when every accepted request has
//! had its response.

mod connection;
pub mod fd_limit;
mod io;
pub mod registry;
mod tracked_body;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use registry::Registry;

/// The transport's limits (flags in `tealight serve`; defaults here).
#[derive(Debug, Clone)]
pub struct TransportLimits {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub max_buffered_body_bytes: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            // uvicorn's (and so vLLM's) default.
            keep_alive_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_buffered_body_bytes: 256 << 20,
        }
    }
}

/// How long the accept loop waits for a slot before checking again.
const SLOT_WAIT: Duration = Duration::from_millis(50);
/// Pause after a failed accept() (out of descriptors, out of memory) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// Accepts connections on `listener` for `router` until `shutdown` resolves, then closes each
/// connection once its request in flight has been answered and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    registry: Arc<Registry>,
    limits: TransportLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let nofile = fd_limit::raise_and_read();
    let cap = fd_limit::connection_cap(limits.max_connections, nofile);
    if cap < limits.max_connections {
        tracing::info!(
            cap,
            nofile,
            "connection cap lowered below --max-connections to leave file descriptors"
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    'accepting: loop {
        while registry.open_connections() >= cap {
            registry.evict_idlest();
            tokio::select! {
                () = registry.fewer_than(cap, SLOT_WAIT) => {}
                () = &mut shutdown => break 'accepting,
            }
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection::serve(
                        stream,
                        registry.open(),
                        router.clone(),
                        registry.clone(),
                        limits.clone(),
                        stop_rx.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    registry.evict_idlest();
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while registry.open_connections() > 0 {
        registry.fewer_than(1, SLOT_WAIT).await;
    }
    Ok(())
}
