//! Per-sequence sampling state: the parameters, the sequence's own random generator and the
//! token history the penalties need.
//!
//! Keeping the generator per sequence (rather than one per batch) is what makes seeded requests
//! reproducible whatever else the scheduler batches them with: a row only ever consumes its own
//! random numbers, exactly one uniform per sampled token.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::allowed::TokenMask;
use super::params::SamplingParams;

/// The sampler's view of one running sequence.
#[derive(Debug, Clone)]
pub struct SequenceSampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Distinct prompt tokens, sorted; only kept when the repetition penalty needs them.
    prompt_tokens: Vec<u32>,
    /// How often each token occurs in the output so far.
    output_counts: HashMap<u32, u32>,
    output_len: usize,
    /// Tokens that may not be picked this step (EOS and stop tokens before `min_tokens`).
    suppressed: Vec<u32>,
    /// The only tokens the next draw may pick (a grammar constraint); cleared by `record`.
    allowed: Option<TokenMask>,
}

/// How one token's logit is rewritten before selection:
/// `((x + bias) penalised by repetition) - frequency - presence`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Adjustment {
    pub id: u32,
    pub bias: f32,
    /// `1.0` when the token is not in the prompt or output, or the penalty is off.
    pub repetition: f32,
    /// `frequency_penalty * count`, already multiplied (as vLLM computes it, in f32).
    pub frequency: f32,
    /// `presence_penalty` if the token occurred in the output, else `0.0`.
    pub presence: f32,
}

impl Adjustment {
    /// An entry that leaves the logit exactly as it is (used to pad rows).
    pub fn identity(id: u32) -> Self {
        Adjustment {
            id,
            bias: 0.0,
            repetition: 1.0,
            frequency: 0.0,
            presence: 0.0,
        }
    }
}

impl SequenceSampler {
    /// State for a new sequence. `prompt_ids` feed the repetition penalty (vLLM penalises
    /// tokens of the prompt and of the output alike).
    pub fn new(params: SamplingParams, prompt_ids: &[u32]) -> Self {
        let rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        let prompt_tokens = if params.repetition_penalty != 1.0 {
            let mut ids = prompt_ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            ids
        } else {
            Vec::new()
        };
        SequenceSampler {
            params,
            rng,
            prompt_tokens,
            output_counts: HashMap::new(),
            output_len: 0,
            suppressed: Vec::new(),
            allowed: None,
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Adds a generated token to the history. [`super::Sampler::sample`] calls this for every
    /// token it returns; call it directly only for tokens that did not come from the sampler
    /// (e.g. a forced continuation).
    pub fn record(&mut self, token: u32) {
        *self.output_counts.entry(token).or_insert(0) += 1;
        self.output_len += 1;
        // A grammar's mask describes one position; the next one needs a fresh mask.
        self.allowed = None;
    }

    /// Occurrences of `token` in the output so far.
    pub fn output_count(&self, token: u32) -> u32 {
        self.output_counts.get(&token).copied().unwrap_or(0)
    }

    /// Number of tokens recorded so far.
    pub fn num_output_tokens(&self) -> usize {
        self.output_len
    }

    /// Sets the tokens banned from the next draw (their logits become `-inf`); the engine
    /// uses it to hold back EOS and stop tokens until `min_tokens` are generated.
    pub fn set_suppressed(&mut self, mut tokens: Vec<u32>) {
        tokens.sort_unstable();
        tokens.dedup();
        self.suppressed = tokens;
    }

    /// Restricts the next draw to `mask` (every other logit becomes `-inf`, greedy rows
    /// included); `None` lifts the restriction. The mask is dropped once a token is recorded.
    ///
    /// A constraint outranks `min_tokens`: when every allowed token is also suppressed (a
    /// grammar that can only end, before `min_tokens`), the suppression is ignored for that
    /// draw, since otherwise no token at all could be picked.
    pub fn set_allowed(&mut self, mask: Option<TokenMask>) {
        self.allowed = mask;
    }

    /// The mask set by [`Self::set_allowed`] for the next draw, if any.
    pub fn allowed(&self) -> Option<&TokenMask> {
        self.allowed.as_ref()
    }

    /// The suppressed tokens that apply to the next draw (see [`Self::set_allowed`]).
    fn effective_suppressed(&self) -> &[u32] {
        match &self.allowed {
            Some(mask) if !self.suppressed.is_empty() => {
                let hidden = self.suppressed.iter().filter(|&&t| mask.allows(t)).count();
                if hidden == mask.count() {
                    &[]
                } else {
                    &self.suppressed
                }
            }
            _ => &self.suppressed,
        }
    }

    /// Where this sequence's random draws stand: a failed batched step restores it before the
    /// sequence is sampled again on its own, so a seeded request's draws do not shift.
    pub fn draws(&self) -> ChaCha8Rng {
        self.rng.clone()
    }

    /// See [`Self::draws`].
    pub fn restore_draws(&mut self, draws: ChaCha8Rng) {
        self.rng = draws;
    }

    /// The one uniform in `[0, 1)` this sequence consumes for a sampled (non-greedy) token.
    pub(crate) fn next_uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// The logits this sequence rewrites this step, sorted by token id. Empty when the
    /// parameters touch no logit.
    pub(crate) fn adjustments(&self) -> Vec<Adjustment> {
        let p = &self.params;
        let suppressed = self.effective_suppressed();
        if !p.modifies_logits() && suppressed.is_empty() {
            return Vec::new();
        }
        let repetition_on = p.repetition_penalty != 1.0;
        let output_on = repetition_on || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
        let mut ids: Vec<u32> = p.logit_bias.iter().map(|&(id, _)| id).collect();
        ids.extend_from_slice(suppressed);
        if repetition_on {
            ids.extend_from_slice(&self.prompt_tokens);
        }
        if output_on {
            ids.extend(self.output_counts.keys().copied());
        }
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|id| {
                let count = self.output_count(id);
                let in_history = count > 0 || self.prompt_tokens.binary_search(&id).is_ok();
                let bias = if suppressed.binary_search(&id).is_ok() {
                    f32::NEG_INFINITY
                } else {
                    p.logit_bias
                        .binary_search_by_key(&id, |&(i, _)| i)
                        .map_or(0.0, |k| p.logit_bias[k].1)
                };
                Adjustment {
                    id,
                    bias,
                    repetition: if repetition_on && in_history {
                        p.repetition_penalty
                    } else {
                        1.0
                    },
                    frequency: p.frequency_penalty * count as f32,
                    presence: if count > 0 { p.presence_penalty } else { 0.0 },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_generators_repeat() {
        let params = SamplingParams {
            seed: Some(7),
            ..Default::default()
        };
        let mut a = SequenceSampler::new(params.clone(), &[]);
        let mut b = SequenceSampler::new(params, &[]);
        for _ in 0..10 {
            let (ua, ub) = (a.next_uniform(), b.next_uniform());
            assert_eq!(ua, ub);
            assert!((0.0..1.0).contains(&ua));
        }
    }

    #[test]
    fn unseeded_generators_differ() {
        let mut a = SequenceSampler::new(SamplingParams::default(), &[]);
        let mut b = SequenceSampler::new(SamplingParams::default(), &[]);
        let xs: Vec<f64> = (0..4).map(|_| a.next_uniform()).collect();
        let ys: Vec<f64> = (0..4).map(|_| b.next_uniform()).collect();
        assert_ne!(xs, ys);
    }

    #[test]
    fn no_adjustments_without_penalties() {
        let mut s = SequenceSampler::new(SamplingParams::default(), &[1, 2, 3]);
        s.record(4);
        assert!(s.adjustments().is_empty());
    }

    #[test]
    fn adjustments_merge_bias_prompt_and_output() {
        let params = SamplingParams {
            repetition_penalty: 1.5,
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            logit_bias: vec![(2, 3.0), (9, -1.0)],
            ..Default::default()
        };
        let mut s = SequenceSampler::new(params, &[5, 2, 5]);
        s.record(7);
        s.record(7);
        s.record(5);
        let adj = s.adjustments();
        let ids: Vec<u32> = adj.iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![2, 5, 7, 9]);
        assert_eq!(
            adj[0],
            Adjustment {
                id: 2,
                bias: 3.0,
                repetition: 1.5,
                frequency: 0.0,
                presence: 0.0
            }
        );
        assert_eq!(
            adj[1],
            Adjustment {
                id: 5,
                bias: 0.0,
                repetition: 1.5,
                frequency: 0.25,
                presence: 0.5
            }
        );
        assert_eq!(
            adj[2],
            Adjustment {
                id: 7,
                bias: 0.0,
                repetition: 1.5,
                frequency: 0.5,
                presence: 0.5
            }
        );
        assert_eq!(
            adj[3],
            Adjustment {
                id: 9,
                bias: -1.0,
                repetition: 1.0,
                frequency: 0.0,
                presence: 0.0
            }
        );
    }

    #[test]
    fn allowed_mask_outranks_suppression_only_when_nothing_else_is_left() {
        let mut s = SequenceSampler::new(SamplingParams::default(), &[]);
        s.set_suppressed(vec![2]);
        s.set_allowed(Some(TokenMask::from_ids(&[2, 5], 8)));
        assert_eq!(
            s.adjustments().len(),
            1,
            "5 is still allowed: 2 stays banned"
        );
        s.set_allowed(Some(TokenMask::from_ids(&[2], 8)));
        assert!(
            s.adjustments().is_empty(),
            "only 2 is allowed: it must stay pickable"
        );
        s.record(2);
        assert!(s.allowed().is_none(), "a recorded token clears the mask");
    }

    #[test]
    fn prompt_tokens_are_ignored_without_repetition_penalty() {
        let params = SamplingParams {
            presence_penalty: 1.0,
            ..Default::default()
        };
        let mut s = SequenceSampler::new(params, &[1, 2]);
        s.record(3);
        let ids: Vec<u32> = s.adjustments().iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![3]);
    }
}
