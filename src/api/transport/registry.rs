//! The open connections and the requests in flight on them.
//!
//! The accept loop asks it whether a slot is free and, at the cap, which connection to give up:
//! the one idle longest (no request in flight; a connection still sending its first request
//! head counts as idle since it was accepted, so slow-header clients go first). Shutdown asks it
//! when the last request has been answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// One connection's view: its requests in flight and when it last had none.
pub struct ConnState {
    in_flight: AtomicUsize,
    /// Milliseconds (on the registry's clock) since which no request has been in flight.
    idle_since_ms: AtomicU64,
    /// Milliseconds when bytes last arrived (a request head being sent is not idleness).
    last_read_ms: AtomicU64,
    evicting: AtomicBool,
    /// Wakes the connection's task to close it (the accept loop needs its slot).
    pub evict: Notify,
}

impl ConnState {
    pub fn has_request_in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }
}

pub struct Registry {
    clock: Instant,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    closed: Notify,
    requests: AtomicUsize,
    answered: Notify,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            clock: Instant::now(),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            closed: Notify::new(),
            requests: AtomicUsize::new(0),
            answered: Notify::new(),
        }
    }
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Registers a newly accepted connection; it leaves the registry when the handle drops.
    pub fn open(self: &Arc<Self>) -> ConnHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let state = Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now),
            last_read_ms: AtomicU64::new(now),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.lock().insert(id, state.clone());
        ConnHandle {
            registry: self.clone(),
            id,
            state,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        // A panic while holding this lock leaves the map consistent (single inserts/removes).
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn open_connections(&self) -> usize {
        self.lock().len()
    }

    /// Asks the connection idle longest to close; false when every connection is busy.
    pub fn evict_idlest(&self) -> bool {
        let conns = self.lock();
        let idlest = conns
            .values()
            .filter(|c| !c.has_request_in_flight() && !c.evicting.load(Ordering::Relaxed))
            .min_by_key(|c| c.idle_since_ms.load(Ordering::Relaxed));
        match idlest {
            Some(conn) => {
                conn.evicting.store(true, Ordering::Relaxed);
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }

    /// Waits until fewer than `count` connections are open, or `max` passes. Each wait is
    /// registered before the count is read: a connection that closes in between (on another
    /// worker, right after being asked to) still wakes it, rather than costing the whole `max`
    /// — at the cap that was one `max` per connection accepted.
    pub async fn fewer_than(&self, count: usize, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open_connections() < count {
                return;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                return;
            }
        }
    }

    /// How long `conn` has been idle: no request in flight and no bytes arriving.
    pub fn idle_for(&self, conn: &ConnState) -> Duration {
        if conn.has_request_in_flight() {
            return Duration::ZERO;
        }
        let since = conn
            .idle_since_ms
            .load(Ordering::Relaxed)
            .max(conn.last_read_ms.load(Ordering::Relaxed));
        Duration::from_millis(self.now_ms().saturating_sub(since))
    }

    pub fn bytes_arrived(&self, conn: &ConnState) {
        conn.last_read_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Counts a request until the returned guard drops (when its response has been sent, or
    /// abandoned).
    pub fn request_started(self: &Arc<Self>, conn: &Arc<ConnState>) -> RequestGuard {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        RequestGuard {
            registry: self.clone(),
            conn: conn.clone(),
        }
    }

    pub fn requests_in_flight(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    /// Resolves once no request is in flight.
    pub async fn all_answered(&self) {
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            if self.requests_in_flight() == 0 {
                return;
            }
            answered.await;
        }
    }
}

/// An open connection's membership in the registry.
pub struct ConnHandle {
    registry: Arc<Registry>,
    id: u64,
    state: Arc<ConnState>,
}

impl ConnHandle {
    pub fn state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.registry.closed.notify_waiters();
    }
}

/// One request in flight (see [`Registry::request_started`]).
pub struct RequestGuard {
    registry: Arc<Registry>,
    conn: Arc<ConnState>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let now = self.registry.now_ms();
        if self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conn.idle_since_ms.store(now, Ordering::Relaxed);
        }
        if self.registry.requests.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.registry.answered.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idlest_connection_without_requests_is_evicted_first() {
        let registry = Arc::new(Registry::default());
        let oldest = registry.open();
        std::thread::sleep(Duration::from_millis(5));
        let busy_old = registry.open();
        std::thread::sleep(Duration::from_millis(5));
        let newest = registry.open();
        // The oldest connection is busy: it must not be chosen.
        let guard = registry.request_started(oldest.state());
        assert!(registry.evict_idlest());
        assert!(busy_old.state().evicting.load(Ordering::Relaxed));
        assert!(!newest.state().evicting.load(Ordering::Relaxed));
        assert!(!oldest.state().evicting.load(Ordering::Relaxed));
        assert!(registry.evict_idlest());
        assert!(newest.state().evicting.load(Ordering::Relaxed));
        // Everything left is busy or already asked to close.
        assert!(!registry.evict_idlest());
        assert_eq!(registry.requests_in_flight(), 1);
        drop(guard);
        assert_eq!(registry.requests_in_flight(), 0);
        drop(newest);
        assert_eq!(registry.open_connections(), 2);
    }

    /// A close on another thread wakes the waiter at once, not after its whole timeout, and
    /// one close is not taken for "below the count" while the count is still reached.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_fewer_connections_wakes_on_the_close_that_gets_there() {
        let registry = Arc::new(Registry::default());
        let kept = registry.open();
        let closed: Vec<_> = (0..2).map(|_| registry.open()).collect();
        let closer = std::thread::spawn(move || {
            for handle in closed {
                std::thread::sleep(Duration::from_millis(20));
                drop(handle);
            }
        });
        let started = std::time::Instant::now();
        registry.fewer_than(2, Duration::from_secs(10)).await;
        let waited = started.elapsed();
        assert_eq!(registry.open_connections(), 1);
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
        closer.join().expect("closer thread");
        // Already below the count: returns at once.
        registry.fewer_than(2, Duration::from_secs(10)).await;
        drop(kept);
    }
}
