//! `--speculative-config`: vLLM's `SpeculativeConfig` JSON, its field names and defaults.

use serde::Deserialize;

/// Where draft tokens come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Prompt lookup: the tokens that followed the latest earlier occurrence of the context's
    /// last `min..=max` tokens.
    Ngram { min: usize, max: usize },
    /// Suffix decoding: the most frequent continuation of the context's longest matching
    /// suffix, in this request and in the outputs of recent requests.
    Suffix(SuffixSettings),
    /// A smaller checkpoint with the same tokenizer (a directory, GGUF file or hub id), its
    /// greedy tokens.
    DraftModel { model: String },
    /// An EAGLE-3 head (a directory or hub id in the published layout) reading the served
    /// model's hidden states, its greedy tokens.
    Eagle3 { model: String },
}

/// vLLM's `suffix_decoding_*` fields.
#[derive(Debug, Clone, PartialEq)]
pub struct SuffixSettings {
    /// The longest context suffix matched (and the most a pattern plus its draft spans).
    pub max_tree_depth: usize,
    /// Finished requests whose outputs are kept for later requests to draft from.
    pub max_cached_requests: usize,
    /// A draft is at most this many times as long as the matched suffix.
    pub max_spec_factor: f64,
    /// A draft stops where its estimated probability falls below this.
    pub min_token_prob: f64,
}

/// The parsed flag.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeculativeConfig {
    pub method: Method,
    /// The most draft tokens a sequence carries into one step.
    pub num_speculative_tokens: usize,
    /// No drafts while this many sequences or more are running (vLLM's field; none: no limit).
    pub disable_by_batch_size: Option<usize>,
    /// A measuring aid, not for serving: every draft is verified and rejected, so a benchmark
    /// sees what drafts cost when none is ever right (tealight's own field).
    pub reject_all_drafts: bool,
}

/// The fields as the JSON spells them (vLLM's). Unknown fields are refused, so a misspelt
/// one is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    method: Option<String>,
    model: Option<String>,
    num_speculative_tokens: Option<usize>,
    prompt_lookup_max: Option<usize>,
    prompt_lookup_min: Option<usize>,
    disable_by_batch_size: Option<usize>,
    draft_tensor_parallel_size: Option<usize>,
    suffix_decoding_max_tree_depth: Option<usize>,
    suffix_decoding_max_cached_requests: Option<usize>,
    suffix_decoding_max_spec_factor: Option<f64>,
    suffix_decoding_min_token_prob: Option<f64>,
    #[serde(rename = "tealight_reject_all_drafts")]
    reject_all_drafts: Option<bool>,
}

/// Methods vLLM has that need weights this server does not load yet.
const MODEL_METHODS: [&str; 5] = ["eagle", "mtp", "medusa", "mlp_speculator", "qwen3_next_mtp"];

/// The most draft tokens a step may carry for one sequence.
pub const MAX_SPECULATIVE_TOKENS: usize = 32;

impl SpeculativeConfig {
    pub fn parse(json: &str) -> Result<Self, String> {
        let raw: Raw =
            serde_json::from_str(json).map_err(|e| format!("--speculative-config: {e}"))?;
        let fail = |why: String| Err(format!("--speculative-config: {why}"));
        if let Some(tp) = raw.draft_tensor_parallel_size.filter(|&tp| tp != 1) {
            return fail(format!(
                "draft_tensor_parallel_size {tp}: this server runs on one device"
            ));
        }
        // vLLM names n-gram speculation by `model` too ("ngram" or "[ngram]").
        let named = raw.method.as_deref().or(match raw.model.as_deref() {
            Some(m @ ("ngram" | "[ngram]")) => Some(m),
            _ => None,
        });
        let method = match named {
            Some("ngram" | "[ngram]") => {
                let (min, max) = match (raw.prompt_lookup_min, raw.prompt_lookup_max) {
                    (None, None) => (5, 5),
                    (Some(min), None) => (min, min),
                    (None, Some(max)) => (max, max),
                    (Some(min), Some(max)) => (min, max),
                };
                if min == 0 || max < min {
                    return fail(format!(
                        "prompt_lookup_min {min} and prompt_lookup_max {max}: need 1 <= min <= max"
                    ));
                }
                Method::Ngram { min, max }
            }
            Some("suffix") => {
                let settings = SuffixSettings {
                    max_tree_depth: raw.suffix_decoding_max_tree_depth.unwrap_or(24),
                    max_cached_requests: raw.suffix_decoding_max_cached_requests.unwrap_or(10_000),
                    max_spec_factor: raw.suffix_decoding_max_spec_factor.unwrap_or(1.0),
                    min_token_prob: raw.suffix_decoding_min_token_prob.unwrap_or(0.1),
                };
                if !(2..=1024).contains(&settings.max_tree_depth) {
                    return fail(format!(
                        "suffix_decoding_max_tree_depth {}: must be 2 to 1024",
                        settings.max_tree_depth
                    ));
                }
                if !(settings.max_spec_factor > 0.0 && settings.max_spec_factor.is_finite()) {
                    return fail("suffix_decoding_max_spec_factor must be positive".into());
                }
                if !(0.0..=1.0).contains(&settings.min_token_prob) {
                    return fail("suffix_decoding_min_token_prob must be between 0 and 1".into());
                }
                Method::Suffix(settings)
            }
            // vLLM infers the draft-model method from a `model` path without a method.
            Some("draft_model") | None if raw.model.is_some() => Method::DraftModel {
                model: raw.model.clone().unwrap_or_default(),
            },
            Some("draft_model") => return fail("method \"draft_model\" needs \"model\"".into()),
            Some("eagle3") => match raw.model.clone() {
                Some(model) => Method::Eagle3 { model },
                None => return fail("method \"eagle3\" needs \"model\" (the head)".into()),
            },
            Some(m) if MODEL_METHODS.contains(&m) => {
                return fail(format!(
                    "method {m:?} needs draft heads this server does not load; \"ngram\", \
                     \"suffix\", \"draft_model\" and \"eagle3\" are available"
                ));
            }
            Some(m) => {
                return fail(format!(
                    "unknown method {m:?}; the available ones are \"ngram\", \"suffix\", \
                     \"draft_model\" and \"eagle3\""
                ));
            }
            None => {
                return fail(
                    "\"method\" is required (\"ngram\", \"suffix\" or \"draft_model\" with \
                     \"model\")"
                        .into(),
                );
            }
        };
        let num_speculative_tokens = match (&method, raw.num_speculative_tokens) {
            (_, Some(k)) => k,
            // vLLM's suffix default: as deep as the tree.
            (Method::Suffix(s), None) => s.max_tree_depth.min(MAX_SPECULATIVE_TOKENS),
            (Method::Ngram { .. } | Method::DraftModel { .. } | Method::Eagle3 { .. }, None) => {
                return fail("\"num_speculative_tokens\" is required".into());
            }
        };
        if !(1..=MAX_SPECULATIVE_TOKENS).contains(&num_speculative_tokens) {
            return fail(format!(
                "num_speculative_tokens {num_speculative_tokens}: must be 1 to {MAX_SPECULATIVE_TOKENS}"
            ));
        }
        if raw.disable_by_batch_size == Some(0) {
            return fail("disable_by_batch_size must be at least 1".into());
        }
        Ok(Self {
            method,
            num_speculative_tokens,
            disable_by_batch_size: raw.disable_by_batch_size,
            reject_all_drafts: raw.reject_all_drafts.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngram_takes_vllm_defaults_and_fields() {
        let c =
            SpeculativeConfig::parse(r#"{"method":"ngram","num_speculative_tokens":4}"#).unwrap();
        assert_eq!(c.method, Method::Ngram { min: 5, max: 5 });
        assert_eq!(c.num_speculative_tokens, 4);
        let c = SpeculativeConfig::parse(
            r#"{"model":"[ngram]","num_speculative_tokens":3,"prompt_lookup_max":4,
                "disable_by_batch_size":8}"#,
        )
        .unwrap();
        assert_eq!(c.method, Method::Ngram { min: 4, max: 4 });
        assert_eq!(c.disable_by_batch_size, Some(8));
        assert!(!c.reject_all_drafts);
        let c = SpeculativeConfig::parse(
            r#"{"method":"ngram","num_speculative_tokens":2,"tealight_reject_all_drafts":true}"#,
        )
        .unwrap();
        assert!(c.reject_all_drafts);
        let c = SpeculativeConfig::parse(
            r#"{"method":"ngram","num_speculative_tokens":3,"prompt_lookup_min":2,"prompt_lookup_max":5}"#,
        )
        .unwrap();
        assert_eq!(c.method, Method::Ngram { min: 2, max: 5 });
    }

    #[test]
    fn a_model_path_means_a_draft_model() {
        for json in [
            r#"{"model":"./Qwen3-0.6B","num_speculative_tokens":3}"#,
            r#"{"method":"draft_model","model":"./Qwen3-0.6B","num_speculative_tokens":3}"#,
        ] {
            let c = SpeculativeConfig::parse(json).unwrap();
            assert_eq!(
                c.method,
                Method::DraftModel {
                    model: "./Qwen3-0.6B".into()
                }
            );
        }
    }

    #[test]
    fn eagle3_names_its_head() {
        let c = SpeculativeConfig::parse(
            r#"{"method":"eagle3","model":"AngelSlim/Qwen3-8B_eagle3","num_speculative_tokens":3}"#,
        )
        .unwrap();
        assert_eq!(
            c.method,
            Method::Eagle3 {
                model: "AngelSlim/Qwen3-8B_eagle3".into()
            }
        );
    }

    #[test]
    fn suffix_defaults_follow_vllm() {
        let c = SpeculativeConfig::parse(r#"{"method":"suffix"}"#).unwrap();
        assert_eq!(c.num_speculative_tokens, 24);
        let Method::Suffix(s) = c.method else {
            panic!("suffix expected")
        };
        assert_eq!(
            (
                s.max_tree_depth,
                s.max_cached_requests,
                s.max_spec_factor,
                s.min_token_prob
            ),
            (24, 10_000, 1.0, 0.1)
        );
    }

    #[test]
    fn refusals_say_why() {
        let err = |j: &str| SpeculativeConfig::parse(j).unwrap_err();
        assert!(
            err(r#"{"method":"eagle","model":"x","num_speculative_tokens":3}"#)
                .contains("draft heads")
        );
        assert!(err(r#"{"method":"eagle3","num_speculative_tokens":3}"#).contains("needs"));
        assert!(err(r#"{"method":"eagle3","model":"x"}"#).contains("num_speculative_tokens"));
        assert!(err(r#"{"method":"draft_model","num_speculative_tokens":3}"#).contains("needs"));
        assert!(err(r#"{"model":"Qwen/Qwen3-0.6B"}"#).contains("num_speculative_tokens"));
        assert!(err(r#"{"method":"ngram"}"#).contains("num_speculative_tokens"));
        assert!(err(r#"{"method":"ngram","num_speculative_tokens":0}"#).contains("1 to"));
        assert!(err(r#"{"method":"ngram","num_speculative_tokens":3,"prompt_lookup_min":4,"prompt_lookup_max":2}"#)
            .contains("min <= max"));
        assert!(
            err(r#"{"method":"ngram","num_speculative_tokens":3,"typo":1}"#)
                .contains("unknown field")
        );
        assert!(err(r#"{"method":"magic","num_speculative_tokens":3}"#).contains("unknown method"));
        assert!(
            err(r#"{"method":"suffix","suffix_decoding_min_token_prob":2}"#)
                .contains("between 0 and 1")
        );
        assert!(err("[1]").contains("--speculative-config"));
    }
}
