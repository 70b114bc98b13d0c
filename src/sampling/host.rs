//! Selection on the host: exact top-k / top-p / min-p and inverse-CDF sampling, one row per
//! rayon task, reading CPU tensors in place (other devices' rows are copied over first).
//!
//! The vocabulary is never fully sorted in the common cases:
//! - with top-k (Qwen3's default is 20) a size-k heap finds the k-th largest value in one pass
//!   and only the few survivors are sorted;
//! - otherwise (top-p / min-p / plain sampling) survivors are binned by `max y - y` into
//!   quarter-logit buckets with their mass; walking buckets in order finds the one bucket where
//!   the top-p boundary lies, and only that bucket is sorted.
//!
//! The draw itself is one pass over the kept tokens in id order.
//!
//! Semantics are those of [`super::selection`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;

use super::selection::{Candidate, RowSpec, draw_by_id, scaled, sort_candidates, top_p_prefix};
use crate::error::{Error, Result};

/// Tokens further than this below the maximum (after temperature) have zero weight in f32
/// (`exp(-104)` underflows); skipping them early is only a shortcut, the exact test is `w > 0`.
const NEGLIGIBLE: f32 = -110.0;
/// Survivor sets up to this size are sorted outright; larger ones go through the buckets.
const DIRECT_MAX: usize = 4096;
/// Up to this k, top-k uses a heap (and its survivors are sorted outright); above it,
/// `select_nth_unstable` on a copy of the row.
const HEAP_MAX_K: usize = DIRECT_MAX;
const BUCKETS_PER_LOGIT: f32 = 4.0;
const BUCKETS: usize = 448; // covers max y - y in [0, 112)
const NO_BUCKET: u16 = u16::MAX;
/// Elements tested at once by the branch-free pre-scans.
const SCAN_CHUNK: usize = 64;

/// Samples one token per row of `processed` (`[R, vocab]`, bias and penalties applied) with
/// `specs[r]` (temperature, truncation, uniform). Same contract as
/// [`super::device::select_device`]. CPU f32 tensors are read in place; others are copied.
pub fn select_host(processed: &Tensor, specs: &[RowSpec]) -> Result<Vec<u32>> {
    let (rows, vocab) = processed.dims2()?;
    if specs.len() != rows {
        return Err(Error::Internal(format!(
            "sampling: {} row specs for {rows} logits rows",
            specs.len()
        )));
    }
    if rows == 0 {
        return Ok(Vec::new());
    }
    let t = processed
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let data = match &*storage {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>()?,
        _ => return Err(Error::Internal("sampling: host rows not on the CPU".into())),
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| Error::Internal("sampling: host rows not contiguous".into()))?;
    let picked: Vec<Option<u32>> = data[start..end]
        .par_chunks(vocab)
        .zip(specs.par_iter())
        .map(|(row, spec)| select_row(row, spec))
        .collect();
    picked
        .into_iter()
        .enumerate()
        .map(|(r, id)| match id {
            Some(id) if (id as usize) < vocab => Ok(id),
            _ => Err(Error::Internal(format!(
                "sampling: no token could be selected in logits row {r}"
            ))),
        })
        .collect()
}

/// One row of processed logits; `None` only for an empty row.
pub fn select_row(x: &[f32], spec: &RowSpec) -> Option<u32> {
    // `scaled` is monotone, so it commutes with max and with order statistics: both are taken
    // on the raw logits and scaled once, with no vocab-sized temporary.
    let k_active = spec.top_k_active(x.len());
    let (xmax, kth) = if k_active && spec.top_k <= HEAP_MAX_K {
        max_and_kth_by_heap(x, spec.top_k)
    } else {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let kth = if k_active {
            kth_by_select(x, spec.top_k)
        } else {
            f32::NEG_INFINITY
        };
        (max, kth)
    };
    let row = Row {
        x,
        bounds: Bounds::new(spec, xmax, kth),
    };
    let small = if uses_buckets(spec, x.len()) {
        None
    } else {
        row.collect_small()
    };
    match small {
        Some(cands) => select_small(&cands, spec),
        None => row.select_bucketed(spec),
    }
}

/// Whether the host goes straight to the buckets for a row of `vocab` tokens: without top-k
/// or min-p nearly every token survives.
pub(crate) fn uses_buckets(spec: &RowSpec, vocab: usize) -> bool {
    !(spec.top_k_active(vocab) || spec.min_p > 0.0 || vocab <= DIRECT_MAX)
}

/// top-p and the draw over every survivor of a row, `cands` in id order (at most
/// [`DIRECT_MAX`] of them).
pub(crate) fn select_small(cands: &[Candidate], spec: &RowSpec) -> Option<u32> {
    // Only a copy is sorted for top-p; the draw walks `cands` in id order.
    let tau_p = if spec.top_p_active() {
        top_p_threshold(cands, spec.top_p)
    } else {
        f32::NEG_INFINITY
    };
    let kept = || cands.iter().filter(|c| c.y >= tau_p).map(|c| (c.id, c.w));
    let z: f64 = kept().map(|(_, w)| w).sum();
    draw_by_id(kept(), spec.u * z)
}

/// The smallest `y` top-p keeps among `cands` (whole tie groups); `+inf` when it keeps nothing.
fn top_p_threshold(cands: &[Candidate], top_p: f32) -> f32 {
    let mut sorted = cands.to_vec();
    sort_candidates(&mut sorted);
    let z: f64 = sorted.iter().map(|c| c.w).sum();
    let (kept, _) = top_p_prefix(&sorted, 0.0, top_p as f64 * z);
    kept.checked_sub(1)
        .map_or(f32::INFINITY, |last| sorted[last].y)
}

/// The row maximum and the k-th largest value (`k <= HEAP_MAX_K`) with a size-k min-heap.
/// Eligibility (min-p, zero weight) is applied later: both sets are top segments of the same
/// order, so intersecting them gives the same survivors either way.
fn max_and_kth_by_heap(x: &[f32], k: usize) -> (f32, f32) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if x.len() < k || k == 0 {
        return (max, f32::NEG_INFINITY);
    }
    let (head, rest) = x.split_at(k);
    let mut heap: BinaryHeap<Reverse<OrdF32>> = head.iter().map(|&v| Reverse(OrdF32(v))).collect();
    let mut kth = heap.peek().map_or(f32::NEG_INFINITY, |r| r.0.0);
    // Almost no value beats the running k-th largest: test whole chunks with a branch-free
    // (vectorisable) scan and only walk the rare chunk that has a contender.
    for chunk in rest.chunks(SCAN_CHUNK) {
        if !chunk.iter().fold(false, |any, &v| any | (v > kth)) {
            continue;
        }
        for &v in chunk {
            if v > kth {
                heap.pop();
                heap.push(Reverse(OrdF32(v)));
                kth = heap.peek().map_or(f32::NEG_INFINITY, |r| r.0.0);
            }
        }
    }
    (max, kth)
}

/// The k-th largest value for large k, by `select_nth_unstable` on a copy.
fn kth_by_select(x: &[f32], k: usize) -> f32 {
    let mut vals = x.to_vec();
    if k == 0 || vals.len() < k {
        return f32::NEG_INFINITY;
    }
    let (_, kth, _) = vals.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    *kth
}

/// Total order on f32 for the heap (`total_cmp`).
#[derive(Clone, Copy, PartialEq)]
struct OrdF32(f32);
impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A row's thresholds up to top-k: which tokens survive min-p and top-k, and their weights.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    t: f32,
    ymax: f32,
    /// `max(ln min_p, NEGLIGIBLE)`: the bound on `y - ymax`.
    floor: f32,
    tau_k: f32,
}

impl Bounds {
    /// From the row's maximum and its k-th largest logit (`-inf` without top-k).
    pub(crate) fn new(spec: &RowSpec, xmax: f32, kth: f32) -> Self {
        let t = spec.temperature;
        Bounds {
            t,
            ymax: scaled(xmax, t),
            floor: spec.ln_min_p().max(NEGLIGIBLE),
            tau_k: scaled(kth, t),
        }
    }

    /// Whether a token with logit `v` passes the min-p and top-k bounds (before the weight
    /// test).
    #[inline]
    pub(crate) fn in_bounds(&self, v: f32) -> bool {
        let y = scaled(v, self.t);
        (y - self.ymax >= self.floor) & (y >= self.tau_k)
    }

    /// The candidate for token `id` with logit `v` if it survives min-p and top-k with a
    /// positive weight.
    #[inline]
    pub(crate) fn candidate(&self, v: f32, id: u32) -> Option<Candidate> {
        if !self.in_bounds(v) {
            return None;
        }
        let y = scaled(v, self.t);
        let w = (y - self.ymax).exp();
        (w > 0.0).then_some(Candidate { y, id, w: w as f64 })
    }

    /// Whether no token with a logit at or below `v` can survive (so a list of every token
    /// above `v` holds all survivors). Both tests are monotone in `v`.
    pub(crate) fn excludes_at_or_below(&self, v: f32) -> bool {
        self.candidate(v, 0).is_none()
    }

    fn bucket_of(&self, c: &Candidate) -> usize {
        (((self.ymax - c.y) * BUCKETS_PER_LOGIT) as usize).min(BUCKETS - 1)
    }

    /// Large survivor sets, given as a list in id order: the same buckets and cut as
    /// [`Row::select_bucketed`], so the same token.
    pub(crate) fn select_bucketed_list(&self, cands: &[Candidate], spec: &RowSpec) -> Option<u32> {
        let mut mass = vec![0f64; BUCKETS];
        for c in cands {
            mass[self.bucket_of(c)] += c.w;
        }
        let (cut, cut_y) = if spec.top_p_active() {
            top_p_cut(&mass, spec.top_p, |b| {
                cands
                    .iter()
                    .filter(|c| self.bucket_of(c) == b)
                    .copied()
                    .collect()
            })
        } else {
            (BUCKETS, f32::NEG_INFINITY)
        };
        let kept = || {
            cands.iter().filter_map(move |c| {
                let b = self.bucket_of(c);
                (b < cut || (b == cut && c.y >= cut_y)).then_some((c.id, c.w))
            })
        };
        let z: f64 = kept().map(|(_, w)| w).sum();
        draw_by_id(kept(), spec.u * z)
    }
}

/// A row with its thresholds resolved up to top-k.
struct Row<'a> {
    x: &'a [f32],
    bounds: Bounds,
}

impl Row<'_> {
    /// All survivors, unless there are more than [`DIRECT_MAX`].
    fn collect_small(&self) -> Option<Vec<Candidate>> {
        let mut out = Vec::new();
        for (c, chunk) in self.x.chunks(SCAN_CHUNK).enumerate() {
            // With top-k or min-p most chunks hold no survivor; a branch-free scan skips them.
            if !chunk
                .iter()
                .fold(false, |any, &v| any | self.bounds.in_bounds(v))
            {
                continue;
            }
            for i in c * SCAN_CHUNK..c * SCAN_CHUNK + chunk.len() {
                if let Some(cand) = self.bounds.candidate(self.x[i], i as u32) {
                    if out.len() == DIRECT_MAX {
                        return None;
                    }
                    out.push(cand);
                }
            }
        }
        Some(out)
    }

    /// Large survivor sets: bucket masses, then sort only the bucket where the top-p boundary
    /// falls; the draw is one pass over the kept tokens in id order.
    fn select_bucketed(&self, spec: &RowSpec) -> Option<u32> {
        let bounds = &self.bounds;
        let candidate = |i: usize| bounds.candidate(self.x[i], i as u32);
        let mut mass = vec![0f64; BUCKETS];
        let mut tag = vec![NO_BUCKET; self.x.len()];
        for (i, t) in tag.iter_mut().enumerate() {
            if let Some(c) = candidate(i) {
                let b = bounds.bucket_of(&c);
                mass[b] += c.w;
                *t = b as u16;
            }
        }
        // Kept: every bucket before `cut`, and the members of `cut` at or above `cut_y`.
        let (cut, cut_y) = if spec.top_p_active() {
            top_p_cut(&mass, spec.top_p, |b| {
                tag.iter()
                    .enumerate()
                    .filter(|&(_, &t)| t as usize == b)
                    .filter_map(|(i, _)| candidate(i))
                    .collect()
            })
        } else {
            (BUCKETS, f32::NEG_INFINITY)
        };
        let kept = || {
            tag.iter().enumerate().filter_map(move |(i, &t)| {
                let t = t as usize;
                if t > cut || t == NO_BUCKET as usize {
                    return None;
                }
                let c = candidate(i)?;
                (t < cut || c.y >= cut_y).then_some((c.id, c.w))
            })
        };
        let z: f64 = kept().map(|(_, w)| w).sum();
        draw_by_id(kept(), spec.u * z)
    }
}

/// The bucket holding the top-p boundary and the smallest `y` kept inside it (`+inf`: none of
/// it); `(BUCKETS, -inf)` when rounding keeps everything. `members(b)` lists bucket `b`'s
/// candidates in id order.
fn top_p_cut(
    mass: &[f64],
    top_p: f32,
    members: impl FnOnce(usize) -> Vec<Candidate>,
) -> (usize, f32) {
    let target = top_p as f64 * mass.iter().sum::<f64>();
    let mut cum = 0.0;
    for (b, &m) in mass.iter().enumerate() {
        if m == 0.0 {
            continue;
        }
        if cum + m < target {
            cum += m;
            continue;
        }
        let mut members = members(b);
        sort_candidates(&mut members);
        let (kept, _) = top_p_prefix(&members, cum, target);
        let cut_y = kept
            .checked_sub(1)
            .map_or(f32::INFINITY, |last| members[last].y);
        return (b, cut_y);
    }
    (BUCKETS, f32::NEG_INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(top_k: usize, top_p: f32, min_p: f32, u: f64) -> RowSpec {
        RowSpec {
            temperature: 1.0,
            top_k,
            top_p,
            min_p,
            u,
        }
    }

    /// Which ids can come out for a spec, scanning u over [0, 1).
    fn support(x: &[f32], s: RowSpec) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..2000)
            .map(|i| {
                select_row(
                    x,
                    &RowSpec {
                        u: i as f64 / 2000.0,
                        ..s
                    },
                )
                .unwrap()
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    #[test]
    fn top_k_keeps_ties() {
        let x = [1.0f32, 3.0, 2.0, 2.0, 0.0];
        assert_eq!(support(&x, spec(1, 1.0, 0.0, 0.0)), vec![1]);
        assert_eq!(support(&x, spec(2, 1.0, 0.0, 0.0)), vec![1, 2, 3]);
        assert_eq!(support(&x, spec(3, 1.0, 0.0, 0.0)), vec![1, 2, 3]);
        assert_eq!(support(&x, spec(4, 1.0, 0.0, 0.0)), vec![0, 1, 2, 3]);
    }

    #[test]
    fn kth_largest_with_heap_and_select() {
        let y: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 5000) as f32).collect();
        assert_eq!(max_and_kth_by_heap(&y, 10), (4999.0, 4990.0));
        assert_eq!(kth_by_select(&y, 10), 4990.0);
        assert_eq!(kth_by_select(&y, 2000), 3000.0);
        let ties = [3.0f32, 1.0, 3.0, 2.0, 3.0];
        assert_eq!(max_and_kth_by_heap(&ties, 2), (3.0, 3.0));
        assert_eq!(max_and_kth_by_heap(&ties, 4), (3.0, 2.0));
        assert_eq!(kth_by_select(&ties, 4), 2.0);
        assert_eq!(max_and_kth_by_heap(&ties, 9).1, f32::NEG_INFINITY);
        // contenders late in long rows (several chunks)
        let mut long = vec![0.0f32; 1000];
        long[999] = 5.0;
        long[500] = 4.0;
        long[3] = 3.0;
        assert_eq!(max_and_kth_by_heap(&long, 2), (5.0, 4.0));
        assert_eq!(max_and_kth_by_heap(&long, 3), (5.0, 3.0));
        assert_eq!(max_and_kth_by_heap(&long, 4), (5.0, 0.0));
    }

    #[test]
    fn signed_zeros_form_one_tie_group() {
        // -0.0 and +0.0 are one group ordered by id, as on the device.
        let x = [-0.0f32, 0.0, -0.0, 0.0];
        assert_eq!(support(&x, spec(0, 1.0, 0.0, 0.0)), vec![0, 1, 2, 3]);
        assert_eq!(select_row(&x, &spec(0, 1.0, 0.0, 0.3)), Some(1));
        assert_eq!(select_row(&x, &spec(0, 1.0, 0.0, 0.6)), Some(2));
    }

    #[test]
    fn bucketed_path_matches_direct_path() {
        // 20k tokens forces the bucket path; compare with the direct path on a subset rule.
        let mut x: Vec<f32> = (0..20_000u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 8) % 1000) as f32 / 100.0)
            .collect();
        x[17] = 12.0;
        for &(top_p, u) in &[(1.0f32, 0.3f64), (0.9, 0.7), (0.5, 0.999), (0.05, 0.1)] {
            let s = spec(0, top_p, 0.0, u);
            let fast = select_row(&x, &s).unwrap();
            // Reference: sort everything.
            let ymax = 12.0f32;
            let all: Vec<Candidate> = x
                .iter()
                .enumerate()
                .map(|(i, &y)| Candidate {
                    y,
                    id: i as u32,
                    w: ((y - ymax).exp()) as f64,
                })
                .collect();
            let mut sorted = all.clone();
            sort_candidates(&mut sorted);
            let z: f64 = sorted.iter().map(|c| c.w).sum();
            let kept = if top_p < 1.0 {
                top_p_prefix(&sorted, 0.0, top_p as f64 * z).0
            } else {
                sorted.len()
            };
            let mut kept: Vec<(u32, f64)> = sorted[..kept].iter().map(|c| (c.id, c.w)).collect();
            kept.sort_unstable_by_key(|&(id, _)| id);
            let z2: f64 = kept.iter().map(|&(_, w)| w).sum();
            let slow = draw_by_id(kept, u * z2).unwrap();
            assert_eq!(fast, slow, "top_p {top_p} u {u}");
        }
    }

    #[test]
    fn nan_logits_count_as_lowest() {
        assert_eq!(
            support(&[f32::NAN, 1.0, f32::NAN], spec(0, 1.0, 0.0, 0.0)),
            vec![1]
        );
        assert_eq!(
            support(&[f32::NAN, f32::NAN], spec(0, 1.0, 0.0, 0.0)),
            vec![0, 1]
        );
    }

    #[test]
    fn negative_infinity_logits_are_never_drawn() {
        let x = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY];
        assert_eq!(support(&x, spec(0, 1.0, 0.0, 0.0)), vec![1]);
        assert_eq!(support(&x, spec(3, 0.5, 0.0, 0.0)), vec![1]);
    }
}
