//! Logprobs for the OpenAI `logprobs` / `top_logprobs` fields.
//!
//! Values are vLLM's default (`logprobs_mode = "raw_logprobs"`): the log-softmax of the model's
//! *unprocessed* logits, before bias, penalties, temperature and truncation. A client comparing
//! against vLLM sees the same numbers, and a token's logprob does not depend on the sampling
//! settings that picked it. Alternatives come sorted by descending logprob, ties by ascending
//! id; the sampled token is reported separately and may or may not be among them.

use candle_core::{DType, Tensor};

use crate::error::Result;

/// One row's request: its index in the batch, the token that was chosen, how many
/// alternatives to return.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogprobRequest {
    pub row: usize,
    pub token: u32,
    pub top_n: usize,
}

/// The answer for one [`LogprobRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct RowLogprobs {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// Host version: copies the requested rows only.
pub fn logprobs_host(raw: &Tensor, requests: &[LogprobRequest]) -> Result<Vec<RowLogprobs>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let rows = select_rows(raw, requests)?.to_vec2::<f32>()?;
    Ok(rows
        .iter()
        .zip(requests)
        .map(|(x, req)| {
            let (max, lse) = log_normalizer(x);
            let value = |id: u32| (x[id as usize] - max) - lse;
            RowLogprobs {
                logprob: value(req.token),
                top: top_n(x, req.top_n)
                    .into_iter()
                    .map(|id| (id, value(id)))
                    .collect(),
            }
        })
        .collect())
}

/// `(max, ln Σ exp(x - max))` of a row, the sum in f64.
fn log_normalizer(x: &[f32]) -> (f32, f32) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = x.iter().map(|&v| ((v - max).exp()) as f64).sum();
    (max, sum.ln() as f32)
}

/// The `n` largest entries of `x` by value, ties by id, in that order.
fn top_n(x: &[f32], n: usize) -> Vec<u32> {
    let mut best: Vec<u32> = Vec::with_capacity(n + 1);
    let before = |a: u32, b: u32| {
        let (va, vb) = (x[a as usize], x[b as usize]);
        va > vb || (va == vb && a < b)
    };
    if n == 0 {
        return best;
    }
    for id in 0..x.len() as u32 {
        if best.len() == n && !before(id, best[n - 1]) {
            continue;
        }
        let at = best.partition_point(|&b| before(b, id));
        best.insert(at, id);
        best.truncate(n);
    }
    best
}

/// Device version: log-softmax and the top-n by repeated row maxima; only the requested numbers
/// leave the device.
pub fn logprobs_device(raw: &Tensor, requests: &[LogprobRequest]) -> Result<Vec<RowLogprobs>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let x = select_rows(raw, requests)?;
    let (rows, vocab) = x.dims2()?;
    let dev = x.device();
    let diff = x.broadcast_sub(&x.max_keepdim(1)?)?;
    let lse = diff.exp()?.sum_keepdim(1)?.log()?;
    let tokens = Tensor::from_vec(
        requests.iter().map(|r| r.token).collect::<Vec<u32>>(),
        (rows, 1),
        dev,
    )?;
    let sampled = diff
        .gather(&tokens, 1)?
        .broadcast_sub(&lse)?
        .flatten_all()?
        .to_vec1::<f32>()?;

    let n = requests
        .iter()
        .map(|r| r.top_n)
        .max()
        .unwrap_or(0)
        .min(vocab);
    let mut top_ids: Vec<Vec<u32>> = vec![Vec::new(); rows];
    let mut top_vals: Vec<Vec<f32>> = vec![Vec::new(); rows];
    if n > 0 {
        let ids = Tensor::arange(0u32, vocab as u32, dev)?
            .reshape((1, vocab))?
            .broadcast_as((rows, vocab))?;
        let none = Tensor::full(vocab as u32, (rows, vocab), dev)?;
        let gone = Tensor::full(f32::NEG_INFINITY, (rows, vocab), dev)?;
        let (mut cur, mut id_cols, mut val_cols) = (diff.clone(), Vec::new(), Vec::new());
        for _ in 0..n {
            let best = cur.max_keepdim(1)?;
            let id = cur
                .broadcast_eq(&best)?
                .where_cond(&ids, &none)?
                .min_keepdim(1)?;
            cur = ids.broadcast_eq(&id)?.where_cond(&gone, &cur)?;
            id_cols.push(id);
            val_cols.push(best);
        }
        let id_mat = Tensor::cat(&id_cols, 1)?.to_vec2::<u32>()?;
        let val_mat = Tensor::cat(&val_cols, 1)?
            .broadcast_sub(&lse)?
            .to_vec2::<f32>()?;
        for (r, req) in requests.iter().enumerate() {
            let take = req.top_n.min(n);
            top_ids[r] = id_mat[r][..take].to_vec();
            top_vals[r] = val_mat[r][..take].to_vec();
        }
    }
    Ok(sampled
        .into_iter()
        .zip(top_ids.into_iter().zip(top_vals))
        .map(|(logprob, (ids, vals))| RowLogprobs {
            logprob,
            top: ids.into_iter().zip(vals).collect(),
        })
        .collect())
}

fn select_rows(raw: &Tensor, requests: &[LogprobRequest]) -> Result<Tensor> {
    let raw = raw.to_dtype(DType::F32)?;
    let b = raw.dims2()?.0;
    if requests.len() == b && requests.iter().enumerate().all(|(i, r)| r.row == i) {
        return Ok(raw);
    }
    let idx = Tensor::from_vec(
        requests.iter().map(|r| r.row as u32).collect::<Vec<u32>>(),
        requests.len(),
        raw.device(),
    )?;
    Ok(raw.index_select(&idx, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn log_softmax(x: &[f32]) -> Vec<f64> {
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let s: f64 = x.iter().map(|&v| (v as f64 - m).exp()).sum();
        x.iter().map(|&v| v as f64 - m - s.ln()).collect()
    }

    #[test]
    fn host_and_device_agree_with_log_softmax() {
        let rows = [[0.5f32, 2.0, 2.0, -1.0, 3.0], [1.0, 1.0, 1.0, 1.0, 1.0]];
        let t = Tensor::new(&rows, &Device::Cpu).unwrap();
        let reqs = [
            LogprobRequest {
                row: 1,
                token: 3,
                top_n: 2,
            },
            LogprobRequest {
                row: 0,
                token: 2,
                top_n: 3,
            },
        ];
        for out in [
            logprobs_host(&t, &reqs).unwrap(),
            logprobs_device(&t, &reqs).unwrap(),
        ] {
            let l1 = log_softmax(&rows[1]);
            let l0 = log_softmax(&rows[0]);
            assert!((out[0].logprob as f64 - l1[3]).abs() < 1e-6);
            assert_eq!(
                out[0].top.iter().map(|t| t.0).collect::<Vec<_>>(),
                vec![0, 1]
            );
            assert!((out[1].logprob as f64 - l0[2]).abs() < 1e-6);
            assert_eq!(
                out[1].top.iter().map(|t| t.0).collect::<Vec<_>>(),
                vec![4, 1, 2]
            );
            for &(id, v) in &out[1].top {
                assert!((v as f64 - l0[id as usize]).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn log_normalizer_matches_definition() {
        let (max, lse) = log_normalizer(&[1.0, 2.0, 3.0]);
        let expect = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 3.0;
        assert_eq!(max, 3.0);
        assert!((lse as f64 - expect).abs() < 1e-6);
    }

    #[test]
    fn top_n_orders_by_value_then_id() {
        assert_eq!(top_n(&[1.0, 3.0, 3.0, 2.0, 3.0], 4), vec![1, 2, 4, 3]);
        assert_eq!(top_n(&[1.0, 3.0], 0), Vec::<u32>::new());
        assert_eq!(top_n(&[1.0, 3.0], 5), vec![1, 0]);
    }
}
