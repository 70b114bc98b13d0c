//! Completions' output: engine events → choice pieces (echoed prompt, text deltas, finish) →
//! either SSE chunks (then usage and `[DONE]`) or, for a response sent whole, their fold into one
//! text per choice, so both forms agree.

use std::sync::Arc;

use axum::response::sse::Event as SseEvent;

use super::Prompt;
use crate::api::error::{ApiError, ApiResult};
use crate::api::logprobs::{clamp, token_text, top_map};
use crate::api::openai::delivery::{Delivery, Failure};
use crate::api::output::{self, Renderer};
use crate::api::sse::{DataChunk, abort_error};
use crate::api::types::common::{StopReasonValue, UsageInfo};
use crate::api::types::completions::{CompletionChoice, CompletionLogprobs, CompletionResponse};
use crate::engine::{Event, FinishReason, TokenLogprob, Usage};
use crate::tokenizer::Tokenizer;

pub struct CompletionContext {
    pub id: String,
    pub created: i64,
    pub model: String,
    pub tokenizer: Arc<Tokenizer>,
    pub logprobs: bool,
    pub echo: bool,
    /// Per choice: its prompt's ids and text.
    pub prompts: Vec<Arc<Prompt>>,
}

/// One choice as it runs.
struct Choice {
    /// Bytes of text out so far (for `text_offset`).
    sent: usize,
    tokens: usize,
    usage: Option<Usage>,
    /// The fold of this choice's pieces (a response sent whole).
    folded: CompletionChoice,
}

pub struct CompletionRenderer {
    ctx: CompletionContext,
    choices: Vec<Choice>,
    delivery: Delivery,
    failure: Failure,
}

impl CompletionRenderer {
    pub fn new(ctx: CompletionContext, delivery: Delivery) -> Self {
        let choices = (0..ctx.prompts.len())
            .map(|index| Choice {
                sent: 0,
                tokens: 0,
                usage: None,
                folded: CompletionChoice {
                    index,
                    text: String::new(),
                    logprobs: ctx.logprobs.then(CompletionLogprobs::default),
                    finish_reason: None,
                    stop_reason: None,
                },
            })
            .collect();
        Self {
            ctx,
            choices,
            delivery,
            failure: Failure::default(),
        }
    }

    /// The response sent whole; the error when it failed.
    fn whole(self) -> ApiResult<CompletionResponse> {
        self.failure.check()?;
        let usage = self.usage();
        Ok(CompletionResponse {
            id: self.ctx.id,
            object: "text_completion",
            created: self.ctx.created,
            model: self.ctx.model,
            choices: self.choices.into_iter().map(|c| c.folded).collect(),
            usage: Some(usage),
        })
    }

    /// Usage once every choice finished: each prompt's tokens count once, however many choices
    /// it has.
    fn usage(&self) -> UsageInfo {
        let (mut prompt, mut cached, mut completion) = (0, 0, 0);
        let mut counted = None;
        for (choice, p) in self.choices.iter().zip(&self.ctx.prompts) {
            let usage = choice.usage.unwrap_or_default();
            if counted != Some(p.index) {
                prompt += usage.prompt_tokens;
                cached += usage.cached_tokens;
                counted = Some(p.index);
            }
            completion += usage.completion_tokens;
        }
        UsageInfo::new(prompt, completion, Some(cached))
    }

    /// The prompt tokens of the request, before the engine has reported them.
    fn prompt_tokens(&self) -> usize {
        let mut total = 0;
        let mut last = None;
        for p in &self.ctx.prompts {
            if last != Some(p.index) {
                last = Some(p.index);
                total += p.ids.len();
            }
        }
        total
    }

    /// Sends `piece` (SSE) or folds it into its choice (whole).
    fn deliver(&mut self, piece: CompletionChoice) -> Vec<DataChunk> {
        if self.delivery.is_whole() {
            let folded = &mut self.choices[piece.index].folded;
            folded.text.push_str(&piece.text);
            if let (Some(all), Some(more)) = (&mut folded.logprobs, piece.logprobs) {
                all.extend(more);
            }
            if piece.finish_reason.is_some() {
                folded.finish_reason = piece.finish_reason;
                folded.stop_reason = piece.stop_reason;
            }
            return Vec::new();
        }
        vec![self.chunk(Some(piece), None)]
    }

    fn chunk(&self, choice: Option<CompletionChoice>, usage: Option<UsageInfo>) -> DataChunk {
        let continuous = self.delivery.continuous_usage();
        let usage = usage.or_else(|| {
            let tokens = self.choices.iter().map(|c| c.tokens).sum();
            continuous.then(|| UsageInfo::new(self.prompt_tokens(), tokens, None))
        });
        DataChunk::json(&CompletionResponse {
            id: self.ctx.id.clone(),
            object: "text_completion",
            created: self.ctx.created,
            model: self.ctx.model.clone(),
            choices: choice.into_iter().collect(),
            usage,
        })
    }
}

impl Renderer for CompletionRenderer {
    type Event = DataChunk;
    type Whole = CompletionResponse;

    fn into_whole(self) -> ApiResult<CompletionResponse> {
        self.whole()
    }

    fn start(&mut self) -> Vec<DataChunk> {
        if !self.ctx.echo {
            return Vec::new();
        }
        let mut events = Vec::new();
        for index in 0..self.choices.len() {
            let prompt = self.ctx.prompts[index].clone();
            let logprobs = self.ctx.logprobs.then(|| {
                let mut b = LogprobsBuilder::default();
                b.prompt(&self.ctx.tokenizer, &prompt.ids, 0);
                b.out
            });
            self.choices[index].sent = prompt.text.len();
            events.extend(self.deliver(CompletionChoice {
                index,
                text: prompt.text.clone(),
                logprobs,
                finish_reason: None,
                stop_reason: None,
            }));
        }
        events
    }

    fn on_engine(&mut self, index: usize, event: Event) -> Vec<DataChunk> {
        if self.failure.is_failed() {
            return Vec::new();
        }
        match event {
            Event::Delta {
                text,
                token_ids,
                logprobs,
            } => {
                let choice = &mut self.choices[index];
                choice.tokens += token_ids.len();
                if text.is_empty() && !self.ctx.logprobs {
                    return Vec::new();
                }
                let offset = choice.sent;
                choice.sent += text.len();
                let logprobs = self.ctx.logprobs.then(|| {
                    let mut b = LogprobsBuilder::default();
                    b.generated(&self.ctx.tokenizer, &logprobs, offset);
                    b.out
                });
                self.deliver(CompletionChoice {
                    index,
                    text,
                    logprobs,
                    finish_reason: None,
                    stop_reason: None,
                })
            }
            Event::Finished {
                reason,
                stop_reason,
                usage,
            } => {
                let finish = match reason {
                    FinishReason::Stop => "stop",
                    FinishReason::Length => "length",
                    FinishReason::Abort => return self.fail(&abort_error()),
                };
                let choice = &mut self.choices[index];
                choice.tokens = usage.completion_tokens;
                choice.usage = Some(usage);
                self.deliver(CompletionChoice {
                    index,
                    text: String::new(),
                    logprobs: None,
                    finish_reason: Some(finish),
                    stop_reason: StopReasonValue::from_engine(stop_reason.as_ref()),
                })
            }
            Event::Error(message) => self.fail(&ApiError::internal(message)),
            Event::Pooled(_) => self.fail(&output::pooled_in_generation()),
        }
    }

    fn fail(&mut self, error: &ApiError) -> Vec<DataChunk> {
        self.failure.fail(error)
    }

    fn is_finished(&self) -> bool {
        self.failure.is_failed() || self.choices.iter().all(|c| c.usage.is_some())
    }

    fn end(&mut self) -> Vec<DataChunk> {
        self.delivery
            .end(&self.failure, || self.chunk(None, Some(self.usage())))
    }

    fn to_sse(event: DataChunk) -> SseEvent {
        event.into_sse()
    }
}

/// Builds the legacy logprobs arrays, tracking each token's offset in the choice text.
#[derive(Default)]
struct LogprobsBuilder {
    out: CompletionLogprobs,
}

impl LogprobsBuilder {
    /// Prompt tokens echoed back: no logprobs are computed for them.
    fn prompt(&mut self, tokenizer: &Tokenizer, ids: &[u32], mut offset: usize) {
        for &id in ids {
            let (token, bytes) = token_text(tokenizer, id);
            self.out.tokens.push(token);
            self.out.token_logprobs.push(None);
            self.out.top_logprobs.push(None);
            self.out.text_offset.push(offset);
            offset += bytes.len();
        }
    }

    fn generated(&mut self, tokenizer: &Tokenizer, logprobs: &[TokenLogprob], offset: usize) {
        for lp in logprobs {
            self.out.tokens.push(token_text(tokenizer, lp.token_id).0);
            self.out.token_logprobs.push(Some(clamp(lp.logprob)));
            self.out
                .top_logprobs
                .push(Some(top_map(tokenizer, &lp.top)));
            self.out.text_offset.push(offset);
        }
    }
}
