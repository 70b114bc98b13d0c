//! The sampling fields every generation API reads — OpenAI's, vLLM's extras, the Messages API's
//! subset — declared once and converted once ([`SamplingFields::into_overrides`]). Parsed as a
//! view of the request body of its own ([`crate::api::extract::ApiJsonWith`]), so a field of the
//! wrong type is still named in the error.

use serde::Deserialize;

use crate::sampling::SamplingOverrides;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SamplingFields {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub repetition_penalty: Option<f64>,
}

impl SamplingFields {
    /// The overrides of the served generation config these fields ask for (logprobs and
    /// `logit_bias` are the API's to add).
    pub fn into_overrides(self) -> SamplingOverrides {
        SamplingOverrides {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
            ..Default::default()
        }
    }
}
