//! What happens to the prefix cache's registered blocks, recorded for those downstream of the
//! pool: the offload tiers (which save an evicted block's KV before it is overwritten) and the
//! KV event stream (which tells routers what this replica holds).

use std::sync::Arc;

use super::block_digest::BlockLink;
use super::block_manager::BlockId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// A full block's KV was registered for reuse.
    Stored {
        block: BlockId,
        link: BlockLink,
        tokens: Vec<u32>,
        /// The first block of its sequence (no parent block)?
        first: bool,
        /// The `cache_salt` of a first block's sequence.
        salt: Option<Arc<str>>,
    },
    /// A registered block was taken for new contents. Its KV is still in the pool until the
    /// next forward pass writes into it.
    Evicted {
        block: BlockId,
        link: BlockLink,
        tokens: Vec<u32>,
    },
}

/// Which events the pool records, and those not drained yet.
#[derive(Debug, Clone, Default)]
pub struct PoolJournal {
    pub record_stored: bool,
    pub record_evicted: bool,
    events: Vec<PoolEvent>,
}

impl PoolJournal {
    pub fn new(record_stored: bool, record_evicted: bool) -> Self {
        Self {
            record_stored,
            record_evicted,
            events: Vec::new(),
        }
    }

    pub(crate) fn stored(
        &mut self,
        block: BlockId,
        link: BlockLink,
        tokens: &[u32],
        first: bool,
        salt: Option<&Arc<str>>,
    ) {
        if self.record_stored {
            self.events.push(PoolEvent::Stored {
                block,
                link,
                tokens: tokens.to_vec(),
                first,
                salt: salt.cloned(),
            });
        }
    }

    pub(crate) fn evicted(&mut self, block: BlockId, link: BlockLink, tokens: Vec<u32>) {
        if self.record_evicted {
            self.events.push(PoolEvent::Evicted {
                block,
                link,
                tokens,
            });
        }
    }

    pub fn drain(&mut self) -> Vec<PoolEvent> {
        std::mem::take(&mut self.events)
    }
}
