//! The engine thread: a warm-up step before it reports ready, then the step loop, and what
//! happens when it dies.
//!
//! A panic in a step, or steps that keep failing (a device in a sticky error state), is fatal:
//! every accepted request gets an error event, the [`Liveness`] flag drops (so `/health` turns
//! 503 and the server exits non-zero for a supervisor to restart it), and the thread ends.

use super::command::Command;
use super::core::{EngineCore, StepOutcome};
use super::request::Event;
use crate::error::{Error, Result};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Consecutive failed steps after which the device is taken to be gone.
pub const FATAL_CONSECUTIVE_FAILURES: usize = 3;
/// Test-only: the engine thread panics after this many steps, or in its warm-up step when set
/// to `warmup` (process-level fault tests).
pub const FAULT_ENV: &str = "TEALIGHT_FAULT_PANIC_AFTER_STEPS";

/// Whether the engine thread is alive, and a way to wait for its death.
#[derive(Debug, Default)]
pub struct Liveness {
    dead: AtomicBool,
    why: Mutex<Option<String>>,
    notify: tokio::sync::Notify,
}

impl Liveness {
    pub fn is_alive(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
    }

    /// Why the engine died, once it has.
    pub fn cause(&self) -> Option<String> {
        self.why.lock().ok().and_then(|w| w.clone())
    }

    /// Resolves when the engine thread has died (never, while it lives).
    pub async fn died(&self) {
        loop {
            let notified = self.notify.notified();
            if !self.is_alive() {
                return;
            }
            notified.await;
        }
    }

    fn mark_dead(&self, why: String) {
        if let Ok(mut w) = self.why.lock() {
            *w = Some(why);
        }
        self.dead.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Starts the engine thread, runs the warm-up step on it, and returns once it is ready (or
/// with the warm-up's error).
pub fn spawn(
    mut core: EngineCore,
    liveness: Arc<Liveness>,
) -> Result<(Sender<Command>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    let thread = std::thread::Builder::new()
        .name("tealight-engine".into())
        .spawn(move || {
            let warmed = catch_unwind(AssertUnwindSafe(|| {
                if std::env::var(FAULT_ENV).is_ok_and(|v| v == "warmup") {
                    panic!("injected fault in the warm-up step ({FAULT_ENV})");
                }
                core.warm_up()
            }))
            .unwrap_or_else(|panic| Err(Error::Internal(panic_message(&panic))));
            let failed = warmed.is_err();
            let _ = ready_tx.send(warmed);
            if !failed {
                run(core, rx, &liveness);
            }
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((tx, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(Error::Device(format!(
                "the warm-up step failed, so the device cannot serve: {e}"
            )))
        }
        Err(_) => Err(Error::Internal(
            "the engine thread ended during its warm-up step".into(),
        )),
    }
}

/// The step loop, guarded: a panic or a run of failed steps ends the engine for good.
fn run(core: EngineCore, commands: Receiver<Command>, liveness: &Liveness) {
    let panic_after = std::env::var(FAULT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let on_cpu = core.runs_on_cpu();
    let steps = move || {
        let mut core = core;
        let result = catch_unwind(AssertUnwindSafe(|| {
            step_loop(&mut core, &commands, panic_after)
        }));
        (result, core, commands)
    };
    // A GPU engine stays on the thread that warmed its device up.
    let (result, mut core, commands) = if on_cpu {
        on_compute_pool(steps)
    } else {
        steps()
    };
    let why = match result {
        Ok(None) => {
            core.persist_prefix_cache();
            return;
        }
        Ok(Some(why)) => why,
        Err(panic) => format!("the engine panicked: {}", panic_message(&panic)),
    };
    tracing::error!("{why}; failing every request and stopping");
    let message = format!("the engine stopped: {why}");
    // Dead first, so that a client reading its error already finds /health at 503.
    liveness.mark_dead(why);
    // The core may be half-way through a step; failing its requests only sends on channels.
    let _ = catch_unwind(AssertUnwindSafe(|| core.fail_all(&message)));
    fail_queued(&commands, &message);
}

/// Runs `f` on a thread of a rayon pool of its own, as many threads as the global one. The
/// kernels' parallel loops then start from a pool thread, which works on them itself while its
/// siblings steal, instead of being handed in from outside with the engine thread asleep until
/// they finish: a decode step is a few hundred such loops, and the hand-overs cost thread
/// wake-ups (Q4_K_M decode TPOT 39 → 29 ms on 2 cores). A pool of its own, because the engine
/// loop holds its thread while idle: in the global pool, other users of rayon (tokenizers)
/// would wait for it.
fn on_compute_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(|i| format!("tealight-compute-{i}"))
        .build();
    match pool {
        Ok(pool) => pool.install(f),
        Err(e) => {
            tracing::warn!("no compute pool ({e}); the engine runs on its own thread");
            f()
        }
    }
}

/// Steps until shutdown (`None`) or a fatal run of failures (`Some(why)`).
fn step_loop(
    core: &mut EngineCore,
    commands: &Receiver<Command>,
    panic_after: Option<u64>,
) -> Option<String> {
    let mut deadline: Option<Instant> = None;
    let mut failures = 0;
    let mut steps = 0u64;
    loop {
        // Block while idle; otherwise take whatever arrived and keep stepping.
        if core.is_idle() {
            if deadline.is_some() {
                return None;
            }
            match commands.recv_timeout(Duration::from_millis(500)) {
                Ok(cmd) => apply(core, cmd, &mut deadline),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
        while let Ok(cmd) = commands.try_recv() {
            apply(core, cmd, &mut deadline);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            core.abort_all();
            return None;
        }
        steps += 1;
        if panic_after.is_some_and(|n| steps > n) {
            panic!("injected fault ({FAULT_ENV})");
        }
        match core.step() {
            StepOutcome::Ran => failures = 0,
            StepOutcome::Idle => {
                if !core.is_idle() {
                    // Nothing could be scheduled: every request left is parked (its client
                    // stopped reading). Sleep until a client reads, a request arrives, or the
                    // nearest stall deadline.
                    wait_while_parked(core, commands, &mut deadline)?;
                }
            }
            StepOutcome::Failed(e) => {
                failures += 1;
                if failures >= FATAL_CONSECUTIVE_FAILURES {
                    return Some(format!(
                        "{failures} steps in a row failed, the last with: {e}"
                    ));
                }
            }
        }
    }
}

/// The longest the engine sleeps with only parked requests before it looks again (a missed
/// wake-up costs at most this).
const PARKED_POLL: Duration = Duration::from_millis(250);

/// Blocks until something may have changed for parked requests. `None` when the handle is gone
/// (the loop ends).
fn wait_while_parked(
    core: &mut EngineCore,
    commands: &Receiver<Command>,
    deadline: &mut Option<Instant>,
) -> Option<()> {
    // Armed before the check: a client that reads after it sends a wake-up.
    core.wake().arm();
    if core.any_parked_has_room() {
        return Some(());
    }
    let mut wait = core.parked_wait(PARKED_POLL);
    if let Some(d) = *deadline {
        wait = wait.min(d.saturating_duration_since(Instant::now()));
    }
    match commands.recv_timeout(wait) {
        Ok(cmd) => apply(core, cmd, deadline),
        Err(RecvTimeoutError::Timeout) => {}
        Err(RecvTimeoutError::Disconnected) => return None,
    }
    Some(())
}

fn apply(core: &mut EngineCore, cmd: Command, deadline: &mut Option<Instant>) {
    match cmd {
        Command::Submit(entry) => core.add(*entry),
        Command::Drain { deadline: d } => *deadline = Some(d),
        Command::InjectPanic => panic!("injected fault"),
        Command::Wake => {}
    }
}

/// Requests submitted but not yet taken by the loop get the error too.
fn fail_queued(commands: &Receiver<Command>, message: &str) {
    while let Ok(cmd) = commands.try_recv() {
        if let Command::Submit(entry) = cmd {
            let _ = entry.data.events.try_send(Event::Error(message.to_owned()));
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
