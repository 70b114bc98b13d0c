//! Suffix decoding (vLLM's `suffix` method): drafts from the longest match of the context's
//! suffix in the request's own prompt and output, and in the outputs of recent requests —
//! so agent loops that repeat code, tool calls and file contents draft from what the server
//! has already seen.

use super::config::SuffixSettings;
use super::token_index::{Draft, DraftLimits, TokenIndex};
use std::collections::VecDeque;

/// Tokens of finished outputs kept beside `max_cached_requests`: the index costs a few bytes
/// a token, so this bounds it (tens of MiB) whatever the outputs' lengths.
const MAX_CACHED_TOKENS: usize = 1 << 20;

/// The outputs of recent requests.
pub struct SuffixCache {
    settings: SuffixSettings,
    outputs: TokenIndex,
    /// Each cached output's length in `outputs` (with its separator), oldest first.
    lengths: VecDeque<usize>,
}

/// A request's own tokens, indexed as they come.
#[derive(Debug, Default)]
pub struct LocalIndex {
    index: TokenIndex,
}

impl LocalIndex {
    /// Indexes the tokens of `tokens` not yet seen (they only ever grow at the end, except
    /// after a preemption, which keeps them).
    fn catch_up(&mut self, tokens: &[u32]) {
        let seen = self.index.len().min(tokens.len());
        self.index.extend(&tokens[seen..]);
    }
}

impl SuffixCache {
    pub fn new(settings: SuffixSettings) -> Self {
        Self {
            settings,
            outputs: TokenIndex::default(),
            lengths: VecDeque::new(),
        }
    }

    /// Up to `k` draft tokens for a request whose tokens so far are `tokens`: the likelier of
    /// the drafts its own tokens and the cached outputs give.
    pub fn propose(&self, local: &mut LocalIndex, tokens: &[u32], k: usize) -> Vec<u32> {
        local.catch_up(tokens);
        let limits = DraftLimits {
            max_match: self.settings.max_tree_depth,
            max_tokens: k,
            spec_factor: self.settings.max_spec_factor,
            min_prob: self.settings.min_token_prob,
        };
        let own = local.index.draft(tokens, limits);
        let cached = self.outputs.draft(tokens, limits);
        let Draft { tokens, .. } = if cached.expected > own.expected {
            cached
        } else {
            own
        };
        tokens
    }

    /// Keeps a finished request's output for later requests, dropping the oldest outputs
    /// beyond the limits (a quarter of them at once, so the re-index is paid rarely).
    pub fn add_output(&mut self, output: &[u32]) {
        if self.settings.max_cached_requests == 0 || output.len() < 2 {
            return;
        }
        let output = &output[output.len().saturating_sub(MAX_CACHED_TOKENS / 4)..];
        self.outputs.push_document(output);
        self.lengths.push_back(output.len() + 1);
        let over = |c: &Self, requests: usize, tokens: usize| {
            c.lengths.len() > requests || c.outputs.len() > tokens
        };
        if !over(self, self.settings.max_cached_requests, MAX_CACHED_TOKENS) {
            return;
        }
        let keep_requests = self.settings.max_cached_requests * 3 / 4;
        let mut dropped = 0;
        while over(self, keep_requests, MAX_CACHED_TOKENS * 3 / 4) {
            match self.lengths.pop_front() {
                Some(len) => dropped += len,
                None => break,
            }
        }
        self.outputs.keep_from(dropped);
    }

    /// Cached outputs (for tests and logs).
    pub fn cached_requests(&self) -> usize {
        self.lengths.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_cached_requests: usize) -> SuffixSettings {
        SuffixSettings {
            max_tree_depth: 24,
            max_cached_requests,
            max_spec_factor: 1.0,
            min_token_prob: 0.1,
        }
    }

    #[test]
    fn drafts_from_the_request_itself_and_from_earlier_outputs() {
        let mut cache = SuffixCache::new(settings(10));
        let mut local = LocalIndex::default();
        // Nothing seen yet.
        assert!(cache.propose(&mut local, &[1, 2, 3], 4).is_empty());
        // An earlier request wrote "1 2 3 4 5 6".
        cache.add_output(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(cache.propose(&mut local, &[1, 2, 3], 4), vec![4, 5, 6]);
        // The request's own repetition: "7 8 9" follows "5 5" in its prompt.
        let mut local = LocalIndex::default();
        let own = [5, 5, 7, 8, 9, 1, 5, 5];
        assert_eq!(cache.propose(&mut local, &own, 3), vec![7, 8]);
    }

    #[test]
    fn the_local_index_keeps_up_with_a_growing_request() {
        let cache = SuffixCache::new(settings(10));
        let mut local = LocalIndex::default();
        let mut tokens = vec![10, 11, 12, 13];
        assert!(cache.propose(&mut local, &tokens, 3).is_empty());
        tokens.extend([10, 11]);
        assert_eq!(cache.propose(&mut local, &tokens, 3), vec![12, 13]);
    }

    #[test]
    fn the_oldest_outputs_go_first_beyond_the_limit() {
        let mut cache = SuffixCache::new(settings(4));
        for k in 0..5u32 {
            cache.add_output(&[1, 2, 100 + k]);
        }
        // Over 4: down to 3 (the oldest two dropped).
        assert_eq!(cache.cached_requests(), 3);
        let mut local = LocalIndex::default();
        // 102, 103, 104 remain: one each, the most recent wins.
        assert_eq!(cache.propose(&mut local, &[1, 2], 1), vec![104]);
        let mut off = SuffixCache::new(settings(0));
        off.add_output(&[1, 2, 3]);
        assert_eq!(off.cached_requests(), 0);
    }
}
