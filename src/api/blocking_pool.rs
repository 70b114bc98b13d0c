//! CPU-heavy request work off the async workers: JSON parsing of large bodies, message checks,
//! template rendering, tokenization, grammar compilation and submission run on a bounded pool of
//! blocking threads, so that `/health`, `/metrics` and running streams are answered whatever
//! arrives. Requests beyond the pool's size wait for a permit without holding a worker.
//!
//! The pool has two lanes. The light lane (as many permits as the machine has cores) runs
//! every job; work whose size a request chooses freely (grammar compilation, tokenizing a text
//! of megabytes) moves to the heavy lane (half the cores, at least one), handing its light
//! permit back while it waits and runs there, so a few heavy requests cannot keep light ones
//! queued behind them.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{ApiError, ApiResult};

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn permits() -> &'static Arc<Semaphore> {
    static POOL: OnceLock<Arc<Semaphore>> = OnceLock::new();
    POOL.get_or_init(|| Arc::new(Semaphore::new(cores().max(2))))
}

fn heavy_permits() -> &'static Arc<Semaphore> {
    static HEAVY: OnceLock<Arc<Semaphore>> = OnceLock::new();
    HEAVY.get_or_init(|| Arc::new(Semaphore::new((cores() / 2).max(1))))
}

/// The permit of the pool job running on this thread, and whether it is the heavy lane's (see
/// [`move_to_heavy_lane`]).
struct HeldPermit {
    _permit: OwnedSemaphorePermit,
    heavy: bool,
}

thread_local! {
    static HELD: RefCell<Option<HeldPermit>> = const { RefCell::new(None) };
}

fn shutting_down<E>(_: E) -> ApiError {
    ApiError::unavailable("the server is shutting down")
}

/// Runs `work` on the blocking pool once a permit is free.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    let permit = permits()
        .clone()
        .acquire_owned()
        .await
        .map_err(shutting_down)?;
    tokio::task::spawn_blocking(move || {
        HELD.with(|p| {
            *p.borrow_mut() = Some(HeldPermit {
                _permit: permit,
                heavy: false,
            })
        });
        let out = work();
        HELD.with(|p| p.borrow_mut().take());
        out
    })
    .await
    .map_err(|e| ApiError::internal(format!("request work failed: {e}")))
}

/// A permit of the heavy lane, for work that runs on a thread of its own (grammar
/// compilation); hold it until that work ends.
pub async fn heavy_permit() -> ApiResult<OwnedSemaphorePermit> {
    heavy_permits()
        .clone()
        .acquire_owned()
        .await
        .map_err(shutting_down)
}

/// Moves the pool job running on this thread ([`run`]) to the heavy lane for the rest of its
/// run: its light permit is handed back first, then a heavy one is awaited. Call it before work
/// whose size the request chose freely. Outside a pool job (tests, tools) it does nothing.
pub fn move_to_heavy_lane() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let held = HELD.with(|p| p.borrow_mut().take());
    match held {
        None => {}
        Some(held) if held.heavy => HELD.with(|p| *p.borrow_mut() = Some(held)),
        Some(light) => {
            drop(light);
            // A closed semaphore (shutdown) leaves the job to finish without a permit.
            if let Ok(permit) = runtime.block_on(heavy_permits().clone().acquire_owned()) {
                HELD.with(|p| {
                    *p.borrow_mut() = Some(HeldPermit {
                        _permit: permit,
                        heavy: true,
                    })
                });
            }
        }
    }
}
