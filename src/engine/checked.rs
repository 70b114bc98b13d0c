//! A request the engine's rules have passed. Only [`CheckedRequest::new`] makes one, so
//! [`super::EngineHandle::submit_checked`] queues it without looking again: the rules that read
//! the whole prompt run once, where the request is built (on the API's blocking pool), not a
//! second time at submission.

use super::info::EngineInfo;
use super::request::GenerationRequest;
use super::rules;
use crate::error::{RequestPart, Result};
use crate::sampling::SamplingParams;

#[derive(Debug, Clone)]
pub struct CheckedRequest(GenerationRequest);

impl CheckedRequest {
    /// `request` if it fits the engine `info` describes: a prompt of at least one token that
    /// leaves room for one more (a pooling request's may fill the context), and every prompt
    /// and stop token id in the vocabulary.
    pub fn new(request: GenerationRequest, info: &EngineInfo) -> Result<Self> {
        let (len, max) = (request.prompt_ids.len(), info.max_model_len);
        match request.pooling {
            Some(_) => rules::input_fits(len, max)?,
            None => rules::prompt_fits(len, max)?,
        }
        let vocab = info.vocab_size;
        for &id in &request.prompt_ids {
            rules::token_id(i64::from(id), vocab, RequestPart::Prompt)?;
        }
        for &id in &request.stop_token_ids {
            rules::token_id(i64::from(id), vocab, RequestPart::StopTokenIds)?;
        }
        Ok(Self(request))
    }

    /// This request with other sampling settings, which are not among what was checked: the
    /// `n` choices of one prompt are checked once.
    pub fn with_sampling(&self, sampling: SamplingParams) -> Self {
        let mut request = self.0.clone();
        request.sampling = sampling;
        Self(request)
    }

    pub fn request(&self) -> &GenerationRequest {
        &self.0
    }

    pub(super) fn into_request(self) -> GenerationRequest {
        self.0
    }
}
