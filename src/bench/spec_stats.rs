//! Speculative decoding's acceptance over a run, from the server's `/metrics` before and after
//! it (vLLM's `spec_decode_*` counters, under `tealight:` or else `vllm:` — a tealight server
//! with `--metrics-compat vllm` has both, counted once), reported as `vllm bench serve` reports
//! it. Servers that do not speculate report nothing here.

use serde_json::{Value, json};

/// The counters at one moment, or what changed over a run ([`SpecCounters::until`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpecCounters {
    pub drafts: f64,
    pub draft_tokens: f64,
    pub accepted_tokens: f64,
}

impl SpecCounters {
    /// Reads the counters from a Prometheus text page: `tealight:`'s if it has them, else
    /// `vllm:`'s; `None` when the page has neither.
    pub fn parse(page: &str) -> Option<Self> {
        Self::parse_prefix(page, "tealight:").or_else(|| Self::parse_prefix(page, "vllm:"))
    }

    fn parse_prefix(page: &str, prefix: &str) -> Option<Self> {
        let mut found = false;
        let mut c = Self::default();
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let name = name.split('{').next().unwrap_or(name);
            let Some(metric) = name.strip_prefix(prefix) else {
                continue;
            };
            let slot = match metric.trim_end_matches("_total") {
                "spec_decode_num_drafts" => &mut c.drafts,
                "spec_decode_num_draft_tokens" => &mut c.draft_tokens,
                "spec_decode_num_accepted_tokens" => &mut c.accepted_tokens,
                _ => continue,
            };
            // Per-engine label sets add up.
            *slot += value;
            found = true;
        }
        found.then_some(c)
    }

    /// What happened between `self` and `later`; `None` when nothing was drafted.
    pub fn until(&self, later: &Self) -> Option<Self> {
        let stats = Self {
            drafts: later.drafts - self.drafts,
            draft_tokens: later.draft_tokens - self.draft_tokens,
            accepted_tokens: later.accepted_tokens - self.accepted_tokens,
        };
        (stats.drafts > 0.0 && stats.draft_tokens > 0.0).then_some(stats)
    }

    /// Accepted draft tokens over draft tokens.
    pub fn acceptance_rate(&self) -> f64 {
        self.accepted_tokens / self.draft_tokens
    }

    /// Tokens a verifying step yields on average: its own and the accepted drafts.
    pub fn acceptance_length(&self) -> f64 {
        1.0 + self.accepted_tokens / self.drafts
    }

    pub fn to_json(&self) -> Value {
        json!({
            "spec_decode_acceptance_rate": self.acceptance_rate() * 100.0,
            "spec_decode_acceptance_length": self.acceptance_length(),
            "spec_decode_num_drafts": self.drafts,
            "spec_decode_draft_tokens": self.draft_tokens,
            "spec_decode_accepted_tokens": self.accepted_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_either_prefix_and_sums_label_sets() {
        let before = SpecCounters::parse(
            "# HELP x\ntealight:spec_decode_num_drafts_total 10\n\
             tealight:spec_decode_num_draft_tokens_total 40\n\
             tealight:spec_decode_num_accepted_tokens_total 20\n\
             tealight:spec_decode_num_accepted_tokens_per_pos_total{position=\"0\"} 9\n",
        )
        .unwrap();
        let after = SpecCounters::parse(
            "vllm:spec_decode_num_drafts_total{engine=\"0\"} 20\n\
             vllm:spec_decode_num_drafts_total{engine=\"1\"} 10\n\
             vllm:spec_decode_num_draft_tokens_total{engine=\"0\"} 120\n\
             vllm:spec_decode_num_accepted_tokens_total{engine=\"0\"} 50\n",
        )
        .unwrap();
        let s = before.until(&after).unwrap();
        assert_eq!(s.draft_tokens, 80.0);
        assert!((s.acceptance_rate() - 30.0 / 80.0).abs() < 1e-12);
        assert!((s.acceptance_length() - (1.0 + 30.0 / 20.0)).abs() < 1e-12);
        assert_eq!(s.to_json()["spec_decode_acceptance_rate"], json!(37.5));
    }

    #[test]
    fn a_page_with_both_names_is_counted_once() {
        let page = "tealight:spec_decode_num_drafts_total 4\n\
                    tealight:spec_decode_num_draft_tokens_total 8\n\
                    vllm:spec_decode_num_drafts_total{model_name=\"m\"} 4\n\
                    vllm:spec_decode_num_draft_tokens_total{model_name=\"m\"} 8\n";
        let c = SpecCounters::parse(page).unwrap();
        assert_eq!((c.drafts, c.draft_tokens), (4.0, 8.0));
    }

    #[test]
    fn nothing_without_counters_or_drafts() {
        assert_eq!(
            SpecCounters::parse("tealight:prompt_tokens_total 5\n"),
            None
        );
        let c = SpecCounters::parse("vllm:spec_decode_num_drafts_total 3\n").unwrap();
        assert_eq!(c.until(&c), None);
    }
}
