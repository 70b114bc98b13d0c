//! The generation fields chat completions and completions share beyond sampling (`n`, `stop`,
//! `logit_bias`, vLLM's extras), declared once and converted once, with the sampling fields
//! ([`super::sampling::SamplingFields`]), by [`SharedGenerationFields::into_fields`]. Parsed as a
//! view of the request body of its own ([`crate::api::extract::ApiJsonWith`]).

use std::collections::HashMap;

use serde::Deserialize;

use super::common::StopSpec;
use super::sampling::SamplingFields;
use crate::api::request_builder::GenerationFields;
use crate::sampling::SamplingOverrides;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SharedGenerationFields {
    pub n: Option<i64>,
    pub stop: Option<StopSpec>,
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

impl SharedGenerationFields {
    /// The fields for [`crate::api::request_builder::build`]: the request's sampling fields,
    /// its output limit, the alternatives per token it asked logprobs for, and the salted
    /// `cache_salt`.
    pub fn into_fields(
        self,
        sampling: SamplingFields,
        max_tokens: Option<i64>,
        logprobs: Option<i64>,
        cache_salt: Option<String>,
    ) -> GenerationFields {
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
                logit_bias: self.logit_bias,
                logprobs,
                ..sampling.into_overrides()
            },
            cache_salt,
        }
    }
}
