//! Per-request sampling parameters: request values layered over the model's defaults, then
//! validated with vLLM's ranges so a client moving from vLLM gets the same 400s for the same
//! mistakes.

use std::collections::HashMap;

use super::generation_config::GenerationDefaults;
use crate::error::{Error, RequestPart, Result};

/// Below this temperature a request is greedy (vLLM's `_SAMPLING_EPS`).
pub const GREEDY_TEMPERATURE: f32 = 1e-5;
/// Sampling temperatures in `(GREEDY_TEMPERATURE, MIN_SAMPLING_TEMPERATURE)` are raised to this
/// value, as vLLM does: dividing logits by a near-zero temperature overflows for no gain, the
/// distribution is already a point mass on the argmax group.
pub const MIN_SAMPLING_TEMPERATURE: f32 = 1e-2;
/// Upper bound of `temperature` (OpenAI's documented range, enforced by current vLLM too).
pub const MAX_TEMPERATURE: f32 = 2.0;
/// Most alternatives a request may ask for per token (vLLM's default `max_logprobs`, and the
/// OpenAI chat API's `top_logprobs` limit).
pub const MAX_LOGPROBS: usize = 20;
/// `logit_bias` values are clamped to `[-MAX_LOGIT_BIAS, MAX_LOGIT_BIAS]`, as OpenAI and vLLM do.
pub const MAX_LOGIT_BIAS: f32 = 100.0;

/// What a request says about sampling; every field optional. Numbers are `f64`/`i64` because
/// that is what JSON deserialises into; range checks happen in [`SamplingParams::resolve`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingOverrides {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// `-1` or `0` disable top-k.
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// OpenAI's `logit_bias`: token id (as a JSON object key, i.e. a string) → bias.
    pub logit_bias: Option<HashMap<String, f64>>,
    /// `-1` means "no seed", as in vLLM; any other value seeds the sequence's generator.
    pub seed: Option<i64>,
    /// Alternatives to report per token (completions' `logprobs: n`, chat's `top_logprobs: n`;
    /// a chat request with `logprobs: true` and no `top_logprobs` asks for `Some(0)`).
    pub logprobs: Option<i64>,
}

/// The resolved, validated parameters one sequence is sampled with.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// As requested; below [`GREEDY_TEMPERATURE`] the sequence is greedy.
    pub temperature: f32,
    /// `1.0` disables top-p.
    pub top_p: f32,
    /// `0` disables top-k (the request's `-1` is normalised to `0`).
    pub top_k: usize,
    /// `0.0` disables min-p.
    pub min_p: f32,
    /// `1.0` disables it. Applies to tokens of the prompt and of the output.
    pub repetition_penalty: f32,
    /// Applies to output tokens only.
    pub presence_penalty: f32,
    /// Applies to output tokens only, scaled by their count.
    pub frequency_penalty: f32,
    /// Sorted by token id, one entry per id, values clamped to ±[`MAX_LOGIT_BIAS`].
    pub logit_bias: Vec<(u32, f32)>,
    /// Seeds the sequence's own generator; `None` draws a fresh seed from the OS.
    pub seed: Option<u64>,
    /// `Some(n)`: return the sampled token's logprob plus the `n` most likely alternatives.
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    /// The neutral settings (OpenAI/vLLM defaults): plain sampling at temperature 1.
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
            logprobs: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with no penalties.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Layers `request` over the model's `defaults` (then the neutral defaults), validates the
    /// result against `vocab_size`, and normalises it (greedy requests drop their truncation
    /// settings, as in vLLM, so they cannot change which path the sampler takes).
    pub fn resolve(
        defaults: &GenerationDefaults,
        request: &SamplingOverrides,
        vocab_size: usize,
    ) -> Result<Self> {
        let neutral = SamplingParams::default();
        let temperature = match request.temperature {
            Some(t) => t as f32,
            None if defaults.greedy_by_default() => 0.0,
            None => defaults.temperature.unwrap_or(neutral.temperature),
        };
        let top_p = request
            .top_p
            .map(|p| p as f32)
            .or(defaults.top_p)
            .unwrap_or(neutral.top_p);
        let top_k = request.top_k.or(defaults.top_k).unwrap_or(0);
        let min_p = request
            .min_p
            .map(|p| p as f32)
            .or(defaults.min_p)
            .unwrap_or(neutral.min_p);
        let repetition_penalty = request
            .repetition_penalty
            .map(|r| r as f32)
            .or(defaults.repetition_penalty)
            .unwrap_or(neutral.repetition_penalty);
        let presence_penalty = request.presence_penalty.map_or(0.0, |p| p as f32);
        let frequency_penalty = request.frequency_penalty.map_or(0.0, |p| p as f32);

        check_temperature(temperature)?;
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(Error::out_of_range(
                RequestPart::TopP,
                format!("must be in (0, 1], got {top_p}."),
            ));
        }
        if top_k < -1 {
            return Err(Error::out_of_range(
                RequestPart::TopK,
                format!("must be -1 or 0 (disabled), or at least 1, got {top_k}."),
            ));
        }
        check_min_p(min_p)?;
        check_penalty(RequestPart::PresencePenalty, presence_penalty)?;
        check_penalty(RequestPart::FrequencyPenalty, frequency_penalty)?;
        check_repetition_penalty(repetition_penalty)?;

        let logprobs = request.logprobs.map(check_logprobs).transpose()?;
        let logit_bias = match &request.logit_bias {
            Some(map) => parse_logit_bias(map, vocab_size)?,
            None => Vec::new(),
        };
        let seed = match request.seed {
            None | Some(-1) => None,
            // Any other 64-bit value is a seed; negative values keep their bit pattern.
            Some(s) => Some(s as u64),
        };

        let mut params = SamplingParams {
            temperature,
            top_p,
            top_k: top_k.max(0) as usize,
            min_p,
            repetition_penalty,
            presence_penalty,
            frequency_penalty,
            logit_bias,
            seed,
            logprobs,
        };
        if params.is_greedy() {
            params.top_p = 1.0;
            params.top_k = 0;
            params.min_p = 0.0;
        }
        Ok(params)
    }

    /// Checks parameters built directly (not through [`SamplingParams::resolve`]) with the same
    /// rules and messages.
    pub fn validate(&self, vocab_size: usize) -> Result<()> {
        check_temperature(self.temperature)?;
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::out_of_range(
                RequestPart::TopP,
                format!("must be in (0, 1], got {}.", self.top_p),
            ));
        }
        check_min_p(self.min_p)?;
        check_penalty(RequestPart::PresencePenalty, self.presence_penalty)?;
        check_penalty(RequestPart::FrequencyPenalty, self.frequency_penalty)?;
        check_repetition_penalty(self.repetition_penalty)?;
        if let Some(n) = self.logprobs {
            check_logprobs(n as i64)?;
        }
        for &(id, bias) in &self.logit_bias {
            if id as usize >= vocab_size {
                return Err(out_of_vocab(id, vocab_size));
            }
            if !bias.is_finite() {
                return Err(not_finite_bias(id));
            }
        }
        Ok(())
    }

    /// Greedy: argmax of the penalised logits, no random draw.
    pub fn is_greedy(&self) -> bool {
        self.temperature < GREEDY_TEMPERATURE
    }

    /// The temperature logits are divided by when sampling (see [`MIN_SAMPLING_TEMPERATURE`]).
    pub fn sampling_temperature(&self) -> f32 {
        self.temperature.max(MIN_SAMPLING_TEMPERATURE)
    }

    /// True when some logit must be rewritten before selection (bias or a penalty).
    pub fn modifies_logits(&self) -> bool {
        !self.logit_bias.is_empty()
            || self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
    }
}

fn check_temperature(t: f32) -> Result<()> {
    if !t.is_finite() {
        return Err(Error::out_of_range(
            RequestPart::Temperature,
            format!("must be a finite number, got {t}."),
        ));
    }
    if !(0.0..=MAX_TEMPERATURE).contains(&t) {
        return Err(Error::out_of_range(
            RequestPart::Temperature,
            format!("must be in [0, {MAX_TEMPERATURE}], got {t}."),
        ));
    }
    Ok(())
}

fn check_min_p(p: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::out_of_range(
            RequestPart::MinP,
            format!("must be in [0, 1], got {p}."),
        ));
    }
    Ok(())
}

fn check_penalty(part: RequestPart, v: f32) -> Result<()> {
    if !(-2.0..=2.0).contains(&v) {
        return Err(Error::out_of_range(
            part,
            format!("must be in [-2, 2], got {v}."),
        ));
    }
    Ok(())
}

fn check_repetition_penalty(r: f32) -> Result<()> {
    if !(r.is_finite() && r > 0.0) {
        return Err(Error::out_of_range(
            RequestPart::RepetitionPenalty,
            format!("must be a finite number greater than zero, got {r}."),
        ));
    }
    Ok(())
}

fn check_logprobs(n: i64) -> Result<usize> {
    if !(0..=MAX_LOGPROBS as i64).contains(&n) {
        return Err(Error::out_of_range(
            RequestPart::Logprobs,
            format!("must be between 0 and {MAX_LOGPROBS}, got {n}."),
        ));
    }
    Ok(n as usize)
}

fn out_of_vocab(id: u32, vocab_size: usize) -> Error {
    Error::invalid(
        RequestPart::LogitBias,
        format!("logit_bias token id {id} is out of the vocabulary (size {vocab_size})."),
    )
}

fn not_finite_bias(id: u32) -> Error {
    Error::invalid(
        RequestPart::LogitBias,
        format!("logit_bias value for token {id} must be a finite number."),
    )
}

/// Parses OpenAI's `{"<token id>": bias}` map into a sorted list, rejecting keys that are not
/// token ids of this model and clamping values like OpenAI/vLLM.
fn parse_logit_bias(map: &HashMap<String, f64>, vocab_size: usize) -> Result<Vec<(u32, f32)>> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut out = Vec::with_capacity(map.len());
    for key in keys {
        let bias = map[key];
        let id: u32 = key.trim().parse().map_err(|_| {
            Error::invalid(
                RequestPart::LogitBias,
                format!("logit_bias key {key:?} is not a token id (a non-negative integer)."),
            )
        })?;
        if id as usize >= vocab_size {
            return Err(out_of_vocab(id, vocab_size));
        }
        if !bias.is_finite() {
            return Err(not_finite_bias(id));
        }
        out.push((id, (bias as f32).clamp(-MAX_LOGIT_BIAS, MAX_LOGIT_BIAS)));
    }
    out.sort_by_key(|&(id, _)| id);
    // "7" and "07" name the same token; the last one (in key order) wins.
    out.dedup_by(|next, prev| {
        if next.0 == prev.0 {
            prev.1 = next.1;
            true
        } else {
            false
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: usize = 1000;

    fn qwen3() -> GenerationDefaults {
        GenerationDefaults {
            do_sample: Some(true),
            temperature: Some(0.6),
            top_p: Some(0.95),
            top_k: Some(20),
            eos_token_ids: vec![151645, 151643],
            ..Default::default()
        }
    }

    fn part_of(err: &Error) -> RequestPart {
        err.request_part()
            .unwrap_or_else(|| panic!("expected a refusal of a request part, got {err:?}"))
    }

    #[test]
    fn model_defaults_fill_missing_fields() {
        let p = SamplingParams::resolve(&qwen3(), &SamplingOverrides::default(), VOCAB).unwrap();
        assert_eq!(p.temperature, 0.6);
        assert_eq!(p.top_p, 0.95);
        assert_eq!(p.top_k, 20);
        assert_eq!(p.min_p, 0.0);
        assert_eq!(p.repetition_penalty, 1.0);
        assert!(!p.is_greedy());
    }

    #[test]
    fn request_overrides_defaults() {
        let req = SamplingOverrides {
            temperature: Some(1.2),
            top_k: Some(-1),
            top_p: Some(0.5),
            ..Default::default()
        };
        let p = SamplingParams::resolve(&qwen3(), &req, VOCAB).unwrap();
        assert_eq!(p.temperature, 1.2);
        assert_eq!(p.top_k, 0);
        assert_eq!(p.top_p, 0.5);
    }

    #[test]
    fn greedy_drops_truncation() {
        let req = SamplingOverrides {
            temperature: Some(0.0),
            ..Default::default()
        };
        let p = SamplingParams::resolve(&qwen3(), &req, VOCAB).unwrap();
        assert!(p.is_greedy());
        assert_eq!((p.top_p, p.top_k, p.min_p), (1.0, 0, 0.0));
        let tiny = SamplingOverrides {
            temperature: Some(1e-6),
            ..Default::default()
        };
        assert!(
            SamplingParams::resolve(&qwen3(), &tiny, VOCAB)
                .unwrap()
                .is_greedy()
        );
    }

    #[test]
    fn do_sample_false_means_greedy_unless_request_sets_temperature() {
        let d = GenerationDefaults {
            do_sample: Some(false),
            temperature: Some(0.7),
            ..Default::default()
        };
        let p = SamplingParams::resolve(&d, &SamplingOverrides::default(), VOCAB).unwrap();
        assert!(p.is_greedy());
        let req = SamplingOverrides {
            temperature: Some(0.9),
            ..Default::default()
        };
        assert!(
            !SamplingParams::resolve(&d, &req, VOCAB)
                .unwrap()
                .is_greedy()
        );
    }

    #[test]
    fn small_temperatures_are_raised_for_sampling() {
        let p = SamplingParams {
            temperature: 0.001,
            ..Default::default()
        };
        assert!(!p.is_greedy());
        assert_eq!(p.sampling_temperature(), MIN_SAMPLING_TEMPERATURE);
    }

    #[test]
    fn validation_names_the_part() {
        let d = GenerationDefaults::default();
        let cases: Vec<(SamplingOverrides, RequestPart)> = vec![
            (
                SamplingOverrides {
                    temperature: Some(-0.1),
                    ..Default::default()
                },
                RequestPart::Temperature,
            ),
            (
                SamplingOverrides {
                    temperature: Some(2.5),
                    ..Default::default()
                },
                RequestPart::Temperature,
            ),
            (
                SamplingOverrides {
                    temperature: Some(f64::NAN),
                    ..Default::default()
                },
                RequestPart::Temperature,
            ),
            (
                SamplingOverrides {
                    top_p: Some(0.0),
                    ..Default::default()
                },
                RequestPart::TopP,
            ),
            (
                SamplingOverrides {
                    top_p: Some(1.01),
                    ..Default::default()
                },
                RequestPart::TopP,
            ),
            (
                SamplingOverrides {
                    top_k: Some(-2),
                    ..Default::default()
                },
                RequestPart::TopK,
            ),
            (
                SamplingOverrides {
                    min_p: Some(1.5),
                    ..Default::default()
                },
                RequestPart::MinP,
            ),
            (
                SamplingOverrides {
                    presence_penalty: Some(2.1),
                    ..Default::default()
                },
                RequestPart::PresencePenalty,
            ),
            (
                SamplingOverrides {
                    frequency_penalty: Some(-3.0),
                    ..Default::default()
                },
                RequestPart::FrequencyPenalty,
            ),
            (
                SamplingOverrides {
                    repetition_penalty: Some(0.0),
                    ..Default::default()
                },
                RequestPart::RepetitionPenalty,
            ),
            (
                SamplingOverrides {
                    logprobs: Some(21),
                    ..Default::default()
                },
                RequestPart::Logprobs,
            ),
            (
                SamplingOverrides {
                    logprobs: Some(-1),
                    ..Default::default()
                },
                RequestPart::Logprobs,
            ),
            (
                SamplingOverrides {
                    logit_bias: Some(HashMap::from([("1000".to_string(), 1.0)])),
                    ..Default::default()
                },
                RequestPart::LogitBias,
            ),
            (
                SamplingOverrides {
                    logit_bias: Some(HashMap::from([("abc".to_string(), 1.0)])),
                    ..Default::default()
                },
                RequestPart::LogitBias,
            ),
        ];
        for (req, part) in cases {
            let err = SamplingParams::resolve(&d, &req, VOCAB).unwrap_err();
            assert_eq!(part_of(&err), part, "{req:?}");
            // The engine's own wording names the part as vLLM's completions API does.
            assert!(err.to_string().starts_with(part.name()), "{err}");
        }
    }

    #[test]
    fn boundaries_are_accepted() {
        let req = SamplingOverrides {
            temperature: Some(2.0),
            top_p: Some(1.0),
            top_k: Some(1),
            min_p: Some(1.0),
            presence_penalty: Some(-2.0),
            frequency_penalty: Some(2.0),
            repetition_penalty: Some(5.0),
            logprobs: Some(20),
            ..Default::default()
        };
        let p = SamplingParams::resolve(&GenerationDefaults::default(), &req, VOCAB).unwrap();
        assert_eq!(p.logprobs, Some(20));
        p.validate(VOCAB).unwrap();
    }

    #[test]
    fn logit_bias_is_parsed_sorted_and_clamped() {
        let req = SamplingOverrides {
            logit_bias: Some(HashMap::from([
                ("5".to_string(), 150.0),
                ("2".to_string(), -300.0),
                ("9".to_string(), 0.5),
            ])),
            ..Default::default()
        };
        let p = SamplingParams::resolve(&GenerationDefaults::default(), &req, VOCAB).unwrap();
        assert_eq!(p.logit_bias, vec![(2, -100.0), (5, 100.0), (9, 0.5)]);
    }

    #[test]
    fn logprobs_are_kept_and_seed_minus_one_is_none() {
        let req = SamplingOverrides {
            logprobs: Some(5),
            seed: Some(-1),
            ..Default::default()
        };
        let p = SamplingParams::resolve(&GenerationDefaults::default(), &req, VOCAB).unwrap();
        assert_eq!(p.logprobs, Some(5));
        assert_eq!(p.seed, None);
        let req = SamplingOverrides {
            seed: Some(42),
            ..Default::default()
        };
        let p = SamplingParams::resolve(&GenerationDefaults::default(), &req, VOCAB).unwrap();
        assert_eq!(p.seed, Some(42));
    }
}
