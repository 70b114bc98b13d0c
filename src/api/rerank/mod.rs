//! Scoring query–document pairs with a reranker read as Qwen3-Reranker is (its model card's
//! rule): the pair "<Instruct>: …\n<Query>: …\n<Document>: …" between the card's system
//! prefix and assistant suffix, tokenized piece by piece as the card does, runs as a
//! prefill-only request for the `no` and `yes` logits at its last position; the relevance is
//! the softmax of the two, taken at `yes`. Two routes speak it: [`jina`] (`/v1/rerank`, the
//! Jina/Cohere shape vLLM uses) and [`score`] (vLLM's `/v1/score`).

pub mod jina;
pub mod score;

use std::sync::Arc;

use super::blocking_pool;
use super::error::{ApiError, ApiResult};
use super::field_names::{FieldNames, Named};
use super::pooled;
use super::prompt_length;
use super::state::{Ready, ServerConfig};
use super::task::RerankSpec;
use crate::engine::{CheckedRequest, GenerationRequest, Pooling};

const PREFIX: &str = "<|im_start|>system\nJudge whether the Document meets the requirements \
                      based on the Query and the Instruct provided. Note that the answer can \
                      only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
const SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
/// The card's instruction when the request gives none.
pub const DEFAULT_INSTRUCTION: &str =
    "Given a web search query, retrieve relevant passages that answer the query";

/// One pair's relevance in [0, 1] and the tokens its prompt took.
pub struct Scored {
    pub score: f64,
    pub tokens: usize,
}

/// Scores every (query, document) pair, in order. `names.prompt` is the field documents come
/// from, for errors about their length.
pub async fn score_pairs(
    ready: &Arc<Ready>,
    config: &ServerConfig,
    spec: RerankSpec,
    pairs: Vec<(String, String)>,
    instruction: Option<String>,
    names: FieldNames,
) -> ApiResult<Vec<Scored>> {
    check_expanded_size(&pairs, instruction.as_deref(), config, names)?;
    let requests = {
        let ready = ready.clone();
        blocking_pool::run(move || requests(&ready, spec, &pairs, instruction.as_deref(), names))
            .await??
    };
    let pooled = pooled::run(ready, requests, config.limits.max_choices).await?;
    Ok(pooled
        .into_iter()
        .map(|(logits, tokens)| Scored {
            score: relevance(&logits),
            tokens,
        })
        .collect())
}

/// Every pair repeats the query (and the instruction): a short body can expand to far more
/// text than it carries. The pairs' text may not exceed what one body may hold
/// (`--max-request-body-bytes`), so tokenizing them costs no more than any request's body.
fn check_expanded_size(
    pairs: &[(String, String)],
    instruction: Option<&str>,
    config: &ServerConfig,
    names: FieldNames,
) -> ApiResult<()> {
    let fixed = instruction.map_or(DEFAULT_INSTRUCTION.len(), str::len);
    let bytes = pairs
        .iter()
        .map(|(q, d)| fixed.saturating_add(q.len()).saturating_add(d.len()))
        .fold(0usize, usize::saturating_add);
    let limit = config.limits.max_body_bytes;
    if bytes > limit {
        return Err(ApiError::invalid(
            names.prompt,
            format!(
                "the {} pairs to score hold {bytes} bytes of text (the query and instruction \
                 repeat in each), more than one request may carry ({limit} bytes, \
                 --max-request-body-bytes); send fewer documents or a shorter query",
                pairs.len()
            ),
        ));
    }
    Ok(())
}

/// The prefill-only requests for `pairs` (blocking work: tokenizing).
fn requests(
    ready: &Ready,
    spec: RerankSpec,
    pairs: &[(String, String)],
    instruction: Option<&str>,
    names: FieldNames,
) -> ApiResult<Vec<CheckedRequest>> {
    let tokenizer = &ready.tokenizer;
    let prefix = tokenizer.encode(PREFIX, false)?;
    let suffix = tokenizer.encode(SUFFIX, false)?;
    let instruction = instruction.unwrap_or(DEFAULT_INSTRUCTION);
    pairs
        .iter()
        .map(|(query, document)| {
            let text =
                format!("<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}");
            prompt_length::check_text_fits(tokenizer, &text, ready.max_model_len(), names.prompt)?;
            let mut ids = prefix.clone();
            ids.extend(tokenizer.encode(&text, true)?);
            ids.extend_from_slice(&suffix);
            let request =
                GenerationRequest::pooled(ids, Pooling::TokenLogits(vec![spec.no, spec.yes]));
            CheckedRequest::new(request, ready.engine.info()).named(&names)
        })
        .collect()
}

/// softmax([no, yes])[yes], from the two logits in that order.
fn relevance(logits: &[f32]) -> f64 {
    match logits {
        [no, yes] => 1.0 / (1.0 + (f64::from(*no) - f64::from(*yes)).exp()),
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::relevance;

    #[test]
    fn relevance_is_the_softmax_at_yes() {
        assert_eq!(relevance(&[0.0, 0.0]), 0.5);
        let (no, yes) = (1.5f32, -0.25f32);
        let softmax = (yes as f64).exp() / ((no as f64).exp() + (yes as f64).exp());
        assert!((relevance(&[no, yes]) - softmax).abs() < 1e-12);
        // Far apart logits saturate instead of overflowing.
        assert_eq!(relevance(&[1e4, -1e4]), 0.0);
        assert_eq!(relevance(&[-1e4, 1e4]), 1.0);
    }
}
