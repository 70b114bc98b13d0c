//! Per-request state beside the scheduler's view: sampler, detokenizer, stop conditions, the
//! client's event channel, and latency timestamps.

use super::request::{
    Event, FinishReason, GenerationRequest, Pooling, StopReason, TokenLogprob, Usage,
};
use super::scheduler::SequenceCore;
use super::speculative::RequestSpeculation;
use super::stop_strings::{StopScan, StopStrings};
use crate::guided::GuidedMatcher;
use crate::sampling::{SampledToken, SequenceSampler};
use crate::tokenizer::{IncrementalDetokenizer, Tokenizer};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::Sender;

/// Events a step may send one request: a token's delta and the final event.
pub const EVENTS_PER_STEP: usize = 2;

pub struct RequestState {
    /// Bounded: a client that stops reading fills it, and the request is parked (see
    /// [`RequestState::update_backpressure`]) rather than buffered without end.
    pub events: Sender<Event>,
    pub sampler: SequenceSampler,
    pub detokenizer: IncrementalDetokenizer,
    pub stops: StopStrings,
    /// Generated tokens allowed (already capped by the context limit).
    pub max_tokens: usize,
    pub min_tokens: usize,
    pub ignore_eos: bool,
    pub stop_token_ids: Vec<u32>,
    pub arrival: Instant,
    pub first_token_at: Option<Instant>,
    pub last_token_at: Option<Instant>,
    /// Prompt tokens served by the prefix cache when first admitted.
    pub cached_prompt_tokens: Option<usize>,
    pub finished: Option<FinishReason>,
    /// The output constraint (structured outputs, forced tool calls), if any.
    pub guided: Option<GuidedMatcher>,
    /// Since when the client's channel has had no room for a step's events (the request is
    /// not scheduled meanwhile); `None` while it has room.
    pub stalled_since: Option<Instant>,
    /// Whether usage reports the prompt tokens the prefix cache served (else 0).
    pub report_cached_tokens: bool,
    /// A prefill-only request: what it returns instead of generating.
    pub pooling: Option<Pooling>,
    /// Its speculation state, when the engine speculates and the request may carry drafts.
    pub speculation: Option<RequestSpeculation>,
}

/// What one sampled token did to a request.
pub struct TokenOutcome {
    /// Seconds since the previous token (none for the first).
    pub inter_token: Option<f64>,
    pub first_token: Option<f64>,
    pub finished: Option<FinishReason>,
}

impl RequestState {
    /// The state of a request about to be queued. `max_tokens` is the request's limit already
    /// capped by what the context leaves; events go to `events`.
    pub fn new(
        request: &GenerationRequest,
        tokenizer: Arc<Tokenizer>,
        guided: Option<GuidedMatcher>,
        max_tokens: usize,
        events: Sender<Event>,
    ) -> Self {
        Self {
            events,
            sampler: SequenceSampler::new(request.sampling.clone(), &request.prompt_ids),
            detokenizer: IncrementalDetokenizer::new(tokenizer, request.skip_special_tokens),
            stops: StopStrings::new(request.stop.clone(), request.include_stop_str_in_output),
            max_tokens,
            min_tokens: request.min_tokens,
            ignore_eos: request.ignore_eos,
            stop_token_ids: request.stop_token_ids.clone(),
            arrival: request.arrival,
            first_token_at: None,
            last_token_at: None,
            cached_prompt_tokens: None,
            finished: None,
            guided,
            stalled_since: None,
            report_cached_tokens: true,
            pooling: request.pooling.clone(),
            speculation: None,
        }
    }

    /// Whether the client's channel has room for what one step may send.
    pub fn has_room(&self) -> bool {
        self.events.capacity() >= EVENTS_PER_STEP
    }

    /// Notes whether the client keeps up: a request without room for a step's events is
    /// parked (not scheduled, its KV kept) from now on, and resumes when the client reads.
    /// Returns how long it has been parked. A parked request always has room for one more
    /// event (it was scheduled only with room for two and sent at most one that did not
    /// finish it), so the error that ends a stall can always be delivered.
    pub fn update_backpressure(&mut self, now: Instant) -> Option<std::time::Duration> {
        if self.finished.is_some() || self.has_room() {
            self.stalled_since = None;
            return None;
        }
        Some(now - *self.stalled_since.get_or_insert(now))
    }

    /// Whether the request may be scheduled this step (see [`Self::update_backpressure`]).
    pub fn is_parked(&self) -> bool {
        self.stalled_since.is_some()
    }

    /// Tokens that may not be sampled yet because `min_tokens` has not been reached.
    pub fn suppressed_tokens(&self, output_len: usize, eos_ids: &[u32]) -> Vec<u32> {
        if output_len >= self.min_tokens {
            return Vec::new();
        }
        let mut ids: Vec<u32> = self.stop_token_ids.clone();
        if !self.ignore_eos {
            ids.extend_from_slice(eos_ids);
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Before sampling: restricts the next token to what the request's constraint allows
    /// (nothing to do without one). A matcher failure ends the request with an error event;
    /// the caller must then ignore whatever is sampled for it.
    pub fn constrain_next_token(&mut self) {
        let Some(guided) = self.guided.as_mut() else {
            return;
        };
        match guided.next_mask() {
            Ok(mask) => self.sampler.set_allowed(Some(mask)),
            Err(e) => {
                self.fail(format!("guided decoding: {e}"));
            }
        }
    }

    /// Handles a token already appended to `core.tokens`: stop checks, text, events.
    pub fn on_token(
        &mut self,
        core: &SequenceCore,
        sampled: &SampledToken,
        eos_ids: &[u32],
        max_model_len: usize,
    ) -> TokenOutcome {
        let now = Instant::now();
        let first_token = self
            .first_token_at
            .is_none()
            .then(|| (now - self.arrival).as_secs_f64());
        let inter_token = self.last_token_at.map(|t| (now - t).as_secs_f64());
        self.first_token_at.get_or_insert(now);
        self.last_token_at = Some(now);

        let token = sampled.id;
        let grammar_complete = match self.guided.as_mut().map(|g| g.commit(token)) {
            Some(Err(e)) => return self.fail(format!("guided decoding: {e}")),
            Some(Ok(done)) => done,
            None => false,
        };
        let output_len = core.output_len();
        // Stop conditions apply from `min_tokens` on (vLLM's rule); before that, stop strings
        // and stop tokens are ordinary output.
        let checks_active = output_len >= self.min_tokens;
        let mut stop: Option<StopReason> = None;
        let mut text = String::new();
        if checks_active && !self.ignore_eos && eos_ids.contains(&token) {
            stop = Some(StopReason::Eos);
        } else if checks_active && self.stop_token_ids.contains(&token) {
            stop = Some(StopReason::TokenId(token));
        } else {
            let delta = match self.detokenizer.push(token) {
                Ok(d) => d,
                Err(e) => return self.fail(format!("detokenizer: {e}")),
            };
            if checks_active {
                match self.stops.push(&delta) {
                    StopScan::Continue(t) => text = t,
                    StopScan::Stopped { text: t, matched } => {
                        text = t;
                        stop = Some(StopReason::String(matched));
                    }
                }
            } else {
                text = self.stops.push_unchecked(&delta);
            }
        }
        let mut reason = stop.as_ref().map(|_| FinishReason::Stop);
        if reason.is_none() {
            // A complete constrained output ends here, as if EOS followed (all the grammar
            // would allow next); this outranks `min_tokens` and `ignore_eos`.
            reason = if grammar_complete {
                stop = Some(StopReason::Eos);
                Some(FinishReason::Stop)
            } else if output_len >= self.max_tokens || core.tokens.len() >= max_model_len {
                Some(FinishReason::Length)
            } else {
                None
            };
        }
        // Every finish but a stop string releases what was held back: the detokenizer's
        // incomplete tail and text that might have begun a stop string.
        if reason.is_some() && !matches!(stop, Some(StopReason::String(_))) {
            text.push_str(&self.release_held());
        }
        let logprobs = if sampled.logprob.is_nan() {
            Vec::new()
        } else {
            vec![TokenLogprob {
                token_id: token,
                logprob: sampled.logprob,
                top: sampled.top_logprobs.clone(),
            }]
        };
        let delivered = self
            .events
            .try_send(Event::Delta {
                text,
                token_ids: vec![token],
                logprobs,
            })
            .is_ok();
        if !delivered {
            reason = Some(FinishReason::Abort);
        }
        if let Some(r) = reason {
            self.finish(core, r, stop);
        }
        TokenOutcome {
            inter_token,
            first_token,
            finished: reason,
        }
    }

    /// Text still held back at a finish that is not a stop string. The detokenizer's tail can
    /// still complete a stop string; then the output ends before it, as it would have.
    fn release_held(&mut self) -> String {
        let tail = self.detokenizer.finish().unwrap_or_default();
        match self.stops.push(&tail) {
            StopScan::Continue(mut t) => {
                t.push_str(&self.stops.flush());
                t
            }
            StopScan::Stopped { text, .. } => text,
        }
    }

    /// Sends the final event (if the client still listens) and marks the request done.
    /// Ends a pooling request with what it read from its prompt.
    pub fn pooled(&mut self, core: &SequenceCore, values: Vec<f32>) {
        if self.finished.is_some() {
            return;
        }
        let _ = self.events.try_send(Event::Pooled(values));
        self.finish(core, FinishReason::Stop, None);
    }

    pub fn finish(
        &mut self,
        core: &SequenceCore,
        reason: FinishReason,
        stop_reason: Option<StopReason>,
    ) {
        self.finished = Some(reason);
        let usage = Usage {
            prompt_tokens: core.prompt_len,
            completion_tokens: core.output_len(),
            cached_tokens: if self.report_cached_tokens {
                self.cached_prompt_tokens.unwrap_or(0)
            } else {
                0
            },
        };
        let _ = self.events.try_send(Event::Finished {
            reason,
            stop_reason,
            usage,
        });
    }

    /// Ends the request with an error event (no-op if it has already finished).
    pub fn fail_with(&mut self, message: &str) {
        if self.finished.is_none() {
            let _ = self.events.try_send(Event::Error(message.to_owned()));
            self.finished = Some(FinishReason::Abort);
        }
    }

    fn fail(&mut self, message: String) -> TokenOutcome {
        self.fail_with(&message);
        TokenOutcome {
            inter_token: None,
            first_token: None,
            finished: Some(FinishReason::Abort),
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.events.is_closed()
    }
}
