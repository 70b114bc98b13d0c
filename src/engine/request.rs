//! What goes into the engine and what comes out of it.

use crate::guided::GuidedDecoding;
use crate::sampling::SamplingParams;
use std::time::Instant;

/// A tokenized generation request, validated by the caller.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub prompt_ids: Vec<u32>,
    pub sampling: SamplingParams,
    /// Most tokens to generate; `None` = up to the model's context limit.
    pub max_tokens: Option<usize>,
    /// Tokens to generate before EOS or stop tokens may end the request.
    pub min_tokens: usize,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub ignore_eos: bool,
    pub include_stop_str_in_output: bool,
    pub skip_special_tokens: bool,
    /// Constrains what may be generated (structured outputs, forced tool calls).
    pub guided: Option<GuidedDecoding>,
    /// Prefix-cache blocks are reused only between requests with the same salt (vLLM's
    /// `cache_salt`, possibly combined with the client's API key).
    pub cache_salt: Option<String>,
    /// Read the prompt instead of continuing it: the request ends after its prefill with an
    /// [`Event::Pooled`] (embeddings), generating nothing.
    pub pooling: Option<Pooling>,
    pub arrival: Instant,
}

/// What a prefill-only request returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pooling {
    /// The final hidden state (after the last norm) of the prompt's last token, as f32.
    LastHidden,
    /// The logits of these tokens at the prompt's last position (a reranker's yes/no).
    TokenLogits(Vec<u32>),
}

impl Pooling {
    /// Whether the row skips the output head (its hidden state is the result).
    pub fn is_hidden(pooling: &Option<Pooling>) -> bool {
        matches!(pooling, Some(Pooling::LastHidden))
    }
}

impl GenerationRequest {
    pub fn new(prompt_ids: Vec<u32>, sampling: SamplingParams) -> Self {
        Self {
            prompt_ids,
            sampling,
            max_tokens: None,
            min_tokens: 0,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            include_stop_str_in_output: false,
            skip_special_tokens: true,
            guided: None,
            cache_salt: None,
            pooling: None,
            arrival: Instant::now(),
        }
    }

    /// A prefill-only request for `prompt_ids` (see [`GenerationRequest::pooling`]).
    pub fn pooled(prompt_ids: Vec<u32>, pooling: Pooling) -> Self {
        Self {
            pooling: Some(pooling),
            ..Self::new(prompt_ids, SamplingParams::default())
        }
    }
}

/// A generated token's log-probability and, if asked for, the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token_id: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// EOS, a stop token, or a stop string.
    Stop,
    /// `max_tokens` or the context limit.
    Length,
    /// The request was cancelled or the server is shutting down.
    Abort,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

/// What ended a `stop` finish: vLLM reports it as `stop_reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Eos,
    TokenId(u32),
    String(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens served by the prefix cache.
    pub cached_tokens: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New text (possibly empty while a stop string is undecided) and the tokens behind it.
    Delta {
        text: String,
        token_ids: Vec<u32>,
        logprobs: Vec<TokenLogprob>,
    },
    /// What a pooling request read from its prompt (see [`Pooling`]); a `Finished` follows.
    Pooled(Vec<f32>),
    /// The request is over; always the last event.
    Finished {
        reason: FinishReason,
        stop_reason: Option<StopReason>,
        usage: Usage,
    },
    /// The engine failed while running this request; always the last event.
    Error(String),
}
