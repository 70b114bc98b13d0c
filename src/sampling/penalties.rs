//! Logit bias and the repetition / frequency / presence penalties, applied on the logits tensor
//! where it lives.
//!
//! Only a few hundred logits per row change, so the rewrite is sparse: gather the affected
//! logits into a `[B, M]` tensor, compute their new values with elementwise ops, scatter them
//! back. Nothing vocab-sized crosses to the host, and the same code runs on CPU and CUDA.
//!
//! The arithmetic follows vLLM step for step, in f32:
//! `a = x + bias; a = a > 0 ? a / rep : a * rep; a = a - freq * count; a = a - presence`
//! where `rep` applies to tokens seen in the prompt or the output and `freq`/`presence` to
//! tokens of the output only.

use candle_core::{DType, Tensor};

use super::sequence_sampler::{Adjustment, SequenceSampler};
use crate::error::{Error, Result};

/// The logits every later step (greedy argmax, truncation, sampling) works on: `logits`
/// (`[B, vocab]`, f32) with each row rewritten by its sequence's bias and penalties. Returns
/// the input unchanged (no copy) when no row modifies anything.
pub fn process_logits(logits: &Tensor, seqs: &[&SequenceSampler]) -> Result<Tensor> {
    let rows: Vec<Vec<Adjustment>> = seqs.iter().map(|s| s.adjustments()).collect();
    apply_adjustments(logits, &rows)
}

pub(crate) fn apply_adjustments(logits: &Tensor, rows: &[Vec<Adjustment>]) -> Result<Tensor> {
    let (b, vocab) = logits.dims2()?;
    if rows.len() != b {
        return Err(Error::Internal(format!(
            "penalties: {} sequences for {b} logits rows",
            rows.len()
        )));
    }
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    if width == 0 {
        return Ok(logits.clone());
    }
    let n = b * width;
    let (mut ids, mut bias, mut rep, mut freq, mut pres) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for row in rows {
        // Padding repeats an entry of the row itself (or rewrites logit 0 to its own value),
        // so duplicate scatter targets always receive identical values.
        let pad = row.first().copied().unwrap_or(Adjustment::identity(0));
        for a in row
            .iter()
            .chain(std::iter::repeat_n(&pad, width - row.len()))
        {
            if a.id as usize >= vocab {
                return Err(Error::Internal(format!(
                    "penalties: token id {} outside a vocabulary of {vocab}",
                    a.id
                )));
            }
            ids.push(a.id);
            bias.push(a.bias);
            rep.push(a.repetition);
            freq.push(a.frequency);
            pres.push(a.presence);
        }
    }
    let dev = logits.device();
    let shape = (b, width);
    let ids = Tensor::from_vec(ids, shape, dev)?;
    let bias = Tensor::from_vec(bias, shape, dev)?;
    let rep = Tensor::from_vec(rep, shape, dev)?;
    let freq = Tensor::from_vec(freq, shape, dev)?;
    let pres = Tensor::from_vec(pres, shape, dev)?;

    let logits = logits.to_dtype(DType::F32)?.contiguous()?;
    let x = logits.gather(&ids, 1)?.add(&bias)?;
    let x = x.gt(0.0)?.where_cond(&x.div(&rep)?, &x.mul(&rep)?)?;
    let x = x.sub(&freq)?.sub(&pres)?;
    Ok(logits.scatter(&ids, &x, 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::SamplingParams;
    use candle_core::Device;

    #[test]
    fn rewrites_only_affected_logits_exactly() {
        let logits = Tensor::new(&[[2.0f32, -2.0, 1.0, 0.5, 3.0]], &Device::Cpu).unwrap();
        let params = SamplingParams {
            repetition_penalty: 2.0,
            frequency_penalty: 0.5,
            presence_penalty: 0.25,
            logit_bias: vec![(3, 1.0)],
            ..Default::default()
        };
        let mut s = SequenceSampler::new(params, &[0]);
        s.record(1);
        s.record(1);
        let out = process_logits(&logits, &[&s])
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // 0: prompt → 2/2; 1: output x2 → -2*2 - 0.5*2 - 0.25; 3: bias only; others untouched.
        assert_eq!(out[0], vec![1.0, -5.25, 1.0, 1.5, 3.0]);
    }

    #[test]
    fn rows_are_independent_and_padded_rows_unchanged() {
        let logits = Tensor::new(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu).unwrap();
        let biased = SequenceSampler::new(
            SamplingParams {
                logit_bias: vec![(1, -10.0), (2, 10.0)],
                ..Default::default()
            },
            &[],
        );
        let plain = SequenceSampler::new(SamplingParams::default(), &[]);
        let out = process_logits(&logits, &[&plain, &biased])
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(out, vec![vec![1.0, 2.0, 3.0], vec![4.0, -5.0, 16.0]]);
    }

    #[test]
    fn out_of_range_ids_are_an_error() {
        let logits = Tensor::new(&[[1.0f32, 2.0]], &Device::Cpu).unwrap();
        let rows = vec![vec![Adjustment::identity(5)]];
        assert!(apply_adjustments(&logits, &rows).is_err());
    }
}
