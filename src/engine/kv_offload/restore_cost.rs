//! Whether restoring a run of blocks from a tier is cheaper than computing them again, from
//! what both have cost so far on this machine.

use std::time::Duration;

/// Running rates (exponentially weighted, so they follow load changes).
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreCost {
    /// Prompt tokens computed per second by steps that had prompt work.
    prefill_tokens_per_s: Option<f64>,
    /// Tokens restored per second.
    restore_tokens_per_s: Option<f64>,
}

const WEIGHT: f64 = 0.2;

impl RestoreCost {
    pub fn observe_prefill(&mut self, tokens: usize, took: Duration) {
        update(&mut self.prefill_tokens_per_s, tokens, took);
    }

    pub fn observe_restore(&mut self, tokens: usize, took: Duration) {
        update(&mut self.restore_tokens_per_s, tokens, took);
    }

    /// Until both have been seen, restoring is assumed cheaper: reading a block is a copy, its
    /// computation a forward pass over every layer.
    pub fn restore_pays(&self) -> bool {
        match (self.prefill_tokens_per_s, self.restore_tokens_per_s) {
            (Some(prefill), Some(restore)) => restore > prefill,
            _ => true,
        }
    }
}

fn update(rate: &mut Option<f64>, tokens: usize, took: Duration) {
    let seconds = took.as_secs_f64();
    if tokens == 0 || seconds <= 0.0 {
        return;
    }
    let seen = tokens as f64 / seconds;
    *rate = Some(match *rate {
        Some(old) => old + WEIGHT * (seen - old),
        None => seen,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_only_while_faster_than_prefill() {
        let mut cost = RestoreCost::default();
        assert!(cost.restore_pays());
        cost.observe_prefill(1000, Duration::from_secs(1));
        assert!(cost.restore_pays());
        cost.observe_restore(100, Duration::from_secs(1));
        assert!(!cost.restore_pays());
        for _ in 0..20 {
            cost.observe_restore(100_000, Duration::from_secs(1));
        }
        assert!(cost.restore_pays());
    }
}
