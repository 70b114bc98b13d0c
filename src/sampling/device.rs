//! Selection with tensor ops only, for logits that live on an accelerator.
//!
//! Same semantics as [`super::host`] (see [`super::selection`]), built from ops that exist on
//! CUDA for vocab-wide rows: elementwise arithmetic, comparisons, `where_cond`, and row
//! reductions (`sum`, `max`, `min`). No `cumsum` (it is a dense n² matmul in candle) and no
//! vocab-wide `arg_sort` (one CUDA block per row cannot hold 151,936 keys).
//!
//! Both thresholds the semantics need (k-th largest value, top-p boundary) have the form "the smallest surviving `y` whose mass strictly above is
//! below a target". Mass-above is non-increasing in the threshold, so each is found by
//! bisection on the value, all rows at once and without leaving the device, followed by a
//! "snap" to the next surviving value that is checked exactly; the rare unresolved row simply
//! steps to the next value. The draw walks the kept tokens in id order: the first id whose
//! running mass exceeds the target is found by bisection on the id, again all rows at once.
//!
//! What crosses to the host per call: one byte per row per snap round, and one id per row at
//! the end.

use candle_core::{DType, Device, Tensor};

use super::selection::{LOGIT_CLAMP, RowSpec};
use crate::error::{Error, Result};

/// Bisection steps before snapping. The bracket is `[max y - 110, max y]`; twenty halvings
/// leave ~1e-4, so the snap almost always lands on the answer in its first round.
const BISECT_STEPS: usize = 20;
/// Below every possible threshold (`y` is clamped to ±1e30).
const BELOW_ALL: f32 = -3.0e38;

/// Samples one token per row of `processed` (`[R, vocab]`, bias and penalties applied) with
/// `specs[r]`. Same contract as [`super::host::select_host`].
pub fn select_device(processed: &Tensor, specs: &[RowSpec]) -> Result<Vec<u32>> {
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
    let dev = processed.device();
    let column_f32 = |f: &dyn Fn(&RowSpec) -> f32| {
        Tensor::from_vec(specs.iter().map(f).collect::<Vec<f32>>(), (rows, 1), dev)
    };
    let column_f64 = |f: &dyn Fn(&RowSpec) -> f64| {
        Tensor::from_vec(specs.iter().map(f).collect::<Vec<f64>>(), (rows, 1), dev)
    };

    let x = processed.to_dtype(DType::F32)?;
    let y = x.broadcast_div(&column_f32(&|s| s.temperature)?)?;
    let lowest = Tensor::full(-LOGIT_CLAMP, (rows, vocab), dev)?;
    let y = y
        .ne(&y)?
        .where_cond(&lowest, &y)?
        .clamp(-LOGIT_CLAMP, LOGIT_CLAMP)?;
    let ymax = y.max_keepdim(1)?;
    let d = y.broadcast_sub(&ymax)?;
    let w32 = d.exp()?;
    let ln_min_p = column_f32(&|s| s.ln_min_p())?;
    // Eligible: positive weight and min-p.
    let mut keep = w32.gt(0f32)?.mul(&d.broadcast_ge(&ln_min_p)?)?;
    let w = w32.to_dtype(DType::F64)?;
    let zero = Tensor::zeros((1, 1), DType::F64, dev)?.broadcast_as((rows, vocab))?;
    let search = Search::new(&y, &ymax, rows, vocab, dev)?;
    // The top-k threshold, when there is one: the top-p answer is at or above it, so that
    // search starts its bracket there instead of 110 below the maximum.
    let mut floor: Option<Tensor> = None;

    if specs.iter().any(|s| s.top_k_active(vocab)) {
        let k = column_f32(&|s| {
            if s.top_k_active(vocab) {
                s.top_k as f32
            } else {
                f32::INFINITY
            }
        })?;
        let ones = keep.to_dtype(DType::F32)?;
        let tau = search.min_value(&keep, &ones, &k, None)?;
        keep = keep.mul(&y.broadcast_ge(&tau)?)?;
        floor = Some(tau);
    }
    let mut kept_w = keep.where_cond(&w, &zero)?;
    let mut z = kept_w.sum_keepdim(1)?;

    if specs.iter().any(|s| s.top_p_active()) {
        let p = column_f64(&|s| {
            if s.top_p_active() {
                s.top_p as f64
            } else {
                f64::INFINITY
            }
        })?;
        let target = p.mul(&z)?;
        let tau = search.min_value(&keep, &kept_w, &target, floor.as_ref())?;
        keep = keep.mul(&y.broadcast_ge(&tau)?)?;
        kept_w = keep.where_cond(&w, &zero)?;
        z = kept_w.sum_keepdim(1)?;
    }

    let target = column_f64(&|s| s.u)?.mul(&z)?;
    let first_past = first_id_past(&kept_w, &target, vocab, dev)?;
    // Rounding can leave the target at or past the id-order total: then the last kept id.
    let ids = search.ids_u32()?;
    let last_kept = keep
        .where_cond(&ids, &ids.zeros_like()?)?
        .max_keepdim(1)?
        .to_dtype(DType::F32)?;
    let picked: Vec<u32> = first_past
        .minimum(&last_kept)?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| v as u32)
        .collect();
    if let Some(r) = picked.iter().position(|&id| id as usize >= vocab) {
        return Err(Error::Internal(format!(
            "sampling: no token could be selected in logits row {r}"
        )));
    }
    Ok(picked)
}

/// The shared pieces of the threshold searches over one batch.
struct Search<'a> {
    y: &'a Tensor,
    lo: Tensor,
    hi: Tensor,
    rows: usize,
    vocab: usize,
    dev: &'a Device,
    below_all: Tensor,
    above_all: Tensor,
}

impl<'a> Search<'a> {
    fn new(
        y: &'a Tensor,
        ymax: &Tensor,
        rows: usize,
        vocab: usize,
        dev: &'a Device,
    ) -> Result<Self> {
        // Strictly below every token with a positive weight, even when max y is so large
        // that subtracting 110 alone would round back to it.
        let lo = strictly_below(&ymax.affine(1.0, -110.0)?)?;
        Ok(Search {
            y,
            lo,
            hi: ymax.clone(),
            rows,
            vocab,
            dev,
            below_all: Tensor::full(BELOW_ALL, (rows, vocab), dev)?,
            above_all: Tensor::full(f32::MAX, (rows, vocab), dev)?,
        })
    }

    fn ids_u32(&self) -> Result<Tensor> {
        Ok(Tensor::arange(0u32, self.vocab as u32, self.dev)?
            .reshape((1, self.vocab))?
            .broadcast_as((self.rows, self.vocab))?)
    }

    /// Per row, the smallest `y` among `active` tokens with
    /// `Σ weight[y_j > y] < target`. `weight` must be zero outside `active`; `floor`,
    /// when given, is at or below every active value.
    fn min_value(
        &self,
        active: &Tensor,
        weight: &Tensor,
        target: &Tensor,
        floor: Option<&Tensor>,
    ) -> Result<Tensor> {
        let zero = Tensor::zeros((1, 1), weight.dtype(), self.dev)?
            .broadcast_as((self.rows, self.vocab))?;
        let holds = |v: &Tensor| -> Result<Tensor> {
            let mass = self
                .y
                .broadcast_gt(v)?
                .where_cond(weight, &zero)?
                .sum_keepdim(1)?;
            Ok(mass.lt(target)?)
        };
        // Invariant: the answer lies in (lo, hi].
        let mut lo = match floor {
            Some(f) => strictly_below(f)?,
            None => self.lo.clone(),
        };
        let mut hi = self.hi.clone();
        for _ in 0..BISECT_STEPS {
            let mid = ((&lo + &hi)? * 0.5)?;
            let ok = holds(&mid)?;
            hi = ok.where_cond(&mid, &hi)?;
            lo = ok.where_cond(&lo, &mid)?;
        }
        let y_active = active.where_cond(self.y, &self.below_all)?;
        // Snap: the next active value above lo is the answer iff the predicate holds there;
        // otherwise it becomes the new lo. Each round moves every unresolved row up by one
        // distinct value, so the loop ends after at most `vocab` rounds.
        for _ in 0..=self.vocab {
            let next = y_active
                .broadcast_gt(&lo)?
                .where_cond(&y_active, &self.above_all)?
                .min_keepdim(1)?;
            // A row with no active value left above lo is finished too (it cannot happen for
            // finite logits; it keeps a degenerate row from walking the whole vocabulary).
            let ok = holds(&next)?.maximum(&next.ge(f32::MAX)?)?;
            if ok.flatten_all()?.to_vec1::<u8>()?.iter().all(|&b| b != 0) {
                return Ok(next);
            }
            lo = ok.where_cond(&lo, &next)?;
        }
        Err(Error::Internal(
            "sampling: threshold search did not converge".into(),
        ))
    }
}

/// A value strictly below `t` (elementwise), even where `t` is too large for a small step to
/// register. Only used as an exclusive lower end of a search bracket.
fn strictly_below(t: &Tensor) -> Result<Tensor> {
    Ok(t.sub(&t.abs()?.affine(1e-6, 1e-30)?)?)
}

/// For each row, the smallest id `t` with `Σ weight[id <= t] > target`, by bisection on the
/// id; `vocab - 1` where no prefix exceeds it. Ids are compared as f32 (exact below 2^24).
fn first_id_past(weight: &Tensor, target: &Tensor, vocab: usize, dev: &Device) -> Result<Tensor> {
    let rows = target.dim(0)?;
    let zero = weight.zeros_like()?;
    let ids = Tensor::arange(0u32, vocab as u32, dev)?
        .to_dtype(DType::F32)?
        .reshape((1, vocab))?;
    // Invariant: the answer lies in (lo, hi].
    let mut lo = Tensor::full(-1f32, (rows, 1), dev)?;
    let mut hi = Tensor::full(vocab as f32 - 1.0, (rows, 1), dev)?;
    let steps = usize::BITS - vocab.leading_zeros() + 1;
    for _ in 0..steps {
        let mid = ((&lo + &hi)? * 0.5)?.floor()?;
        let mass = ids
            .broadcast_le(&mid)?
            .where_cond(weight, &zero)?
            .sum_keepdim(1)?;
        let ok = mass.gt(target)?;
        hi = ok.where_cond(&mid, &hi)?;
        lo = ok.where_cond(&lo, &mid)?;
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::host::select_host;

    fn spec(top_k: usize, top_p: f32, min_p: f32, u: f64) -> RowSpec {
        RowSpec {
            temperature: 1.0,
            top_k,
            top_p,
            min_p,
            u,
        }
    }

    #[test]
    fn draws_walk_ids_in_order() {
        // Four equal logits: u in [0.25 r, 0.25 (r + 1)) picks id r.
        let x = Tensor::new(&[[1.0f32, 1.0, 1.0, 1.0]], &Device::Cpu).unwrap();
        for (u, id) in [(0.0, 0), (0.3, 1), (0.6, 2), (0.99, 3)] {
            assert_eq!(
                select_device(&x, &[spec(0, 1.0, 0.0, u)]).unwrap(),
                vec![id]
            );
            assert_eq!(select_host(&x, &[spec(0, 1.0, 0.0, u)]).unwrap(), vec![id]);
        }
    }

    #[test]
    fn truncation_matches_host_on_small_rows() {
        let x = Tensor::new(
            &[[0.5f32, 2.0, 2.0, 1.0, -1.0, 2.0, 0.0, 1.0]],
            &Device::Cpu,
        )
        .unwrap();
        for top_k in [0, 1, 2, 4, 5] {
            for top_p in [1.0f32, 0.9, 0.5, 0.1] {
                for min_p in [0.0f32, 0.3] {
                    for i in 0..50 {
                        let s = spec(top_k, top_p, min_p, i as f64 / 50.0);
                        assert_eq!(
                            select_device(&x, &[s]).unwrap(),
                            select_host(&x, &[s]).unwrap(),
                            "{s:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn nan_and_infinite_logits_behave_like_the_host() {
        let x = Tensor::new(
            &[
                [f32::NAN, 1.0, f32::NAN, 1.0],
                [f32::NAN, f32::NAN, f32::NAN, f32::NAN],
                [f32::NEG_INFINITY, 2.0, f32::INFINITY, f32::INFINITY],
            ],
            &Device::Cpu,
        )
        .unwrap();
        for u in [0.0, 0.3, 0.6, 0.9] {
            let specs = [spec(0, 1.0, 0.0, u); 3];
            assert_eq!(
                select_device(&x, &specs).unwrap(),
                select_host(&x, &specs).unwrap(),
                "u {u}"
            );
        }
    }

    #[test]
    fn first_id_past_by_bisection() {
        let w = Tensor::new(
            &[
                [0f64, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
                [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let first = |t: [f64; 2]| {
            let t = Tensor::new(&[[t[0]], [t[1]]], &Device::Cpu).unwrap();
            first_id_past(&w, &t, 7, &Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(first([2.5, 1.5]), vec![4.0, 6.0]);
        assert_eq!(first([0.0, 0.0]), vec![1.0, 0.0]);
        assert_eq!(first([2.0, 1.0]), vec![4.0, 6.0]);
        // Nothing exceeds the target: the last id.
        assert_eq!(first([9.0, 2.0]), vec![6.0, 6.0]);
    }
}
