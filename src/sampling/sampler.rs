//! The batched entry point: one call per engine step turns a `[B, vocab]` logits tensor into
//! one token per sequence.
//!
//! Order of work (vLLM's): allowed-token masks (grammar constraints) → bias and penalties on the logits tensor → greedy rows by argmax on
//! the device → the remaining rows through the selection implementation → logprobs from the
//! raw logits for the rows that asked → every sequence records its token.
//!
//! Rows are independent: a row reads only its own logits, its own parameters and its own
//! generator (one uniform per sampled token, none for greedy rows), so a seeded request yields
//! the same tokens whatever it is batched with.

use candle_core::{DType, Tensor};

use super::allowed::apply_allowed;
use super::device::select_device;
use super::greedy::greedy_ids;
use super::host::select_host;
use super::logprobs::{LogprobRequest, logprobs_device, logprobs_host};
use super::penalties::process_logits;
use super::selection::RowSpec;
use super::sequence_sampler::SequenceSampler;
use crate::error::{Error, Result};

/// What the sampler returns for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledToken {
    pub id: u32,
    /// Raw logprob of `id` (see [`super::logprobs`]); `NaN` when the sequence did not ask for
    /// logprobs, so that the common case costs nothing.
    pub logprob: f32,
    /// The requested alternatives, most likely first; empty when none were requested.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Where truncation and sampling run (`--sampler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// `host` for CPU logits, `device` for the others.
    #[default]
    Auto,
    /// Copy the non-greedy rows to the host and select there.
    Host,
    /// Narrow each row to its top candidates on the device; draw on the host from that list.
    Device,
}

/// The batched sampler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sampler {
    backend: Backend,
}

impl Sampler {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_backend(backend: Backend) -> Self {
        Sampler { backend }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Samples one token for each row of `logits` (`[B, vocab]`, any float dtype) with the
    /// sequence of the same index, and records each token in its sequence's history.
    pub fn sample(
        &self,
        logits: &Tensor,
        seqs: &mut [&mut SequenceSampler],
    ) -> Result<Vec<SampledToken>> {
        let (b, vocab) = logits.dims2()?;
        if seqs.len() != b {
            return Err(Error::Internal(format!(
                "sampler: {} sequences for {b} logits rows",
                seqs.len()
            )));
        }
        if b == 0 {
            return Ok(Vec::new());
        }
        let on_host = match self.backend {
            Backend::Auto => logits.device().is_cpu(),
            Backend::Host => true,
            Backend::Device => false,
        };
        let raw = logits.to_dtype(DType::F32)?.contiguous()?;
        // Grammar masks first, like vLLM: logprobs then describe the constrained distribution.
        let raw = {
            let masks: Vec<_> = seqs.iter().map(|s| s.allowed()).collect();
            apply_allowed(&raw, &masks)?
        };
        let processed = {
            let views: Vec<&SequenceSampler> = seqs.iter().map(|s| &**s).collect();
            process_logits(&raw, &views)?
        };

        let (greedy, random): (Vec<usize>, Vec<usize>) =
            (0..b).partition(|&i| seqs[i].params().is_greedy());
        let mut ids = vec![0u32; b];
        if !greedy.is_empty() {
            let picked = greedy_ids(&rows_of(&processed, &greedy, b)?)?;
            for (&row, id) in greedy.iter().zip(picked) {
                ids[row] = id;
            }
        }
        if !random.is_empty() {
            let specs: Vec<RowSpec> = random
                .iter()
                .map(|&i| {
                    let u = seqs[i].next_uniform();
                    RowSpec::new(seqs[i].params(), u)
                })
                .collect();
            let rows = rows_of(&processed, &random, b)?;
            let picked = if on_host {
                select_host(&rows, &specs)?
            } else {
                select_device(&rows, &specs)?
            };
            for (&row, id) in random.iter().zip(picked) {
                ids[row] = id;
            }
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Internal(format!(
                "sampler: picked token {bad} outside a vocabulary of {vocab}"
            )));
        }
        check_picked_logits(&raw, &ids)?;

        let requests: Vec<LogprobRequest> = (0..b)
            .filter_map(|row| {
                seqs[row].params().logprobs.map(|top_n| LogprobRequest {
                    row,
                    token: ids[row],
                    top_n,
                })
            })
            .collect();
        let answers = if on_host {
            logprobs_host(&raw, &requests)?
        } else {
            logprobs_device(&raw, &requests)?
        };
        let mut out: Vec<SampledToken> = ids
            .iter()
            .map(|&id| SampledToken {
                id,
                logprob: f32::NAN,
                top_logprobs: Vec::new(),
            })
            .collect();
        for (req, ans) in requests.iter().zip(answers) {
            out[req.row].logprob = ans.logprob;
            out[req.row].top_logprobs = ans.top;
        }
        for (seq, &id) in seqs.iter_mut().zip(&ids) {
            seq.record(id);
        }
        Ok(out)
    }
}

/// A picked token whose logit is NaN came from a row the model broke (NaN has no maximum and no
/// probability): an error, so that the engine fails that row's request instead of streaming
/// noise. One value per row is read, not the rows.
fn check_picked_logits(raw: &Tensor, ids: &[u32]) -> Result<()> {
    let index = Tensor::from_vec(ids.to_vec(), (ids.len(), 1), raw.device())?;
    let picked = raw.gather(&index, 1)?.flatten_all()?.to_vec1::<f32>()?;
    match picked.iter().position(|x| x.is_nan()) {
        Some(row) => Err(Error::Internal(format!(
            "sampler: logits row {row} is NaN at the picked token {} (the model produced NaN)",
            ids[row]
        ))),
        None => Ok(()),
    }
}

/// The given rows of `t`, without a copy when they are all of them in order.
fn rows_of(t: &Tensor, rows: &[usize], total: usize) -> Result<Tensor> {
    if rows.len() == total {
        return Ok(t.clone());
    }
    let idx = Tensor::from_vec(
        rows.iter().map(|&r| r as u32).collect::<Vec<u32>>(),
        rows.len(),
        t.device(),
    )?;
    Ok(t.index_select(&idx, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::SamplingParams;
    use candle_core::Device;

    #[test]
    fn a_nan_row_is_an_error_naming_the_row() {
        let logits = Tensor::new(&[[0.0f32, 9.0], [f32::NAN, f32::NAN]], &Device::Cpu).unwrap();
        let mut a = SequenceSampler::new(SamplingParams::greedy(), &[]);
        let mut b = SequenceSampler::new(SamplingParams::greedy(), &[]);
        let err = Sampler::new()
            .sample(&logits, &mut [&mut a, &mut b])
            .unwrap_err();
        assert!(err.to_string().contains("row 1"), "{err}");
    }

    #[test]
    fn greedy_and_random_rows_in_one_batch() {
        let logits = Tensor::new(
            &[[0.0f32, 9.0, 1.0], [5.0, -50.0, -50.0], [1.0, 2.0, 30.0]],
            &Device::Cpu,
        )
        .unwrap();
        let mut a = SequenceSampler::new(SamplingParams::greedy(), &[]);
        let mut b = SequenceSampler::new(
            SamplingParams {
                seed: Some(1),
                ..Default::default()
            },
            &[],
        );
        let mut c = SequenceSampler::new(
            SamplingParams {
                logprobs: Some(1),
                ..SamplingParams::greedy()
            },
            &[],
        );
        for backend in [Backend::Host, Backend::Device] {
            let out = Sampler::with_backend(backend)
                .sample(&logits, &mut [&mut a, &mut b, &mut c])
                .unwrap();
            assert_eq!(out.iter().map(|t| t.id).collect::<Vec<_>>(), vec![1, 0, 2]);
            assert!(out[0].logprob.is_nan());
            assert!(out[2].logprob > -1e-6 && out[2].logprob <= 0.0);
            assert_eq!(out[2].top_logprobs.len(), 1);
            assert_eq!(out[2].top_logprobs[0].0, 2);
        }
        assert_eq!(a.output_count(1), 2);
    }

    #[test]
    fn allowed_masks_bind_greedy_and_random_rows_on_both_backends() {
        use crate::sampling::TokenMask;
        let logits = Tensor::new(
            &[
                [0.0f32, 9.0, 1.0, 2.0],
                [5.0, 4.0, 3.0, 2.0],
                [1.0, 2.0, 30.0, 0.0],
            ],
            &Device::Cpu,
        )
        .unwrap();
        for backend in [Backend::Host, Backend::Device] {
            for seed in 0..20 {
                let mut a = SequenceSampler::new(SamplingParams::greedy(), &[]);
                a.set_allowed(Some(TokenMask::from_ids(&[0, 2], 4)));
                let mut b = SequenceSampler::new(
                    SamplingParams {
                        seed: Some(seed),
                        logprobs: Some(2),
                        ..Default::default()
                    },
                    &[],
                );
                b.set_allowed(Some(TokenMask::from_ids(&[2, 3], 4)));
                let mut c = SequenceSampler::new(SamplingParams::greedy(), &[]);
                let out = Sampler::with_backend(backend)
                    .sample(&logits, &mut [&mut a, &mut b, &mut c])
                    .unwrap();
                assert_eq!(out[0].id, 2, "greedy row obeys its mask");
                assert!([2, 3].contains(&out[1].id), "{backend:?} seed {seed}");
                assert_eq!(out[2].id, 2, "unmasked row untouched");
                // Logprobs describe the constrained distribution.
                let top: Vec<u32> = out[1].top_logprobs.iter().map(|t| t.0).collect();
                assert_eq!(top, vec![2, 3]);
                assert!(a.allowed().is_none() && b.allowed().is_none());
            }
        }
    }

    #[test]
    fn mismatched_batch_is_an_error() {
        let logits = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        let mut a = SequenceSampler::new(SamplingParams::greedy(), &[]);
        assert!(Sampler::new().sample(&logits, &mut [&mut a]).is_err());
    }
}
