//! How chat completions and completions send a response — SSE chunks or one JSON object — and
//! what both renderers share around it: the stream options, the one error chunk of a failed
//! response, and the end of OpenAI's stream (the usage chunk, `[DONE]`).

use crate::api::error::{ApiError, ApiResult};
use crate::api::sse::DataChunk;
use crate::api::types::common::StreamOptions;

pub enum Delivery {
    /// SSE chunks; `include_usage`: a usage chunk before `[DONE]`; `continuous_usage`: usage
    /// on every chunk too.
    Stream {
        include_usage: bool,
        continuous_usage: bool,
    },
    /// One JSON object, folded from the pieces a stream would send.
    Whole,
}

impl Delivery {
    /// From the request's `stream` and `stream_options`.
    pub fn of(stream: bool, options: Option<&StreamOptions>) -> Self {
        if !stream {
            return Delivery::Whole;
        }
        let include_usage = options.and_then(|o| o.include_usage).unwrap_or(false);
        let continuous = options.and_then(|o| o.continuous_usage_stats);
        Delivery::Stream {
            include_usage,
            continuous_usage: include_usage && continuous.unwrap_or(false),
        }
    }

    pub fn is_whole(&self) -> bool {
        matches!(self, Delivery::Whole)
    }

    /// Usage goes on every chunk (vLLM's `continuous_usage_stats`).
    pub fn continuous_usage(&self) -> bool {
        matches!(
            self,
            Delivery::Stream {
                continuous_usage: true,
                ..
            }
        )
    }

    /// The chunks after the last choice finished: the usage chunk when it was asked for and
    /// nothing failed, then `[DONE]`; nothing for a whole answer.
    pub fn end(&self, failure: &Failure, usage: impl FnOnce() -> DataChunk) -> Vec<DataChunk> {
        let Delivery::Stream { include_usage, .. } = self else {
            return Vec::new();
        };
        let mut chunks = Vec::new();
        if *include_usage && !failure.is_failed() {
            chunks.push(usage());
        }
        chunks.push(DataChunk::done());
        chunks
    }
}

/// Why a response failed, once it has.
#[derive(Default)]
pub struct Failure(Option<ApiError>);

impl Failure {
    /// Records the failure; the error chunk goes out the first time only.
    pub fn fail(&mut self, error: &ApiError) -> Vec<DataChunk> {
        if self.0.is_some() {
            return Vec::new();
        }
        self.0 = Some(error.clone());
        vec![DataChunk::error(error)]
    }

    pub fn is_failed(&self) -> bool {
        self.0.is_some()
    }

    /// `Ok` unless the response failed.
    pub fn check(&self) -> ApiResult<()> {
        self.0.clone().map_or(Ok(()), Err)
    }
}
