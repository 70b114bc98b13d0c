//! The budget of request-body bytes buffered at once across all connections
//! (`--max-buffered-body-bytes`), and buffered bytes that hold their share of it until they
//! drop. [`super::body_buffer`] reads bodies within it.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The budget's unit (a semaphore counts permits in `u32`).
pub const UNIT: usize = 1024;
/// Bodies this small skip the budget.
pub const UNBUDGETED_BYTES: usize = 64 << 10;

/// The bytes of request bodies buffered at once, in [`UNIT`]s.
pub struct BodyBudget {
    units: Arc<Semaphore>,
    total_units: usize,
}

impl BodyBudget {
    pub fn new(max_bytes: usize) -> Self {
        let total_units = max_bytes.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            units: Arc::new(Semaphore::new(total_units)),
            total_units,
        }
    }

    pub fn total_bytes(&self) -> usize {
        self.total_units * UNIT
    }

    /// Bytes free now (tests and diagnostics).
    pub fn available_bytes(&self) -> usize {
        self.units.available_permits() * UNIT
    }

    /// Reserves `bytes` (rounded up to units) by `deadline`; `None` when the budget stays
    /// too full until then.
    pub async fn reserve(&self, bytes: usize, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        let units = bytes.div_ceil(UNIT).min(self.total_units);
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        tokio::time::timeout_at(deadline, self.units.clone().acquire_many_owned(units))
            .await
            .ok()?
            .ok()
    }
}

/// Buffered body bytes holding their reservation: it is returned when the last view of the
/// bytes drops.
pub struct Reserved {
    pub bytes: Vec<u8>,
    pub permits: Vec<OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for Reserved {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}
