//! Speculative decoding: a sequence carries draft tokens into a step after its pending token;
//! the step's logits at each of those positions check them, and every draft token the
//! target model would have produced is accepted at once.
//!
//! The engine verifies a draft by sampling each position with the request's own sampler, in
//! order, and accepting the draft token while it equals the sampled one ([`super::emit`]).
//! Every emitted token is therefore the target's own sample: greedy and seeded requests give
//! the tokens they give without speculation, and the output distribution is the target's.
//! For a weightless draft (one token proposed with certainty) this is rejection sampling
//! itself: a draft token is accepted with the target's probability of it.
//!
//! Drafts come from the request's tokens and recent outputs ([`ngram`], [`suffix`]) or from a
//! smaller model ([`draft_model`]); the [`gate`] keeps only the draft tokens that pay for the
//! time they add to a step.

pub mod config;
pub mod draft_model;
pub mod eagle3;
pub mod gate;
pub mod ngram;
pub mod suffix;
pub mod token_index;

use config::{Method, SpeculativeConfig};
use draft_model::DraftModel;
use eagle3::{Eagle3Drafter, EagleState};
use gate::{Acceptance, Gate, Offer};
use suffix::{LocalIndex, SuffixCache};

/// What a request keeps for speculation.
#[derive(Debug, Default)]
pub struct RequestSpeculation {
    local: LocalIndex,
    pub acceptance: Acceptance,
    /// With an EAGLE-3 head: the positions it has not been fed yet, and where its next draft
    /// starts.
    pub eagle: EagleState,
}

/// The engine's speculation: the method, the outputs suffix decoding drafts from, and the
/// gate.
pub struct Speculator {
    config: SpeculativeConfig,
    cache: Option<SuffixCache>,
    /// The draft model, for [`Method::DraftModel`].
    model: Option<DraftModel>,
    /// The draft head, for [`Method::Eagle3`].
    eagle: Option<Eagle3Drafter>,
    gate: Gate,
    /// Acceptance over every request's recent drafts: where a new request's estimate starts.
    recent: Acceptance,
}

impl Speculator {
    pub fn new(config: SpeculativeConfig) -> Self {
        let cache = match &config.method {
            Method::Suffix(settings) => Some(SuffixCache::new(settings.clone())),
            Method::Ngram { .. } | Method::DraftModel { .. } | Method::Eagle3 { .. } => None,
        };
        Self {
            config,
            cache,
            model: None,
            eagle: None,
            gate: Gate::default(),
            recent: Acceptance::default(),
        }
    }

    /// A new request's speculation state: its acceptance starts from the server's recent one,
    /// so where drafts have been failing a new request does not try them at full length.
    pub fn new_request(&self) -> RequestSpeculation {
        RequestSpeculation {
            local: LocalIndex::default(),
            acceptance: self.recent.fresh(),
            eagle: EagleState::default(),
        }
    }

    /// Records a verification in the server's recent acceptance.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        self.recent.record(drafted, accepted);
    }

    /// The loaded draft model of a [`Method::DraftModel`] configuration.
    pub fn with_model(mut self, model: DraftModel) -> Self {
        self.model = Some(model);
        self
    }

    /// The draft model, when drafts come from one (proposed in a batch, not by
    /// [`Self::propose`]).
    pub fn draft_model(&self) -> Option<&DraftModel> {
        self.model.as_ref()
    }

    /// The loaded head of a [`Method::Eagle3`] configuration.
    pub fn with_eagle3(mut self, drafter: Eagle3Drafter) -> Self {
        self.eagle = Some(drafter);
        self
    }

    /// The EAGLE-3 head, when drafts come from one (proposed in a batch).
    pub fn eagle3(&self) -> Option<&Eagle3Drafter> {
        self.eagle.as_ref()
    }

    pub fn config(&self) -> &SpeculativeConfig {
        &self.config
    }

    /// Whether a step with `decoding` sequences may carry drafts at all.
    pub fn allowed_at(&self, decoding: usize) -> bool {
        self.config
            .disable_by_batch_size
            .is_none_or(|limit| decoding < limit)
    }

    /// Up to `k` draft tokens after `tokens` (a request's prompt and output so far).
    pub fn propose(&self, tokens: &[u32], state: &mut RequestSpeculation, k: usize) -> Vec<u32> {
        let k = k.min(self.config.num_speculative_tokens);
        if k == 0 {
            return Vec::new();
        }
        match (&self.config.method, &self.cache) {
            (Method::Ngram { min, max }, _) => ngram::propose(tokens, *min, *max, k),
            (Method::Suffix(_), Some(cache)) => cache.propose(&mut state.local, tokens, k),
            (Method::Suffix(_), None) | (Method::DraftModel { .. } | Method::Eagle3 { .. }, _) => {
                Vec::new()
            }
        }
    }

    /// Trims the drafts of a step with `decoding` sequences to what pays (see [`gate`]).
    pub fn choose(&self, decoding: usize, offers: &mut [Offer<'_>]) {
        self.gate.choose(decoding, offers);
    }

    /// Records how long a step of `tokens` decode and draft tokens took.
    pub fn observe_step(&mut self, tokens: usize, seconds: f64) {
        self.gate.observe(tokens, seconds);
    }

    /// A request finished with `output`: suffix decoding keeps it for later requests.
    pub fn finished(&mut self, output: &[u32]) {
        if let Some(cache) = &mut self.cache {
            cache.add_output(output);
        }
    }
}
