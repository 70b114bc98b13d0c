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

/// Runs `pass` (which checks its outputs) until `engine` has accepted a draft token, at most
/// three times. The gate keeps drafts only where the step times it measured say they pay, and
/// on a machine loaded by the other tests one pass may measure none that do; every pass must
/// still give the outputs of the engine without speculation.
fn until_drafts_are_accepted(engine: &EngineHandle, what: &str, mut pass: impl FnMut()) {
    for _ in 0..3 {
        pass();
        if accepted(engine) > 0 {
            return;
        }
    }
    panic!("no draft token was accepted in three passes ({what})");
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
    until_drafts_are_accepted(&fast, spec, || {
        assert_eq!(solo(&fast, &requests), want, "solo, {spec}");
    });
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
    until_drafts_are_accepted(&fast, "seeded", || {
        let got = logprobs(&fast);
        for (i, ((ids, lps), (want_ids, want_lps))) in got.iter().zip(&want).enumerate() {
            assert_eq!(ids, want_ids, "request {i}");
            assert_eq!(lps.len(), want_lps.len());
            let worst = max_abs_diff(lps, want_lps);
            assert!(worst < 1e-3, "request {i}: logprobs differ by {worst}");
        }
    });
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

fn draft_model_config(dir: &std::path::Path, k: usize) -> String {
    serde_json::json!({"model": dir.to_str().unwrap(), "num_speculative_tokens": k}).to_string()
}

/// A draft model proposing for a target: the target itself (every greedy draft right: the
/// bookkeeping of the draft model's KV must be exact for that) and a different model of the
/// same vocabulary (drafts mostly wrong). Outputs are unchanged either way, solo and batched,
/// greedy and seeded.
#[test]
fn draft_model_outputs_are_unchanged() {
    let (plain, tok) = engine(None);
    let own = draft_model_config(&tiny_model_dir(), 4);
    let other = draft_model_config(&checkpoint_dir("tiny-untied"), 3);
    let mut requests: Vec<GenerationRequest> =
        prompts(&tok).iter().map(|p| greedy(p, 40)).collect();
    requests.extend(
        prompts(&tok)
            .iter()
            .enumerate()
            .map(|(i, p)| seeded(p, 300 + i as u64)),
    );
    let want = solo(&plain, &requests);
    for spec in [own, other] {
        let (fast, _) = engine(Some(&spec));
        assert_eq!(solo(&fast, &requests), want, "solo, {spec}");
        let runs = solo_then_batched(&fast, &requests);
        for (i, (_, (_, batched, ..))) in runs.iter().enumerate() {
            assert_eq!(batched, &want[i], "request {i} batched, {spec}");
        }
        assert!(
            fast.metrics().spec_drafts.get() > 0,
            "nothing was drafted ({spec})"
        );
    }
    // The target as its own draft, greedy: every draft token is the target's own greedy token
    // (up to the last bits of a batched forward), so nearly all are accepted.
    let (fast, _) = engine(Some(&draft_model_config(&tiny_model_dir(), 4)));
    let greedy_only = &requests[..prompts(&tok).len()];
    assert_eq!(solo(&fast, greedy_only), want[..greedy_only.len()].to_vec());
    let m = fast.metrics();
    let rate = m.spec_accepted_tokens.get() as f64 / m.spec_draft_tokens.get() as f64;
    assert!(
        rate > 0.9,
        "acceptance {rate} with the target as its own greedy draft"
    );
}

/// A draft model whose vocabulary is not the target's is refused at start-up.
#[test]
fn a_draft_model_of_another_vocabulary_is_refused() {
    let dir = checkpoint_dir("tiny");
    let loaded = load("tiny", tealight::model::loader::DtypeChoice::Auto);
    let mut config = tealight::engine::EngineConfig::for_model(loaded.model.config(), 64 << 20, 4);
    config.max_model_len = 1024;
    // The same checkpoint, with a vocabulary the target's is not.
    let other = process_scratch_dir("draft-other-vocab");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, other.join(path.file_name().unwrap())).unwrap();
    }
    let cfg_path = other.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["vocab_size"] = serde_json::json!(cfg["vocab_size"].as_u64().unwrap() + 1);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    config.speculative = Some(SpeculativeConfig::parse(&draft_model_config(&other, 2)).unwrap());
    let tokenizer =
        std::sync::Arc::new(Tokenizer::from_file(tiny_model_dir().join("tokenizer.json")).unwrap());
    let err = EngineHandle::start(loaded.model, tokenizer, vec![151645], config)
        .err()
        .expect("a vocabulary mismatch is refused")
        .to_string();
    assert!(err.contains("vocabulary") || err.contains("shape"), "{err}");
}

/// The draft model's proposals are its greedy continuations, through its catch-up, its own
/// draft tokens' KV, and a rejection (the next proposal catches up from the accepted part:
/// the KV of the rejected draft tokens is recomputed, not reused).
#[test]
fn draft_model_proposals_are_its_greedy_continuations() {
    use tealight::engine::speculative::draft_model::{DraftJob, DraftModel};
    use tealight::model::AttentionBackend;
    let loaded = load("tiny", tealight::model::loader::DtypeChoice::Auto);
    let reference = load("tiny", tealight::model::loader::DtypeChoice::Auto);
    let vocab = loaded.model.config().vocab_size;
    let dtype = dtype_of(&loaded);
    let draft = DraftModel::new(loaded.model, vocab, 16, 16, dtype, AttentionBackend::Cpu).unwrap();
    let table: Vec<u32> = (0..16).rev().collect();
    let tok = Tokenizer::from_file(tiny_model_dir().join("tokenizer.json")).unwrap();
    let prompt = tok
        .encode("Speculative decoding checks several tokens at once.", false)
        .unwrap();
    let (_, greedy) = greedy_model(&reference.model, &prompt, 6);
    // First proposal: the prompt is caught up (in pieces of 5), then 4 tokens.
    let job = DraftJob {
        tokens: &prompt,
        computed: 0,
        block_table: &table,
        k: 4,
    };
    let first = draft.propose(&[job], 5).unwrap();
    // A catch-up cut short proposes nothing.
    assert!(first[0].draft.is_empty() && first[0].computed == 5);
    let mut computed = first[0].computed;
    let mut proposal = None;
    for _ in 0..prompt.len() {
        let job = DraftJob {
            tokens: &prompt,
            computed,
            block_table: &table,
            k: 4,
        };
        let p = draft.propose(&[job], 5).unwrap().remove(0);
        computed = p.computed;
        if !p.draft.is_empty() {
            proposal = Some(p);
            break;
        }
    }
    let proposal = proposal.expect("the catch-up ends");
    assert_eq!(proposal.draft, greedy[..4].to_vec());
    assert_eq!(proposal.computed, prompt.len() + 3);
    // The target accepted two draft tokens and sampled another third token: the draft's KV
    // is valid for the prompt and the two accepted tokens only.
    let other = (greedy[2] + 1) % vocab as u32;
    let tokens: Vec<u32> = [prompt.clone(), vec![greedy[0], greedy[1], other]].concat();
    let job = DraftJob {
        tokens: &tokens,
        computed: prompt.len() + 2,
        block_table: &table,
        k: 3,
    };
    let next = draft.propose(&[job], 512).unwrap().remove(0);
    let (_, want) = greedy_model(&reference.model, &tokens, 3);
    assert_eq!(next.draft, want);
    assert_eq!(next.computed, tokens.len() + 2);
}

fn eagle3_config(k: usize) -> String {
    let head = repo_path("tests/fixtures/eagle3-tiny");
    serde_json::json!({"method": "eagle3", "model": head.to_str().unwrap(),
        "num_speculative_tokens": k})
    .to_string()
}

/// An EAGLE-3 head trained for the tiny model (tests/fixtures/eagle3-tiny): greedy and seeded
/// outputs are unchanged, solo and batched beside requests that cannot draft, with a stop
/// string, a short limit and prefix-cache continuations; and the trained head's drafts are
/// accepted — its catch-up after prompt chunks, decode steps and partly accepted drafts keeps
/// its KV and hidden states in step with the served model.
#[test]
fn eagle3_outputs_are_unchanged_and_its_drafts_accepted() {
    let spec = eagle3_config(4);
    check_method(&spec);
    let (plain, tok) = engine(None);
    let (fast, _) = engine(Some(&spec));
    let greedy_requests: Vec<GenerationRequest> =
        prompts(&tok).iter().map(|p| greedy(p, 40)).collect();
    let want = solo(&plain, &greedy_requests);
    assert_eq!(solo(&fast, &greedy_requests), want);
    let m = fast.metrics();
    let rate = m.spec_accepted_tokens.get() as f64 / m.spec_draft_tokens.get() as f64;
    // The head knows these prompts' continuations by heart (1.0 measured): a catch-up fed the
    // wrong token, position or hidden state shows as rejected drafts (0.73 with each position
    // fed its own token instead of the next).
    assert!(
        rate > 0.95,
        "acceptance {rate} of the trained head's drafts"
    );
    let seeded_requests: Vec<GenerationRequest> = prompts(&tok)
        .iter()
        .enumerate()
        .map(|(i, p)| seeded(p, 500 + i as u64))
        .collect();
    assert_eq!(
        solo(&fast, &seeded_requests),
        solo(&plain, &seeded_requests)
    );
}

/// A head whose config does not fit the served model is refused at start-up, saying why.
#[test]
fn an_eagle3_head_for_another_model_is_refused() {
    let head = repo_path("tests/fixtures/eagle3-tiny");
    for (field, value, says) in [
        ("vocab_size", serde_json::json!(151937), "vocabulary"),
        (
            "target_hidden_size",
            serde_json::json!(256),
            "hidden states",
        ),
        (
            "eagle_config",
            serde_json::json!({"eagle_aux_hidden_state_layer_ids": [0, 1, 5]}),
            "layer 5",
        ),
    ] {
        let other = process_scratch_dir(&format!("eagle3-{field}"));
        for entry in std::fs::read_dir(&head).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, other.join(path.file_name().unwrap())).unwrap();
        }
        let cfg_path = other.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg[field] = value;
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        let spec = serde_json::json!({"method": "eagle3", "model": other.to_str().unwrap(),
            "num_speculative_tokens": 2})
        .to_string();
        let loaded = load("tiny", tealight::model::loader::DtypeChoice::Auto);
        let mut config =
            tealight::engine::EngineConfig::for_model(loaded.model.config(), 64 << 20, 4);
        config.speculative = Some(SpeculativeConfig::parse(&spec).unwrap());
        let tokenizer = std::sync::Arc::new(
            Tokenizer::from_file(tiny_model_dir().join("tokenizer.json")).unwrap(),
        );
        let err = EngineHandle::start(loaded.model, tokenizer, vec![151645], config)
            .err()
            .expect("a mismatched head is refused")
            .to_string();
        assert!(err.contains(says), "{field}: {err}");
    }
}
