//! What the engine thread is told through its channel (by the handle, and by a reader's wake).

use super::request_state::RequestState;
use super::scheduler::Entry;
use std::time::Instant;

pub enum Command {
    Submit(Box<Entry<RequestState>>),
    Drain {
        deadline: Instant,
    },
    /// Test-only: panic inside the next step.
    InjectPanic,
    /// A client read from its stream while the engine waited with only parked requests.
    Wake,
}
