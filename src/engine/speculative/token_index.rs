//! Where a context's suffix occurred before, and what followed it: the lookup suffix decoding
//! drafts from.
//!
//! A token run is indexed by its adjacent pairs, so the earlier occurrences of a context's
//! last two tokens are found at once and extended backwards to the longest match. Among the
//! occurrences of that longest match, the draft follows the most frequent next token while
//! its estimated probability (the product of each step's share) stays above a floor — the
//! walk a suffix tree's counts give, over an index that costs a few bytes a token.

use std::collections::HashMap;

/// Separates documents in a run: nothing matches across it.
const SEPARATOR: u32 = u32::MAX;
/// The most recent occurrences of a pair that a lookup considers.
const CANDIDATES: usize = 64;

/// A token run with the positions of each adjacent pair.
#[derive(Debug, Default)]
pub struct TokenIndex {
    tokens: Vec<u32>,
    /// Pair → positions of its second token, ascending.
    pairs: HashMap<(u32, u32), Vec<u32>>,
}

/// A draft and how many tokens of it are expected to be accepted (the sum of each prefix's
/// estimated probability).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    pub tokens: Vec<u32>,
    pub expected: f64,
}

/// How a lookup drafts.
#[derive(Debug, Clone, Copy)]
pub struct DraftLimits {
    /// The longest suffix matched.
    pub max_match: usize,
    /// Draft tokens: at most this many ...
    pub max_tokens: usize,
    /// ... and at most this many times the matched length.
    pub spec_factor: f64,
    /// The draft stops where its estimated probability falls below this.
    pub min_prob: f64,
}

impl TokenIndex {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Appends tokens to the run.
    pub fn extend(&mut self, tokens: &[u32]) {
        for &t in tokens {
            if let Some(&prev) = self.tokens.last()
                && prev != SEPARATOR
                && t != SEPARATOR
            {
                let pos = self.tokens.len() as u32;
                self.pairs.entry((prev, t)).or_default().push(pos);
            }
            self.tokens.push(t);
        }
    }

    /// Appends a document: nothing will match across its ends.
    pub fn push_document(&mut self, tokens: &[u32]) {
        self.extend(tokens);
        self.tokens.push(SEPARATOR);
    }

    /// The run from `start` on, re-indexed (dropping what came before).
    pub fn keep_from(&mut self, start: usize) {
        let rest = self.tokens.split_off(start.min(self.tokens.len()));
        *self = Self::default();
        self.extend(&rest);
    }

    /// The draft for `context` from this run. `context` may be the run itself (a request's
    /// own tokens): its own end is never a match.
    pub fn draft(&self, context: &[u32], limits: DraftLimits) -> Draft {
        let n = context.len();
        if n < 2 || limits.max_tokens == 0 {
            return Draft::default();
        }
        let Some(ends) = self.pairs.get(&(context[n - 2], context[n - 1])) else {
            return Draft::default();
        };
        // (matched length, where the continuation starts), most recent first.
        let mut candidates: Vec<(usize, usize)> = Vec::with_capacity(CANDIDATES);
        for &end in ends.iter().rev() {
            let end = end as usize;
            let next = end + 1;
            if next >= self.tokens.len() || self.tokens[next] == SEPARATOR {
                continue; // nothing followed it (or it is the context's own end)
            }
            let matched = (1..=limits.max_match.min(n).min(end + 1))
                .take_while(|&m| self.tokens[end + 1 - m] == context[n - m])
                .count();
            candidates.push((matched, next));
            if candidates.len() == CANDIDATES {
                break;
            }
        }
        let Some(longest) = candidates.iter().map(|&(m, _)| m).max() else {
            return Draft::default();
        };
        let mut starts: Vec<usize> = candidates
            .into_iter()
            .filter(|&(m, _)| m == longest)
            .map(|(_, s)| s)
            .collect();
        let max_tokens =
            ((limits.spec_factor * longest as f64) as usize).clamp(1, limits.max_tokens);
        let mut draft = Draft::default();
        let mut probability = 1.0;
        for step in 0..max_tokens {
            let Some((token, count, total)) = self.most_frequent_next(&starts, step) else {
                break;
            };
            probability *= count as f64 / total as f64;
            if probability < limits.min_prob {
                break;
            }
            draft.tokens.push(token);
            draft.expected += probability;
            starts.retain(|&s| self.at(s + step) == Some(token));
        }
        draft
    }

    /// The token most of `starts` continue with `step` tokens on (the most recent start's on
    /// a tie), its count, and how many continue at all.
    fn most_frequent_next(&self, starts: &[usize], step: usize) -> Option<(u32, usize, usize)> {
        let mut counts: Vec<(u32, usize)> = Vec::new();
        for &s in starts {
            let Some(t) = self.at(s + step) else {
                continue;
            };
            match counts.iter_mut().find(|(c, _)| *c == t) {
                Some((_, n)) => *n += 1,
                None => counts.push((t, 1)),
            }
        }
        let total = counts.iter().map(|&(_, n)| n).sum();
        // `max_by_key` keeps the last maximum; reversed, the first (most recent) one wins.
        let (token, count) = counts.into_iter().rev().max_by_key(|&(_, n)| n)?;
        Some((token, count, total))
    }

    /// The token at `pos`, unless it is past the end or a separator.
    fn at(&self, pos: usize) -> Option<u32> {
        self.tokens.get(pos).copied().filter(|&t| t != SEPARATOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_tokens: usize) -> DraftLimits {
        DraftLimits {
            max_match: 24,
            max_tokens,
            spec_factor: 1.0,
            min_prob: 0.1,
        }
    }

    fn index(docs: &[&[u32]]) -> TokenIndex {
        let mut i = TokenIndex::default();
        for d in docs {
            i.push_document(d);
        }
        i
    }

    #[test]
    fn follows_the_longest_match_and_counts_its_continuations() {
        // "1 2 3" is followed by 4 twice and by 5 once; "9 2 3" by 7.
        let i = index(&[
            &[1, 2, 3, 4, 4],
            &[1, 2, 3, 4, 6],
            &[1, 2, 3, 5],
            &[9, 2, 3, 7],
        ]);
        let d = i.draft(&[0, 1, 2, 3], limits(8));
        // Longest match "1 2 3" (3 tokens, so at most 3 draft tokens): 4 (2/3), then 4 or 6
        // (1/2 each: the most recent, 6, wins the tie; 2/3 · 1/2 = 1/3 ≥ 0.1).
        assert_eq!(d.tokens, vec![4, 6]);
        assert!((d.expected - (2.0 / 3.0 + 1.0 / 3.0)).abs() < 1e-12);
        // The pattern "9 2 3" is longer for a context ending that way.
        assert_eq!(i.draft(&[9, 2, 3], limits(8)).tokens, vec![7]);
    }

    #[test]
    fn the_draft_is_at_most_the_spec_factor_times_the_match() {
        let i = index(&[&[5, 6, 7, 8, 9, 10, 11]]);
        assert_eq!(i.draft(&[5, 6], limits(8)).tokens, vec![7, 8]);
        let mut l = limits(8);
        l.spec_factor = 2.0;
        assert_eq!(i.draft(&[5, 6], l).tokens, vec![7, 8, 9, 10]);
        assert_eq!(i.draft(&[5, 6], limits(1)).tokens, vec![7]);
    }

    #[test]
    fn stops_below_the_probability_floor() {
        let docs: Vec<Vec<u32>> = (0..5).map(|k| vec![1, 2, 100 + k]).collect();
        let refs: Vec<&[u32]> = docs.iter().map(|d| d.as_slice()).collect();
        let i = index(&refs);
        let mut l = limits(4);
        l.min_prob = 0.25; // each continuation has 1/5
        assert!(i.draft(&[1, 2], l).tokens.is_empty());
        l.min_prob = 0.2;
        assert_eq!(i.draft(&[1, 2], l).tokens, vec![104]);
    }

    #[test]
    fn a_requests_own_run_drafts_from_its_earlier_tokens_only() {
        let mut i = TokenIndex::default();
        let tokens = [3, 4, 5, 6, 3, 4];
        i.extend(&tokens);
        assert_eq!(i.draft(&tokens, limits(4)).tokens, vec![5, 6]);
        // The context's own end (and a separator) is never a continuation.
        let i = index(&[&[3, 4]]);
        assert!(i.draft(&[3, 4], limits(4)).tokens.is_empty());
    }

    #[test]
    fn keep_from_drops_the_oldest_documents() {
        let mut i = index(&[&[1, 2, 3], &[1, 2, 4]]);
        assert_eq!(i.draft(&[1, 2], limits(1)).tokens, vec![4]);
        i.keep_from(4);
        assert_eq!(i.len(), 4);
        assert_eq!(i.draft(&[1, 2], limits(1)).tokens, vec![4]);
        i.keep_from(4);
        assert!(i.is_empty());
        assert!(i.draft(&[1, 2], limits(1)).tokens.is_empty());
    }
}
