//! The generation fields chat completions and completions share: OpenAI's sampling fields
//! and vLLM's extras, declared once and converted once ([`SharedGenerationFields::into_fields`]).
//! Parsed as a second view of the request body ([`crate::api::extract::ApiJsonWith`]).

use std::collections::HashMap;

use serde::Deserialize;

use super::common::StopSpec;
use crate::api::request_builder::GenerationFields;
use crate::sampling::SamplingOverrides;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SharedGenerationFields {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub n: Option<i64>,
    pub seed: Option<i64>,
    pub stop: Option<StopSpec>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub logit_bias: Option<HashMap<String, f64>>,
    // vLLM's extensions.
    pub ignore_eos: Option<bool>,
    pub min_tokens: Option<i64>,
    pub stop_token_ids: Option<Vec<i64>>,
    pub skip_special_tokens: Option<bool>,
    pub include_stop_str_in_output: Option<bool>,
    /// Prefix-cache blocks are shared only between requests with the same salt.
    pub cache_salt: Option<String>,
}

/// How the API asks for logprobs: completions' `logprobs: n`, or chat's `top_logprobs: n`
/// (set when `logprobs: true`). Errors name the field the client used.
#[derive(Debug, Clone, Copy)]
pub enum LogprobsField {
    None,
    Completions(Option<i64>),
    Chat(i64),
}

impl SharedGenerationFields {
    /// The fields for [`crate::api::request_builder::build`]: `max_tokens` with the name the
    /// client used, the logprobs the API asked for, and the salted `cache_salt`.
    pub fn into_fields(
        self,
        max_tokens: Option<(i64, &'static str)>,
        logprobs: LogprobsField,
        cache_salt: Option<String>,
    ) -> GenerationFields {
        let (logprobs, top_logprobs) = match logprobs {
            LogprobsField::None => (None, None),
            LogprobsField::Completions(n) => (n, None),
            LogprobsField::Chat(n) => (None, Some(n)),
        };
        GenerationFields {
            max_tokens,
            min_tokens: self.min_tokens,
            n: self.n,
            stop: self.stop,
            stop_token_ids: self.stop_token_ids,
            ignore_eos: self.ignore_eos,
            skip_special_tokens: self.skip_special_tokens,
            include_stop_str_in_output: self.include_stop_str_in_output,
            sampling: SamplingOverrides {
                temperature: self.temperature,
                top_p: self.top_p,
                top_k: self.top_k,
                min_p: self.min_p,
                repetition_penalty: self.repetition_penalty,
                presence_penalty: self.presence_penalty,
                frequency_penalty: self.frequency_penalty,
                logit_bias: self.logit_bias,
                seed: self.seed,
                logprobs,
                top_logprobs,
            },
            cache_salt,
        }
    }
}
