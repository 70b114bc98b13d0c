//! Wakes the engine thread when a client reads while every request left is parked.
//!
//! A parked request (its client stopped reading: see `RequestState::update_backpressure`) can
//! run again as soon as its client reads. With nothing else to do the engine sleeps on its
//! command channel; it arms this signal first, and the first read after that sends it a
//! `Wake`. Reads while it is not armed cost one atomic swap.

use super::command::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

#[derive(Debug, Default)]
pub struct ReadWake {
    armed: AtomicBool,
    commands: OnceLock<Sender<Command>>,
}

impl ReadWake {
    /// Where wake-ups go (the engine thread's command channel), once it exists.
    pub fn connect(&self, commands: Sender<Command>) {
        let _ = self.commands.set(commands);
    }

    /// The engine is about to sleep: the next read wakes it.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// A client has read an event.
    pub fn notify(&self) {
        if self.armed.swap(false, Ordering::SeqCst)
            && let Some(commands) = self.commands.get()
        {
            let _ = commands.send(Command::Wake);
        }
    }
}
