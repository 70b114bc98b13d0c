//! From validated request fields to checked engine requests: limits, sampling resolution, `n`
//! copies with their seeds, the engine's own rules ([`CheckedRequest`]), and submission.
//!
//! [`build`] is blocking work (the engine's rules read the whole prompt): it runs on the
//! blocking pool in the same trip as the prompt's rendering. Submission then only takes queue
//! slots, so it runs on the async worker.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, OnceLock};

use axum::http::HeaderMap;

use super::error::{ApiError, ApiResult};
use super::field_names::{FieldNames, Named};
use super::grammar::{self, GuidedSpec};
use super::state::{GrammarLimits, Ready, ServerConfig};
use super::types::common::StopSpec;
use crate::engine::{CheckedRequest, EventStream, GenerationRequest, rules};
use crate::error::RequestPart;
use crate::guided::GuidedMatcher;
use crate::sampling::{SamplingOverrides, SamplingParams};

/// The generation fields chat and completions share.
#[derive(Debug, Default)]
pub struct GenerationFields {
    /// The output limit (`max_tokens`, chat's `max_completion_tokens`, ...).
    pub max_tokens: Option<i64>,
    pub min_tokens: Option<i64>,
    pub n: Option<i64>,
    pub stop: Option<StopSpec>,
    pub stop_token_ids: Option<Vec<i64>>,
    pub ignore_eos: Option<bool>,
    pub skip_special_tokens: Option<bool>,
    pub include_stop_str_in_output: Option<bool>,
    pub sampling: SamplingOverrides,
    /// The prefix-cache salt (see [`cache_salt`]).
    pub cache_salt: Option<String>,
}

/// `n` checked engine requests for one prompt; errors name the fields as `names` (the API's
/// table) does.
pub fn build(
    ready: &Ready,
    config: &ServerConfig,
    prompt_ids: Vec<u32>,
    names: &FieldNames,
    fields: GenerationFields,
) -> ApiResult<Vec<CheckedRequest>> {
    let limits = &config.limits;
    let n = fields.n.unwrap_or(1);
    if n < 1 || n as usize > limits.max_n {
        return Err(ApiError::invalid(
            "n",
            format!(
                "n must be between 1 and {} (--max-n), got {n}.",
                limits.max_n
            ),
        ));
    }
    let stop = fields.stop.map(StopSpec::into_vec).unwrap_or_default();
    if stop.len() > limits.max_stop {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "at most {} stop strings are allowed (--max-stop)",
                limits.max_stop
            ),
        ));
    }
    let vocab = ready.vocab_size();
    let stop_token_ids = fields.stop_token_ids.unwrap_or_default();
    if stop_token_ids.len() > limits.max_stop_token_ids {
        return Err(ApiError::invalid(
            "stop_token_ids",
            format!(
                "at most {} stop_token_ids are allowed (--max-stop-token-ids)",
                limits.max_stop_token_ids
            ),
        ));
    }
    let stop_token_ids =
        rules::token_ids(stop_token_ids, vocab, RequestPart::StopTokenIds).named(names)?;
    if let Some(bias) = &fields.sampling.logit_bias
        && bias.len() > limits.max_logit_bias
    {
        return Err(ApiError::invalid(
            "logit_bias",
            format!(
                "logit_bias may hold at most {} entries (--max-logit-bias)",
                limits.max_logit_bias
            ),
        ));
    }

    let prompt_len = prompt_ids.len();
    let max_len = ready.max_model_len();
    rules::prompt_fits(prompt_len, max_len).named(names)?;
    let requested = match fields.max_tokens {
        None => None,
        Some(m) => Some(rules::completion_fits(m, prompt_len, max_len).named(names)?),
    };
    // The served generation config's `max_new_tokens` caps every request (vLLM's rule).
    let max_tokens = rules::cap_output(requested, ready.defaults.max_new_tokens);
    let room = max_len - prompt_len;
    let min_tokens = fields.min_tokens.unwrap_or(0);
    let most = max_tokens.unwrap_or(room);
    if !usize::try_from(min_tokens).is_ok_and(|m| m <= most) {
        return Err(ApiError::invalid(
            "min_tokens",
            format!("min_tokens must be between 0 and max_tokens ({most}), got {min_tokens}."),
        ));
    }

    let mut overrides = fields.sampling;
    if overrides.seed.is_none() {
        overrides.seed = config.default_seed.map(|s| s as i64);
    }
    let base_seed = overrides.seed;
    // Seeded choices of one request must differ from each other but stay reproducible.
    let mut sampling_of = |i: i64| {
        overrides.seed = base_seed.map(|s| if s == -1 { s } else { s.wrapping_add(i) });
        SamplingParams::resolve(&ready.defaults, &overrides, vocab).named(names)
    };
    let mut req = GenerationRequest::new(prompt_ids, sampling_of(0)?);
    req.max_tokens = max_tokens;
    req.min_tokens = min_tokens as usize;
    req.stop = stop;
    req.stop_token_ids = stop_token_ids;
    req.ignore_eos = fields.ignore_eos.unwrap_or(false);
    req.skip_special_tokens = fields.skip_special_tokens.unwrap_or(true);
    req.include_stop_str_in_output = fields.include_stop_str_in_output.unwrap_or(false);
    req.cache_salt = fields.cache_salt;
    // The engine's rules read the whole prompt: once, not once per choice.
    let first = CheckedRequest::new(req, ready.engine.info()).named(names)?;
    let mut requests = Vec::with_capacity(n as usize);
    for i in 1..n {
        requests.push(first.with_sampling(sampling_of(i)?));
    }
    requests.insert(0, first);
    Ok(requests)
}

/// A request's prefix-cache salt: its `cache_salt` (vLLM's field), joined with the API key it
/// presents under `--prefix-cache-salt-per-key`, so that cached prefixes (and the
/// `cached_tokens` that reveal them) are shared only within one key. The key enters as a
/// keyed hash, never as itself.
pub fn cache_salt(
    config: &ServerConfig,
    headers: &HeaderMap,
    requested: Option<String>,
) -> ApiResult<Option<String>> {
    if requested.as_deref() == Some("") {
        return Err(ApiError::invalid(
            "cache_salt",
            "cache_salt must be a non-empty string if provided",
        ));
    }
    let key = config
        .prefix_cache_salt_per_key
        .then(|| super::auth::presented_key(headers))
        .flatten();
    Ok(match key {
        None => requested,
        Some(key) => {
            static KEY_HASHER: OnceLock<RandomState> = OnceLock::new();
            let hashed = KEY_HASHER.get_or_init(RandomState::new).hash_one(key);
            Some(format!(
                "key:{hashed:016x}/{}",
                requested.unwrap_or_default()
            ))
        }
    })
}

/// The engine requests one API request may fan out to (prompts × `n`): each waits in the
/// queue, so one request may not take a large share of `--max-waiting`. Checked before any
/// prompt is tokenized.
pub fn check_fan_out(config: &ServerConfig, prompts: usize, n: Option<i64>) -> ApiResult<()> {
    let limit = config.limits.max_choices;
    let n = n.unwrap_or(1).max(1) as usize;
    let choices = prompts.saturating_mul(n);
    if choices > limit {
        return Err(ApiError::invalid(
            "n",
            format!(
                "this request asks for {choices} choices ({prompts} prompts × n {n}); at most \
                 {limit} choices are allowed per request (--max-choices)"
            ),
        ));
    }
    Ok(())
}

/// A non-streamed response holds every logprob entry at once: `n` × (1 + top alternatives) ×
/// the tokens each choice may generate (plus the prompt's when it is echoed). Beyond
/// `Limits::max_logprob_entries` the request is refused, naming the API's logprobs field;
/// streaming it has no such limit.
pub fn check_collected_logprobs(
    ready: &Ready,
    config: &ServerConfig,
    requests: &[CheckedRequest],
    echo: bool,
    names: &FieldNames,
) -> ApiResult<()> {
    let limit = config.limits.max_logprob_entries;
    let max_len = ready.max_model_len();
    let entries: usize = requests
        .iter()
        .map(CheckedRequest::request)
        .filter_map(|r| {
            let top = r.sampling.logprobs?;
            let room = max_len.saturating_sub(r.prompt_ids.len());
            let generated = r.max_tokens.unwrap_or(room).min(room);
            let echoed = if echo { r.prompt_ids.len() } else { 0 };
            Some((1 + top).saturating_mul(generated).saturating_add(echoed))
        })
        .fold(0usize, usize::saturating_add);
    if entries > limit {
        return Err(ApiError::invalid(
            names.logprobs,
            format!(
                "a non-streamed response may hold at most {limit} logprob entries \
                 (--max-logprob-entries), and this one \
                 could hold {entries} (choices × (1 + top logprobs) × max_tokens); lower \
                 max_tokens, n or the number of top logprobs, or stream the response"
            ),
        ));
    }
    Ok(())
}

/// `stream_options` only means something on a streamed request; vLLM and OpenAI refuse it
/// otherwise, and so does this server (a client that sets it expects a stream).
pub fn check_stream_options(stream: Option<bool>, has_options: bool) -> ApiResult<()> {
    if has_options && !stream.unwrap_or(false) {
        return Err(ApiError::invalid(
            "stream_options",
            "stream_options may only be set when stream is true",
        ));
    }
    Ok(())
}

/// Submits all requests or none: if one is refused, the streams already opened are dropped,
/// which cancels them. `guided` holds one compiled matcher per request, or none for requests
/// without a constraint. Only queue slots are taken here (the requests are checked), so this
/// runs on the async worker.
pub fn submit(
    ready: &Ready,
    requests: Vec<CheckedRequest>,
    guided: Vec<GuidedMatcher>,
) -> ApiResult<Vec<EventStream>> {
    if !guided.is_empty() && guided.len() != requests.len() {
        return Err(ApiError::internal(
            "one compiled grammar per choice expected",
        ));
    }
    let mut guided = guided.into_iter();
    requests
        .into_iter()
        .map(|r| {
            ready
                .engine
                .submit_checked(r, guided.next())
                .map_err(ApiError::from)
        })
        .collect()
}

/// [`submit`] for requests under one output constraint: the grammar compiles once for all of
/// them (see [`grammar::compile`]: a thread of its own, in the pool's heavy lane), then they are
/// submitted.
pub async fn submit_guided(
    ready: &Arc<Ready>,
    limits: &GrammarLimits,
    requests: Vec<CheckedRequest>,
    guided: Option<GuidedSpec>,
) -> ApiResult<Vec<EventStream>> {
    let matchers = grammar::compile(ready, limits, guided, requests.len()).await?;
    submit(ready, requests, matchers)
}

/// A random id with OpenAI's prefixes (`chatcmpl-`, `cmpl-`, `call_`).
pub fn random_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{tail}")
}
