//! The selection semantics both implementations ([`super::host`], [`super::device`]) follow,
//! and the pieces of it they share.
//!
//! For one row of processed logits `x` (bias and penalties already applied) and a uniform `u`:
//!
//! 1. `y = clamp(x / T, ±1e30)` (NaN → -1e30), `w = exp(y - max y)` computed in f32 and summed
//!    in f64. Tokens
//!    with `w == 0` (more than ~104 below the maximum after temperature) can never be drawn
//!    and are left out of every step.
//! 2. min-p keeps `y - max y >= ln(min_p)`; top-k keeps `y >= ` the k-th largest `y`. Both keep
//!    every token tied with the boundary. (vLLM applies min-p before top-k; the two commute.)
//! 3. top-p runs on what is left, renormalised (vLLM order): walking the survivors in
//!    descending `y`, a *group* of tokens with equal `y` is kept while the mass of the groups
//!    strictly above it is `< top_p * Z`. A tie at the boundary is kept or dropped as a whole.
//! 4. Inverse CDF over the kept tokens in ascending **id** order, with `target = u * Z_kept`
//!    (`Z_kept` summed in that same order): the first kept id whose running mass exceeds
//!    `target` (the last kept id when rounding leaves `target` past the end).
//!
//! Why ids and not descending probability: the kept set and its order are then fixed by the
//! thresholds alone. CPU logits of one sequence differ in their last bits with the rows it is
//! batched with; on a flat distribution (a random-weight model, or top-p over a long tail)
//! such noise reorders nearly equal tokens, and a walk in probability order would turn it
//! into a different token for a large share of draws. In id order a draw only moves when
//! `target` lies within that noise of a running-mass boundary, or when the noise moves a token
//! across a truncation threshold. The two implementations sum in different orders, so they
//! agree exactly except when `target` or `top_p * Z` falls within a few f64 ulps of a
//! boundary.
//!
//! Greedy rows never come here; they take the argmax of the processed logits.

use super::params::SamplingParams;

/// `x / T` is clamped to this magnitude so thresholds stay finite on every backend.
pub const LOGIT_CLAMP: f32 = 1e30;

/// Everything the selection step needs for one random row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowSpec {
    /// The divisor (see [`SamplingParams::sampling_temperature`]); must be `> 0`.
    pub temperature: f32,
    /// `0` (or `>= vocab`) disables top-k.
    pub top_k: usize,
    /// `>= 1` disables top-p.
    pub top_p: f32,
    /// `0` disables min-p.
    pub min_p: f32,
    /// The row's uniform draw in `[0, 1)`.
    pub u: f64,
}

impl RowSpec {
    pub fn new(params: &SamplingParams, u: f64) -> Self {
        RowSpec {
            temperature: params.sampling_temperature(),
            top_k: params.top_k,
            top_p: params.top_p,
            min_p: params.min_p,
            u,
        }
    }

    /// The min-p bound on `y - max y`; `-inf` when min-p is off.
    pub fn ln_min_p(&self) -> f32 {
        if self.min_p > 0.0 {
            self.min_p.ln()
        } else {
            f32::NEG_INFINITY
        }
    }

    pub fn top_k_active(&self, vocab: usize) -> bool {
        self.top_k > 0 && self.top_k < vocab
    }

    pub fn top_p_active(&self) -> bool {
        self.top_p < 1.0
    }
}

/// The temperature-scaled logit every comparison is made on. NaN (a model bug) counts as the
/// lowest value, so such a row still samples among its real logits instead of stalling or
/// erroring. Adding `0.0` turns `-0.0` into `+0.0`: the host sorts with `total_cmp`, which
/// would otherwise split a tie group that device comparisons (`==`) treat as one.
#[inline]
pub(crate) fn scaled(x: f32, temperature: f32) -> f32 {
    let y = x / temperature;
    if y.is_nan() {
        -LOGIT_CLAMP
    } else {
        y.clamp(-LOGIT_CLAMP, LOGIT_CLAMP) + 0.0
    }
}

/// A surviving token on the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    pub y: f32,
    pub id: u32,
    pub w: f64,
}

/// top-p order: descending `y`, ties by ascending id.
pub(crate) fn sort_candidates(c: &mut [Candidate]) {
    c.sort_unstable_by(|a, b| b.y.total_cmp(&a.y).then(a.id.cmp(&b.id)));
}

/// End of the tie group that starts at `start` in a sorted slice.
fn group_end(c: &[Candidate], start: usize) -> usize {
    let y = c[start].y;
    start + c[start..].iter().take_while(|k| k.y == y).count()
}

/// top-p over sorted candidates whose groups above have mass `acc`: returns how many
/// candidates are kept and the mass accumulated over the kept ones.
pub(crate) fn top_p_prefix(c: &[Candidate], mut acc: f64, target: f64) -> (usize, f64) {
    let mut start = 0;
    while start < c.len() {
        // Stop at the first group whose mass-above reaches the target (or is NaN).
        if acc.partial_cmp(&target) != Some(std::cmp::Ordering::Less) {
            return (start, acc);
        }
        let end = group_end(c, start);
        acc += c[start..end].iter().map(|k| k.w).sum::<f64>();
        start = end;
    }
    (c.len(), acc)
}

/// Inverse CDF over `(id, weight)` pairs given in ascending id: the first id whose running
/// mass exceeds `target`; the last one when rounding leaves `target` past the end.
pub(crate) fn draw_by_id(kept: impl IntoIterator<Item = (u32, f64)>, target: f64) -> Option<u32> {
    let mut acc = 0.0;
    let mut last = None;
    for (id, w) in kept {
        acc += w;
        last = Some(id);
        if acc > target {
            break;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(ws: &[(f32, f64)]) -> Vec<Candidate> {
        let mut c: Vec<Candidate> = ws
            .iter()
            .enumerate()
            .map(|(i, &(y, w))| Candidate { y, id: i as u32, w })
            .collect();
        sort_candidates(&mut c);
        c
    }

    #[test]
    fn top_p_keeps_whole_tie_groups() {
        // groups: {0} mass 2, {1,2} mass 1+1, {3} mass 1 ; Z = 5
        let c = cands(&[(3.0, 2.0), (2.0, 1.0), (2.0, 1.0), (1.0, 1.0)]);
        assert_eq!(top_p_prefix(&c, 0.0, 0.4 * 5.0), (1, 2.0));
        assert_eq!(top_p_prefix(&c, 0.0, 0.41 * 5.0), (3, 4.0));
        assert_eq!(top_p_prefix(&c, 0.0, 0.8 * 5.0), (3, 4.0));
        assert_eq!(top_p_prefix(&c, 0.0, 0.81 * 5.0), (4, 5.0));
    }

    #[test]
    fn draw_walks_ids_in_order() {
        let kept = [(1u32, 2.0), (3, 1.0), (4, 1.0), (9, 1.0)];
        assert_eq!(draw_by_id(kept, 0.0), Some(1));
        assert_eq!(draw_by_id(kept, 1.99), Some(1));
        assert_eq!(draw_by_id(kept, 2.0), Some(3));
        assert_eq!(draw_by_id(kept, 3.0), Some(4));
        assert_eq!(draw_by_id(kept, 4.5), Some(9));
        assert_eq!(draw_by_id(kept, 99.0), Some(9));
        assert_eq!(draw_by_id([], 0.0), None);
    }
}
