//! Selection for logits that live on an accelerator: each row is narrowed to its top `K`
//! candidates on the device, one small `[rows, 2K]` copy brings them over, and the host draws
//! from that short list with the host's own code ([`super::host`]), so the result is the token
//! the host path would pick from the whole row.
//!
//! Top-K without a vocab-wide sort: candle's CUDA `arg_sort` sorts a row inside one thread block
//! with the row in shared memory, so rows are cut into pieces of at most [`MAX_SORT`] columns;
//! each piece is sorted and keeps its best `K`, and the survivors are sorted again until one
//! piece per row remains (two rounds at Qwen3's vocabulary). No `cumsum`, no vocab-wide sort.
//!
//! A list is enough when no token outside it can survive truncation: when the list's smallest
//! logit already fails top-k, min-p, or the weight test (more than ~104 below the maximum).
//! That holds for every row with top-k below `K` and for the peaked rows of a real model; any
//! other row (top-p alone over a flat distribution, plain sampling, NaN or infinite logits) is
//! copied whole and selected on the host. Rows never depend on each other, so neither does the
//! choice, and seeded sampling stays batch-invariant.

use std::cell::Cell;

use candle_core::{DType, Device, Tensor};

use super::host::{Bounds, select_host, select_small, uses_buckets};
use super::selection::{Candidate, RowSpec};
use crate::error::{Error, Result};

/// Widest row piece sorted in one go: candle's sort kernel takes `4 · next_pow2(columns)` bytes
/// of shared memory, and launches without opting in to more than the default 48 KiB.
pub const MAX_SORT: usize = 8192;
/// Candidates per row when no row has top-k (min-p and the peaked rows of top-p need few).
const DEFAULT_CANDIDATES: usize = 64;
const MIN_CANDIDATES: usize = 32;
const MAX_CANDIDATES: usize = 1024;

/// What one call did on the device: ops issued there (each a kernel launch on a GPU), copies
/// from the device, and rows that needed their whole logits on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceWork {
    pub launches: usize,
    pub copies: usize,
    pub host_rows: usize,
}

/// Samples one token per row of `processed` (`[R, vocab]`, bias and penalties applied) with
/// `specs[r]`. Same contract and same tokens as [`super::host::select_host`].
pub fn select_device(processed: &Tensor, specs: &[RowSpec]) -> Result<Vec<u32>> {
    Ok(select_device_counted(processed, specs)?.0)
}

/// [`select_device`], also saying what it cost.
pub fn select_device_counted(
    processed: &Tensor,
    specs: &[RowSpec],
) -> Result<(Vec<u32>, DeviceWork)> {
    let (rows, vocab) = processed.dims2()?;
    if specs.len() != rows {
        return Err(Error::Internal(format!(
            "sampling: {} row specs for {rows} logits rows",
            specs.len()
        )));
    }
    let ops = Ops::default();
    if rows == 0 {
        return Ok((Vec::new(), ops.work()));
    }
    let k = candidates_for(specs, vocab);
    let (values, ids) = top_candidates(processed, k, &ops)?;
    let mut picked = vec![None; rows];
    let mut host_rows = Vec::new();
    for (r, spec) in specs.iter().enumerate() {
        let row = r * k..(r + 1) * k;
        match select_from_list(&values[row.clone()], &ids[row], spec, vocab) {
            Some(id) => picked[r] = Some(id),
            None => host_rows.push(r),
        }
    }
    if !host_rows.is_empty() {
        let index = Tensor::from_vec(
            host_rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            host_rows.len(),
            processed.device(),
        )?;
        let whole = ops.run(processed.index_select(&index, 0))?;
        ops.copied();
        let specs: Vec<RowSpec> = host_rows.iter().map(|&r| specs[r]).collect();
        let ids = select_host(&whole.to_device(&Device::Cpu)?, &specs)?;
        for (&r, id) in host_rows.iter().zip(ids) {
            picked[r] = Some(id);
        }
    }
    let mut work = ops.work();
    work.host_rows = host_rows.len();
    let picked = picked
        .into_iter()
        .enumerate()
        .map(|(r, id)| match id {
            Some(id) if (id as usize) < vocab => Ok(id),
            _ => Err(Error::Internal(format!(
                "sampling: no token could be selected in logits row {r}"
            ))),
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok((picked, work))
}

/// `K`: one more than the largest active top-k (so ties at the k-th value are seen), at least
/// [`MIN_CANDIDATES`], a power of two, at most [`MAX_CANDIDATES`] and the vocabulary.
fn candidates_for(specs: &[RowSpec], vocab: usize) -> usize {
    let want = specs
        .iter()
        .filter(|s| s.top_k_active(vocab))
        .map(|s| s.top_k + 1)
        .max()
        .unwrap_or(DEFAULT_CANDIDATES);
    want.next_power_of_two()
        .clamp(MIN_CANDIDATES, MAX_CANDIDATES)
        .min(vocab)
}

/// Counts the device ops of one call.
#[derive(Default)]
struct Ops {
    launches: Cell<usize>,
    copies: Cell<usize>,
}

impl Ops {
    fn run(&self, t: candle_core::Result<Tensor>) -> Result<Tensor> {
        self.launches.set(self.launches.get() + 1);
        Ok(t?)
    }

    /// Concatenation along columns: one copy kernel per part.
    fn cat(&self, parts: &[&Tensor]) -> Result<Tensor> {
        self.launches.set(self.launches.get() + parts.len());
        Ok(Tensor::cat(parts, 1)?)
    }

    fn copied(&self) {
        self.copies.set(self.copies.get() + 1);
    }

    fn work(&self) -> DeviceWork {
        DeviceWork {
            launches: self.launches.get(),
            copies: self.copies.get(),
            host_rows: 0,
        }
    }
}

/// The `k` largest logits of each row, in descending order, and their token ids (`[rows · k]`
/// each, row-major). NaN logits are ranked as `+inf`, so a row holding one shows it at the top.
fn top_candidates(processed: &Tensor, k: usize, ops: &Ops) -> Result<(Vec<f32>, Vec<u32>)> {
    let (rows, vocab) = processed.dims2()?;
    let dev = processed.device();
    let x = if processed.dtype() == DType::F32 {
        processed.contiguous()?
    } else {
        ops.run(processed.to_dtype(DType::F32))?
    };
    let nan = ops.run(x.ne(&x))?;
    let inf = Tensor::full(f32::INFINITY, (1, 1), dev)?.broadcast_as((rows, vocab))?;
    let mut keys = ops.run(nan.where_cond(&inf, &x))?;
    drop(nan);
    // `ids`: the token id of every column of `keys`; `None` while that is the column index.
    let mut ids: Option<Tensor> = None;
    let mut width = vocab;
    loop {
        let (pieces, piece) = split(width, k);
        let padding = pieces * piece - width;
        if padding > 0 {
            let pad = ops.run(Tensor::full(f32::NEG_INFINITY, (rows, padding), dev))?;
            keys = ops.cat(&[&keys, &pad])?;
            if let Some(t) = &ids {
                let pad = ops.run(Tensor::zeros((rows, padding), DType::U32, dev))?;
                ids = Some(ops.cat(&[t, &pad])?);
            }
        }
        let by_piece = keys.reshape((rows * pieces, piece))?;
        let order = ops.run(by_piece.arg_sort_last_dim(false))?;
        let best = ops.run(order.narrow(1, 0, k)?.contiguous())?;
        drop(order);
        let best_keys = ops.run(by_piece.gather(&best, 1))?;
        // Column of each survivor in this round's input, then its token id.
        let column = if pieces == 1 {
            best
        } else {
            let base = Tensor::arange_step(0u32, (pieces * piece) as u32, piece as u32, dev)?
                .reshape((1, pieces, 1))?;
            ops.run(best.reshape((rows, pieces, k))?.broadcast_add(&base))?
        }
        .reshape((rows, pieces * k))?;
        ids = Some(match &ids {
            None => column,
            Some(t) => ops.run(t.gather(&column, 1))?,
        });
        keys = best_keys.reshape((rows, pieces * k))?;
        width = pieces * k;
        if pieces == 1 {
            break;
        }
    }
    let ids = ids.expect("at least one round");
    // One copy: ids travel as f32 beside the values (exact below 2^24).
    let ids_f32 = ops.run(ids.to_dtype(DType::F32))?;
    let packed = ops.cat(&[&keys, &ids_f32])?;
    ops.copied();
    let packed = packed.to_vec2::<f32>()?;
    let mut values = Vec::with_capacity(rows * k);
    let mut out_ids = Vec::with_capacity(rows * k);
    for row in packed {
        values.extend_from_slice(&row[..k]);
        out_ids.extend(row[k..].iter().map(|&v| v as u32));
    }
    Ok((values, out_ids))
}

/// How a row of `width` columns is cut for one sorting round: `(pieces, piece width)`, the
/// piece no wider than [`MAX_SORT`] and not narrower than `k`. A divisor of `width` when one
/// is close to the widest (no padding: Qwen3's 151,936 = 32 × 4,748), else padded pieces.
fn split(width: usize, k: usize) -> (usize, usize) {
    if width <= MAX_SORT {
        return (1, width);
    }
    let divisor = (MAX_SORT / 2..=MAX_SORT)
        .rev()
        .find(|d| width.is_multiple_of(*d) && *d >= k);
    match divisor {
        Some(d) => (width / d, d),
        None => (width.div_ceil(MAX_SORT), MAX_SORT),
    }
}

/// The token the host would pick for this row, from its top list (`values` descending, `ids`
/// beside them); `None` when the list cannot be shown to hold every survivor.
fn select_from_list(values: &[f32], ids: &[u32], spec: &RowSpec, vocab: usize) -> Option<u32> {
    let (&xmax, &last) = (values.first()?, values.last()?);
    if !xmax.is_finite() {
        // NaN (ranked +inf), an infinite logit, or a row of -inf: the host's rules apply.
        return None;
    }
    let kth = if spec.top_k_active(vocab) {
        // The k-th value must be above the list's last, or its ties may lie outside the list.
        *values
            .get(spec.top_k - 1)
            .filter(|_| spec.top_k < values.len())?
    } else {
        f32::NEG_INFINITY
    };
    let bounds = Bounds::new(spec, xmax, kth);
    if values.len() < vocab && !bounds.excludes_at_or_below(last) {
        return None;
    }
    let mut cands: Vec<Candidate> = values
        .iter()
        .zip(ids)
        .filter_map(|(&v, &id)| bounds.candidate(v, id))
        .collect();
    cands.sort_unstable_by_key(|c| c.id);
    if uses_buckets(spec, vocab) {
        bounds.select_bucketed_list(&cands, spec)
    } else {
        select_small(&cands, spec)
    }
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

    #[test]
    fn pieces_divide_the_vocabulary_when_they_can() {
        assert_eq!(split(151_936, 32), (32, 4_748));
        assert_eq!(split(8_192, 32), (1, 8_192));
        assert_eq!(split(1_024, 32), (1, 1_024));
        // A prime width is padded into MAX_SORT pieces.
        assert_eq!(split(10_007, 32), (2, MAX_SORT));
        assert_eq!(candidates_for(&[spec(20, 0.95, 0.0, 0.0)], 151_936), 32);
        assert_eq!(candidates_for(&[spec(0, 0.9, 0.0, 0.0)], 151_936), 64);
        assert_eq!(candidates_for(&[spec(100, 1.0, 0.0, 0.0)], 151_936), 128);
        assert_eq!(candidates_for(&[spec(5000, 1.0, 0.0, 0.0)], 151_936), 1024);
        assert_eq!(candidates_for(&[spec(3, 1.0, 0.0, 0.0)], 8), 8);
    }

    #[test]
    fn top_candidates_are_the_largest_with_their_ids() {
        // Three rounds at a small scale: 20,000 columns, k = 64 → pieces of 5,000.
        let vocab = 20_000;
        let row: Vec<f32> = (0..vocab)
            .map(|i| ((i * 7_919) % vocab) as f32 / 10.0)
            .collect();
        let x = Tensor::from_vec([row.clone(), row].concat(), (2, vocab), &Device::Cpu).unwrap();
        let ops = Ops::default();
        let (values, ids) = top_candidates(&x, 64, &ops).unwrap();
        for r in 0..2 {
            for j in 0..64 {
                let v = values[r * 64 + j];
                assert_eq!(v, (vocab - 1 - j) as f32 / 10.0);
                assert_eq!((ids[r * 64 + j] as usize * 7_919) % vocab, vocab - 1 - j);
            }
        }
        assert_eq!(ops.copies.get(), 1);
    }

    #[test]
    fn qwen3_defaults_take_a_few_launches_and_one_copy() {
        let vocab = 151_936;
        // Distinct values: no tie at the k-th value reaches past the list.
        let row: Vec<f32> = (0..vocab)
            .map(|i| ((i * 7_919) % vocab) as f32 / 5_000.0)
            .collect();
        let x = Tensor::from_vec(row, (1, vocab), &Device::Cpu).unwrap();
        let s = RowSpec {
            temperature: 0.6,
            ..spec(20, 0.95, 0.0, 0.4)
        };
        let (ids, work) = select_device_counted(&x, &[s]).unwrap();
        assert_eq!(ids, select_host(&x, &[s]).unwrap());
        assert_eq!(work.copies, 1);
        assert_eq!(work.host_rows, 0);
        assert!(work.launches <= 16, "{work:?}");
    }

    #[test]
    fn rows_the_list_cannot_settle_go_to_the_host() {
        // Flat row, top_p only: the nucleus is far wider than the list.
        let x = Tensor::new(&[[0.0f32; 300]], &Device::Cpu).unwrap();
        let (ids, work) = select_device_counted(&x, &[spec(0, 0.9, 0.0, 0.5)]).unwrap();
        assert_eq!(ids, select_host(&x, &[spec(0, 0.9, 0.0, 0.5)]).unwrap());
        assert_eq!(work.host_rows, 1);
        assert_eq!(work.copies, 2);
        // A tie at the k-th value running past the list: host too.
        let mut row = vec![0.0f32; 300];
        row[7] = 5.0;
        let x = Tensor::from_vec(row, (1, 300), &Device::Cpu).unwrap();
        let s = spec(2, 1.0, 0.0, 0.5);
        let (ids, work) = select_device_counted(&x, &[s]).unwrap();
        assert_eq!(ids, select_host(&x, &[s]).unwrap());
        assert_eq!(work.host_rows, 1);
        // A peaked row without truncation: the list settles it.
        let mut row = vec![-200.0f32; 300];
        row[3] = 1.0;
        row[250] = 1.5;
        let x = Tensor::from_vec(row, (1, 300), &Device::Cpu).unwrap();
        for u in [0.1, 0.5, 0.9] {
            let s = spec(0, 1.0, 0.0, u);
            let (ids, work) = select_device_counted(&x, &[s]).unwrap();
            assert_eq!(ids, select_host(&x, &[s]).unwrap());
            assert_eq!(work.host_rows, 0);
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
}
