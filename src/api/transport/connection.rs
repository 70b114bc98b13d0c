//! One HTTP/1 connection: hyper with a timer (so its header-read timeout fires), each request
//! counted until its response is sent, closed when idle past the keep-alive timeout, when the
//! accept loop needs its slot, or (gracefully, after the request in flight) on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

use super::TransportLimits;
use super::io::ActivityIo;
use super::registry::{ConnHandle, Registry};
use super::tracked_body::TrackedBody;

/// Shortest interval between keep-alive checks.
const MIN_IDLE_CHECK: Duration = Duration::from_millis(50);

/// Serves `stream`, registered as `handle` (by the accept loop, so that its count of open
/// connections is exact before the next accept).
pub async fn serve(
    stream: TcpStream,
    handle: ConnHandle,
    router: Router,
    registry: Arc<Registry>,
    limits: TransportLimits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let conn_state = handle.state().clone();
    let io = TokioIo::new(ActivityIo::new(
        stream,
        registry.clone(),
        conn_state.clone(),
    ));
    let service = {
        let registry = registry.clone();
        let conn_state = conn_state.clone();
        service_fn(move |req: hyper::Request<Incoming>| {
            // Counted from the moment the head is parsed: an accepted request.
            let guard = registry.request_started(&conn_state);
            let router = router.clone();
            async move {
                let request: Request = req.map(Body::new);
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| Body::new(TrackedBody::new(body, guard))))
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(io, service);
    tokio::pin!(conn);

    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    let check_every = (limits.keep_alive_timeout / 4).max(MIN_IDLE_CHECK);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                // Finishes the request in flight, then closes (at once when idle).
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = conn_state.evict.notified() => {
                // The check and the drop happen on this task, which also runs hyper's dispatch:
                // no request can be accepted in between.
                if !conn_state.has_request_in_flight() {
                    return;
                }
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep(check_every) => {
                if registry.idle_for(&conn_state) >= limits.keep_alive_timeout {
                    return;
                }
            }
        }
    }
}
