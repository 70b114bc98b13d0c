//! Speculative decoding changes no output: greedy and seeded requests give the tokens (and
//! logprobs) they give without it, solo and batched with requests that do not draft, with
//! stop strings, output limits and guided decoding; rejected draft tokens' KV never reaches
//! the prefix cache. Each test also checks that drafts were accepted, so the identity is not
//! that of speculation never running.

use crate::common;

use common::*;
use tealight::engine::speculative::config::SpeculativeConfig;
use tealight::engine::{EngineHandle, GenerationRequest, GuidedDecoding};
use tealight::sampling::SamplingParams;
use tealight::tokenizer::Tokenizer;

const NGRAM: &str =
    r#"{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_min":1,"prompt_lookup_max":3}"#;
const SUFFIX: &str = r#"{"method":"suffix","num_speculative_tokens":6}"#;

fn engine(spec: Option<&str>) -> (EngineHandle, std::sync::Arc<Tokenizer>) {
    start_engine(|c| {
        c.max_num_batched_tokens = 96;
        c.speculative = spec.map(|j| SpeculativeConfig::parse(j).unwrap());
    })
}

fn prompts(tok: &Tokenizer) -> Vec<Vec<u32>> {
    [
        "def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return a + b\n\ndef add(",
        "one two three four one two three four one two three four one two",
        "The quick brown fox jumps over the lazy dog.",
        "{\"name\": \"x\", \"args\": {\"path\": \"/tmp/a\"}}\n{\"name\": \"x\", \"args\": {",
        "Hello",
    ]
    .iter()
    .map(|p| tok.encode(p, false).unwrap())
    .collect()
}

fn greedy(prompt: &[u32], max_tokens: usize) -> GenerationRequest {
    let mut r = GenerationRequest::new(prompt.to_vec(), SamplingParams::greedy());
    r.max_tokens = Some(max_tokens);
    r.ignore_eos = true;
    r
}

fn seeded(prompt: &[u32], seed: u64) -> GenerationRequest {
    let params = SamplingParams {
        temperature: 0.3,
        seed: Some(seed),
        logprobs: Some(2),
        ..SamplingParams::default()
    };
    let mut r = GenerationRequest::new(prompt.to_vec(), params);
    r.max_tokens = Some(40);
    r.ignore_eos = true;
    r
}

/// Every request's tokens, each run alone.
fn solo(engine: &EngineHandle, requests: &[GenerationRequest]) -> Vec<Vec<u32>> {
    requests
        .iter()
        .map(|r| collect(engine.submit(r.clone()).unwrap()).1)
        .collect()
}

fn accepted(engine: &EngineHandle) -> u64 {
    engine.metrics().spec_accepted_tokens.get()
}

fn check_method(spec: &str) {
    let (plain, tok) = engine(None);
    let (fast, _) = engine(Some(spec));
    let mut requests: Vec<GenerationRequest> =
        prompts(&tok).iter().map(|p| greedy(p, 48)).collect();
    // A stop string and a short limit end requests mid-draft.
    requests[1].stop = vec!["four one".into()];
    requests[4].max_tokens = Some(5);
    let want = solo(&plain, &requests);
    assert_eq!(solo(&fast, &requests), want, "solo, {spec}");
    let solo_accepted = accepted(&fast);
    assert!(solo_accepted > 0, "no draft token was accepted ({spec})");
    // All at once, beside requests that cannot draft (a one-token prompt, fresh each time).
    let runs = solo_then_batched(&fast, &requests);
    for (i, (alone, (_, batched, ..))) in runs.iter().enumerate() {
        assert_eq!(alone, &want[i], "request {i} solo, {spec}");
        assert_eq!(batched, &want[i], "request {i} batched, {spec}");
    }
    // Prompts continuing the outputs hit the prefix cache the drafting steps wrote: a block
    // holding a rejected draft token's KV would change their continuations.
    let next: Vec<GenerationRequest> = requests
        .iter()
        .zip(&want)
        .map(|(r, out)| greedy(&[r.prompt_ids.clone(), out.clone()].concat(), 24))
        .collect();
    assert_eq!(
        solo(&fast, &next),
        solo(&plain, &next),
        "continuations, {spec}"
    );
    assert!(fast.metrics().prefix_cache_hits.get() > 0);
}

#[test]
fn ngram_greedy_outputs_are_unchanged() {
    check_method(NGRAM);
}

#[test]
fn suffix_greedy_outputs_are_unchanged() {
    check_method(SUFFIX);
}

/// Seeded sampled requests draw the same tokens with the same logprobs: each emitted token is
/// the request's own draw from the target's distribution.
#[test]
fn seeded_samples_and_logprobs_are_unchanged() {
    let (plain, tok) = engine(None);
    let (fast, _) = engine(Some(SUFFIX));
    let requests: Vec<GenerationRequest> = prompts(&tok)
        .iter()
        .enumerate()
        .map(|(i, p)| seeded(p, 90 + i as u64))
        .collect();
    let logprobs = |engine: &EngineHandle| -> Vec<(Vec<u32>, Vec<f32>)> {
        requests
            .iter()
            .map(|r| {
                let mut stream = engine.submit(r.clone()).unwrap();
                let (mut ids, mut lps) = (Vec::new(), Vec::new());
                loop {
                    match stream.blocking_recv().expect("a finish") {
                        tealight::engine::Event::Delta {
                            token_ids,
                            logprobs,
                            ..
                        } => {
                            ids.extend(token_ids);
                            lps.extend(logprobs.iter().map(|l| l.logprob));
                        }
                        tealight::engine::Event::Finished { .. } => return (ids, lps),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            })
            .collect()
    };
    let want = logprobs(&plain);
    let got = logprobs(&fast);
    assert!(accepted(&fast) > 0, "no draft token was accepted");
    for (i, ((ids, lps), (want_ids, want_lps))) in got.iter().zip(&want).enumerate() {
        assert_eq!(ids, want_ids, "request {i}");
        assert_eq!(lps.len(), want_lps.len());
        let worst = max_abs_diff(lps, want_lps);
        assert!(worst < 1e-3, "request {i}: logprobs differ by {worst}");
    }
}

/// A guided request's drafts are checked against the grammar as they are sampled: the output
/// is the one it has without speculation, and valid.
#[test]
fn guided_outputs_are_unchanged() {
    let (plain, tok) = engine(None);
    let (fast, _) = engine(Some(NGRAM));
    let prompt = tok
        .encode(
            "{\"a\": [1, 2, 3], \"b\": [1, 2, 3], \"c\": [1, 2, 3], \"d\": [1, 2,",
            false,
        )
        .unwrap();
    let mut r = greedy(&prompt, 64);
    r.ignore_eos = false;
    r.guided = Some(GuidedDecoding::JsonObject);
    let want = collect(plain.submit(r.clone()).unwrap());
    let got = collect(fast.submit(r).unwrap());
    assert_eq!(got.1, want.1);
    assert_eq!(got.0, want.0);
    assert_eq!(got.2, want.2);
    assert!(accepted(&fast) > 0, "no draft token was accepted");
}

/// Drafts that are never right (every one rejected, the measuring aid) change no output, and
/// the gate stops carrying them: after the first few, only a probe now and then.
#[test]
fn rejected_drafts_change_nothing_and_fade() {
    let (plain, tok) = engine(None);
    let spec = r#"{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_min":1,"prompt_lookup_max":3,"tealight_reject_all_drafts":true}"#;
    let (fast, _) = engine(Some(spec));
    let requests: Vec<GenerationRequest> = prompts(&tok).iter().map(|p| greedy(p, 64)).collect();
    assert_eq!(solo(&fast, &requests), solo(&plain, &requests));
    let m = fast.metrics();
    assert_eq!(m.spec_accepted_tokens.get(), 0);
    let drafts = m.spec_drafts.get();
    // 5 requests × 63 decode steps: drafts on a small fraction of them.
    assert!(drafts > 0, "nothing was drafted");
    assert!(drafts < 5 * 63 / 4, "{drafts} drafts were carried");
}
