//! When drafts pay: speculation must never make decoding slower.
//!
//! A step's time grows with the tokens it feeds — little while decoding is bound by reading
//! the weights, a lot once it is bound by compute (large batches, a CPU's matmuls). Each draft
//! token is worth the probability that it is accepted. Every step the gate keeps the draft
//! tokens, likeliest first, that raise the expected tokens per second of the step over what
//! the step would make without them, by a model of step time learned from the steps that ran.
//!
//! A request's acceptance is learned from its verified drafts. One whose drafts stopped
//! paying gets a single draft token now and then ([`PROBE_EVERY`] steps), so it is noticed
//! when its output turns repetitive, at a cost of one extra token in that many steps.

/// Steps between probes of a request whose drafts are not used.
pub const PROBE_EVERY: u32 = 16;
/// The least gain in expected tokens per second for which a step carries drafts: noise in the
/// step-time model must not make worthless drafts look free.
const MIN_GAIN: f64 = 0.02;
/// A probe is sent only where one more token costs at most this share of a step (a decode
/// bound by reading the weights); where every token costs compute, probes of every request
/// at once would be a step's worth of work.
const PROBE_COST: f64 = 0.05;
/// Weight of history in the acceptance and step-time averages.
const DECAY: f64 = 0.8;
/// Step sizes (tokens) the step-time model keeps apart; larger steps share the last bucket.
const BUCKETS: usize = 64;

/// A request's acceptance: the chance that a draft token is accepted once those before it
/// were, from its recent verifications.
#[derive(Debug, Clone)]
pub struct Acceptance {
    accepted: f64,
    rejected: f64,
    /// Steps since this request last carried a draft.
    idle_steps: u32,
}

impl Default for Acceptance {
    /// A new request starts hopeful (one acceptance, no rejection: 1.0 decaying fast), so its
    /// first drafts are tried.
    fn default() -> Self {
        Self {
            accepted: 1.0,
            rejected: 0.0,
            idle_steps: 0,
        }
    }
}

impl Acceptance {
    /// Per-token acceptance estimate.
    pub fn rate(&self) -> f64 {
        let seen = self.accepted + self.rejected;
        if seen <= 0.0 {
            return 1.0;
        }
        self.accepted / seen
    }

    /// The same estimate for a new request (not yet idle).
    pub fn fresh(&self) -> Self {
        Self {
            idle_steps: 0,
            ..self.clone()
        }
    }

    /// Records a verification: `accepted` of `drafted` tokens were accepted.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        let rejected = usize::from(accepted < drafted);
        self.accepted = self.accepted * DECAY + accepted as f64;
        self.rejected = self.rejected * DECAY + rejected as f64;
    }
}

/// One request's offer for a step: the draft it could carry.
pub struct Offer<'a> {
    pub draft: &'a mut Vec<u32>,
    pub acceptance: &'a mut Acceptance,
}

/// The model of step time by tokens fed, and the choice it drives.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Per bucket: averaged (tokens, seconds) of the pure decode steps that fell in it.
    steps: Vec<Option<(f64, f64)>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            steps: vec![None; BUCKETS],
        }
    }
}

impl Gate {
    /// Records a step that fed `tokens` tokens, each sequence's last token and its draft (no
    /// prompt chunks), in `seconds`.
    pub fn observe(&mut self, tokens: usize, seconds: f64) {
        if tokens == 0 || !seconds.is_finite() {
            return;
        }
        let slot = &mut self.steps[bucket(tokens)];
        *slot = Some(match *slot {
            None => (tokens as f64, seconds),
            Some((n, t)) => (
                n * DECAY + tokens as f64 * (1.0 - DECAY),
                t * DECAY + seconds * (1.0 - DECAY),
            ),
        });
    }

    /// Estimated seconds for a step of `tokens` tokens: interpolated between the nearest
    /// measured sizes; past the largest, as long as it (optimistic, so a larger step gets
    /// tried and measured — `explore_limit` keeps that step near what was measured);
    /// `None` before any step was measured.
    pub fn step_time(&self, tokens: usize) -> Option<f64> {
        interpolate(&self.measured(), tokens)
    }

    /// The measured (tokens, seconds), by size.
    fn measured(&self) -> Vec<(f64, f64)> {
        self.steps.iter().flatten().copied().collect()
    }

    /// The largest step the gate may choose: a quarter (at least one token) past the largest
    /// measured, so learning what larger steps cost never costs more than a quarter of a step.
    fn explore_limit(known: &[(f64, f64)]) -> usize {
        let largest = known
            .iter()
            .map(|&(n, _)| n.round() as usize)
            .max()
            .unwrap_or(0);
        largest + (largest / 4).max(1)
    }

    /// Trims each offer's draft to the tokens that pay this step; `decoding` sequences feed
    /// one token each besides the drafts. Until a step without drafts of about this size was
    /// measured, none are kept (the next step measures it).
    pub fn choose(&self, decoding: usize, offers: &mut [Offer<'_>]) {
        let known = self.measured();
        // The baseline a draft's worth is judged against: extrapolating down from drafting
        // steps would make drafts look free.
        if !known.iter().any(|&(n, _)| n <= decoding as f64 + 0.5) {
            for offer in offers.iter_mut() {
                offer.draft.clear();
            }
            return;
        }
        // Each draft token's worth: the chance it and every one before it are accepted.
        let mut items: Vec<(f64, usize)> = Vec::new();
        for (i, offer) in offers.iter_mut().enumerate() {
            let rate = offer.acceptance.rate();
            let mut worth = 1.0;
            for _ in 0..offer.draft.len() {
                worth *= rate;
                items.push((worth, i));
            }
        }
        items.sort_by(|a, b| b.0.total_cmp(&a.0));
        items.truncate(Self::explore_limit(&known).saturating_sub(decoding));
        let mut keep = vec![0usize; offers.len()];
        let mut probes_cheap = false;
        if let Some(base) = interpolate(&known, decoding) {
            probes_cheap =
                interpolate(&known, decoding + 1).is_some_and(|t| t <= base * (1.0 + PROBE_COST));
            let mut expected = decoding as f64;
            let mut best = expected / base * (1.0 + MIN_GAIN);
            let mut best_len = 0;
            for (m, &(worth, _)) in items.iter().enumerate() {
                expected += worth;
                let Some(t) = interpolate(&known, decoding + m + 1) else {
                    break;
                };
                if expected / t > best {
                    best = expected / t;
                    best_len = m + 1;
                }
            }
            for &(_, i) in &items[..best_len] {
                keep[i] += 1;
            }
        }
        for (offer, &k) in offers.iter_mut().zip(&keep) {
            let probe = k == 0 && probes_cheap && offer.acceptance.idle_steps >= PROBE_EVERY;
            let k = if probe { k.max(1) } else { k };
            offer.draft.truncate(k);
            if offer.draft.is_empty() {
                offer.acceptance.idle_steps += 1;
            } else {
                offer.acceptance.idle_steps = 0;
            }
        }
    }
}

/// Seconds for a step of `tokens` tokens from the measured (tokens, seconds), ascending (see
/// [`Gate::step_time`]).
fn interpolate(known: &[(f64, f64)], tokens: usize) -> Option<f64> {
    let x = tokens as f64;
    let below = known.iter().rev().find(|(n, _)| *n <= x).copied();
    let above = known.iter().find(|(n, _)| *n >= x).copied();
    match (below, above) {
        (Some((n0, t0)), Some((n1, t1))) if n1 > n0 => Some(t0 + (t1 - t0) * (x - n0) / (n1 - n0)),
        (Some((_, t)), _) | (None, Some((_, t))) => Some(t),
        (None, None) => None,
    }
}

/// The bucket of a step of `tokens` tokens: one per size up to 32, then by powers of two.
fn bucket(tokens: usize) -> usize {
    if tokens <= 32 {
        return tokens - 1;
    }
    let log = usize::BITS - (tokens - 1).leading_zeros(); // 6 for 33..=64
    (32 + (log as usize - 6) * 4 + ((tokens - 1) >> (log - 3)) % 4).min(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer<'a>(draft: &'a mut Vec<u32>, acceptance: &'a mut Acceptance) -> Offer<'a> {
        Offer { draft, acceptance }
    }

    #[test]
    fn acceptance_follows_recent_verifications() {
        let mut a = Acceptance::default();
        assert_eq!(a.rate(), 1.0);
        for _ in 0..20 {
            a.record(4, 0);
        }
        assert!(a.rate() < 0.01, "{}", a.rate());
        for _ in 0..20 {
            a.record(4, 4);
        }
        assert!(a.rate() > 0.95, "{}", a.rate());
        for _ in 0..20 {
            a.record(4, 2);
        }
        // Two accepted, then one rejected, each time: 2/3.
        assert!((a.rate() - 2.0 / 3.0).abs() < 0.02, "{}", a.rate());
    }

    #[test]
    fn step_time_interpolates_and_holds_past_the_largest_measured() {
        let mut g = Gate::default();
        assert_eq!(g.step_time(1), None);
        g.observe(1, 0.010);
        g.observe(5, 0.014);
        assert_eq!(g.step_time(1), Some(0.010));
        assert!((g.step_time(3).unwrap() - 0.012).abs() < 1e-12);
        assert_eq!(g.step_time(9), Some(0.014));
        for tokens in [1, 32, 33, 64, 65, 100, 1000, 100_000] {
            assert!(bucket(tokens) < BUCKETS);
        }
        assert!(bucket(33) > bucket(32) && bucket(100) > bucket(64));
    }

    #[test]
    fn cheap_steps_take_likely_drafts_and_costly_steps_refuse_them() {
        let mut cheap = Gate::default();
        cheap.observe(1, 0.010);
        cheap.observe(5, 0.011); // memory-bound: 4 more tokens cost 10 %
        let mut costly = Gate::default();
        costly.observe(1, 0.010);
        costly.observe(5, 0.050); // compute-bound: every token costs as much as the first
        let (mut d, mut a) = (vec![1, 2, 3, 4], Acceptance::default());
        a.record(4, 2); // about 0.75 each
        cheap.choose(1, &mut [offer(&mut d, &mut a)]);
        assert_eq!(d.len(), 4);
        let mut d = vec![1, 2, 3, 4];
        costly.choose(1, &mut [offer(&mut d, &mut a)]);
        assert!(d.is_empty());
    }

    #[test]
    fn nothing_is_drafted_before_a_plain_step_of_the_size_was_measured() {
        let mut g = Gate::default();
        let (mut d, mut a) = (vec![1, 2], Acceptance::default());
        g.choose(1, &mut [offer(&mut d, &mut a)]);
        assert!(d.is_empty());
        // A drafting step was measured, but no plain one as small: still nothing.
        g.observe(3, 0.010);
        let mut d = vec![1, 2];
        g.choose(1, &mut [offer(&mut d, &mut a)]);
        assert!(d.is_empty());
        g.observe(1, 0.010);
        let mut d = vec![1, 2];
        g.choose(1, &mut [offer(&mut d, &mut a)]);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn drafts_that_add_almost_nothing_are_not_carried() {
        let mut g = Gate::default();
        g.observe(1, 0.010);
        g.observe(2, 0.010); // free, but the draft is almost never right
        let mut a = Acceptance::default();
        for _ in 0..16 {
            a.record(1, 0);
        }
        assert!(a.rate() < 0.01);
        let mut d = vec![1];
        g.choose(1, &mut [offer(&mut d, &mut a)]);
        assert!(d.is_empty());
    }

    #[test]
    fn larger_steps_are_learned_a_quarter_at_a_time() {
        let mut g = Gate::default();
        g.observe(16, 0.100);
        let mut drafts: Vec<Vec<u32>> = (0..16).map(|_| vec![1, 2, 3, 4]).collect();
        let mut accept: Vec<Acceptance> = (0..16).map(|_| Acceptance::default()).collect();
        let mut offers: Vec<Offer<'_>> = drafts
            .iter_mut()
            .zip(accept.iter_mut())
            .map(|(d, a)| offer(d, a))
            .collect();
        g.choose(16, &mut offers);
        let carried: usize = drafts.iter().map(Vec::len).sum();
        assert_eq!(carried, 4, "16 measured: at most 20 tokens");
    }

    #[test]
    fn no_probes_where_a_token_costs_compute() {
        let mut g = Gate::default();
        g.observe(16, 0.100);
        g.observe(32, 0.200); // every token costs as much as the others
        let mut a = Acceptance::default();
        for _ in 0..30 {
            a.record(1, 0);
        }
        for _ in 0..3 * PROBE_EVERY {
            let mut d = vec![9];
            g.choose(16, &mut [offer(&mut d, &mut a)]);
            assert!(d.is_empty());
        }
    }

    #[test]
    fn hopeless_drafts_are_dropped_then_probed_now_and_then() {
        let mut g = Gate::default();
        g.observe(1, 0.010);
        g.observe(2, 0.0105);
        let mut a = Acceptance::default();
        for _ in 0..30 {
            a.record(1, 0);
        }
        let mut used = 0;
        for _ in 0..(PROBE_EVERY as usize + 1) * 3 {
            let mut d = vec![9, 9];
            g.choose(1, &mut [offer(&mut d, &mut a)]);
            used += d.len();
        }
        // One single-token probe every PROBE_EVERY + 1 steps.
        assert_eq!(used, 3);
    }

    #[test]
    fn the_likeliest_tokens_of_the_batch_go_first() {
        let mut g = Gate::default();
        g.observe(2, 0.010);
        g.observe(3, 0.0102);
        g.observe(4, 0.030); // a third extra token would cost far more than it brings
        let (mut d1, mut a1) = (vec![1, 2], Acceptance::default());
        let (mut d2, mut a2) = (vec![3, 4], Acceptance::default());
        for _ in 0..10 {
            a1.record(2, 2);
            a2.record(2, 0);
        }
        g.choose(2, &mut [offer(&mut d1, &mut a1), offer(&mut d2, &mut a2)]);
        assert_eq!((d1.len(), d2.len()), (1, 0));
    }
}
