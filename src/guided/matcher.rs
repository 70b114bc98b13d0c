//! The server-wide grammar compiler and the per-request matcher.

use std::sync::Arc;
use std::time::Instant;

use llguidance::api::{ParserLimits, StopReason as LlgStop};
use llguidance::toktrie::TokEnv;
use llguidance::{Matcher, ParserFactory};

use super::grammar::top_level_grammar;
use super::spec::GuidedDecoding;
use super::vocab::VocabEnv;
use crate::error::{Error, RequestPart, Result};
use crate::sampling::TokenMask;
use crate::tokenizer::Tokenizer;

/// Compiles request constraints against one tokenizer. Built once per server: the byte trie
/// and llguidance's token-class slices over the whole vocabulary are the expensive part, and
/// every request shares them.
pub struct GuidedFactory {
    factory: ParserFactory,
    vocab_size: usize,
}

impl std::fmt::Debug for GuidedFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuidedFactory")
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

impl GuidedFactory {
    /// The factory for a model with `vocab_size` logits whose generation ends at `eos_ids`
    /// (the grammar allows these once its output is complete).
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize, eos_ids: &[u32]) -> Result<Self> {
        Self::with_limits(tokenizer, vocab_size, eos_ids, ParserLimits::default())
    }

    /// [`Self::new`] with llguidance's work limits (grammar size, lexer states, per-step
    /// fuel) set to `limits` instead of its defaults. A request whose mask would exceed the
    /// per-step limits fails with an error rather than stalling the batch.
    pub fn with_limits(
        tokenizer: &Tokenizer,
        vocab_size: usize,
        eos_ids: &[u32],
        limits: ParserLimits,
    ) -> Result<Self> {
        let start = Instant::now();
        let env: TokEnv = Arc::new(VocabEnv::new(tokenizer, vocab_size, eos_ids)?);
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| Error::Internal(format!("guided decoding: {e}")))?;
        // Warnings go to the request's error or our log, never to stderr.
        factory.quiet();
        *factory.limits_mut() = limits;
        tracing::debug!(
            ms = start.elapsed().as_secs_f64() * 1e3,
            vocab = vocab_size,
            "guided decoding: token trie and parser factory built"
        );
        Ok(GuidedFactory {
            factory,
            vocab_size,
        })
    }

    /// The grammar engine's view of the tokenizer.
    pub fn tok_env(&self) -> &TokEnv {
        self.factory.tok_env()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// A fresh matcher for `spec`. A schema or grammar that does not compile is the client's
    /// error: `InvalidRequest` about the [`RequestPart::OutputConstraint`] (the API names its
    /// field: a response format, or the tools a forced call's grammar came from), with
    /// llguidance's explanation. The first mask is computed here too: a grammar whose very
    /// first step exceeds llguidance's per-step limits (an object with hundreds of optional
    /// properties) is refused now, as the client's error, instead of failing on the engine
    /// thread; the mask is kept for the first step.
    pub fn compile(&self, spec: &GuidedDecoding) -> Result<GuidedMatcher> {
        let part = RequestPart::OutputConstraint;
        let invalid = |e: String| Error::invalid(part, format!("invalid {}: {e}", what(spec)));
        let grammar = top_level_grammar(spec).map_err(invalid)?;
        // llguidance reports bad input as errors; a panic on some odd input must still not
        // take the caller down.
        let parser = llguidance::panic_utils::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.factory.create_parser(grammar)
        }))
        .map_err(|e| invalid(format!("{e:#}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(invalid(e));
        }
        let mut guided = GuidedMatcher {
            matcher,
            vocab_size: self.vocab_size,
            first_mask: None,
        };
        let first = guided.compute_mask().and_then(|mask| {
            guided.probe(&mask)?;
            Ok(mask)
        });
        let first = first.map_err(|e| {
            Error::invalid(
                part,
                format!(
                    "the {} is too complex for the grammar engine: its first steps fail ({}). \
                     An object with hundreds of optional properties, or a long anyOf or \
                     enum, branches too widely: mark properties required, split the object \
                     into nested objects, or shorten the list",
                    what(spec),
                    e.lines().next().unwrap_or_default()
                ),
            )
        })?;
        guided.first_mask = Some(first);
        Ok(guided)
    }
}

fn what(spec: &GuidedDecoding) -> &'static str {
    match spec {
        GuidedDecoding::JsonObject | GuidedDecoding::JsonSchema(_) => "JSON schema",
        GuidedDecoding::Lark(_) => "grammar",
    }
}

/// One request's position in its grammar.
pub struct GuidedMatcher {
    matcher: Matcher,
    vocab_size: usize,
    /// The mask for the first step, computed at compile time (see
    /// [`GuidedFactory::compile`]).
    first_mask: Option<TokenMask>,
}

impl std::fmt::Debug for GuidedMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuidedMatcher")
            .field("stop_reason", &self.matcher.stop_reason())
            .finish()
    }
}

impl GuidedMatcher {
    /// The tokens that may come next: those that keep the output a prefix of the grammar's
    /// language, plus EOS once the output is complete. Fails if the matcher has failed (an
    /// internal limit, or no token can continue), which should end the request.
    pub fn next_mask(&mut self) -> std::result::Result<TokenMask, String> {
        match self.first_mask.take() {
            Some(mask) => Ok(mask),
            None => self.compute_mask(),
        }
    }

    fn compute_mask(&mut self) -> std::result::Result<TokenMask, String> {
        let vob = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| format!("{e:#}"))?;
        let mask = TokenMask::from_words(vob.as_slice().to_vec(), self.vocab_size);
        if mask.count() == 0 {
            return Err("the grammar allows no token here".into());
        }
        Ok(mask)
    }

    /// Walks a fork a few tokens into the output (each time the lowest allowed token, which
    /// for JSON is the bare `{`, `"`, ... byte) computing each mask: the widest choices of an
    /// object come right after its opening brace, where a schema's first object would
    /// otherwise fail on the engine thread.
    fn probe(&self, first: &TokenMask) -> std::result::Result<(), String> {
        const PROBE_STEPS: usize = 3;
        let mut fork = self.fork();
        let mut mask = first.clone();
        for _ in 0..PROBE_STEPS {
            let Some(&token) = mask.ids().first() else {
                return Ok(());
            };
            if fork.commit(token)? {
                return Ok(());
            }
            mask = fork.compute_mask()?;
        }
        Ok(())
    }

    /// An independent copy at the same position, with its own lexer caches (so the choices of
    /// one request compute their masks in parallel without sharing a lock): a request with `n`
    /// choices compiles its grammar once.
    pub fn fork(&self) -> Self {
        Self {
            matcher: self.matcher.deep_clone(),
            vocab_size: self.vocab_size,
            first_mask: self.first_mask.clone(),
        }
    }

    /// Advances past a sampled token. Returns whether the output is now complete, i.e. the
    /// grammar allows nothing but EOS (or EOS was just consumed); the request should end there.
    pub fn commit(&mut self, token: u32) -> std::result::Result<bool, String> {
        self.first_mask = None;
        self.matcher
            .consume_token(token)
            .map_err(|e| format!("{e:#}"))?;
        Ok(self.is_complete())
    }

    /// Whether the output is complete (see [`Self::commit`]).
    pub fn is_complete(&self) -> bool {
        matches!(
            self.matcher.stop_reason(),
            LlgStop::NoExtension | LlgStop::NoExtensionBias | LlgStop::EndOfSentence
        )
    }

    /// Whether `token` may come next, without advancing (for tests and diagnostics).
    pub fn allows(&mut self, token: u32) -> bool {
        self.matcher.validate_tokens(&[token]).unwrap_or(0) == 1
    }

    /// The bytes the grammar engine sees for `tokens` (special tokens written as their name).
    pub fn decode(&self, tokens: &[u32]) -> Vec<u8> {
        match self.matcher.tok_env() {
            Ok(env) => env.tok_trie().decode(tokens),
            Err(_) => Vec::new(),
        }
    }
}
