//! The serving engine end to end on the tiny model: batch invariance, preemption, prefix
//! caching, cancellation, limits, stopping and backpressure.

use crate::common;

use common::*;
use std::time::{Duration, Instant};
use tealight::engine::{Event, FinishReason, GenerationRequest};
use tealight::sampling::SamplingParams;

fn prompt(tokenizer: &tealight::tokenizer::Tokenizer, i: usize) -> Vec<u32> {
    let shared = "You are a careful assistant. Answer briefly and precisely. ";
    let text = if i.is_multiple_of(3) {
        format!("{shared}Question {i}: what is {i} plus {}?", i * 3)
    } else {
        format!(
            "Request number {i}: {}",
            "tell me a story about a cat ".repeat(1 + i % 5)
        )
    };
    tokenizer.encode(&text, false).unwrap()
}

fn greedy(prompt: Vec<u32>, max_tokens: usize) -> GenerationRequest {
    let mut r = GenerationRequest::new(prompt, SamplingParams::greedy());
    r.max_tokens = Some(max_tokens);
    r.ignore_eos = true;
    r
}

fn seeded(prompt: Vec<u32>, max_tokens: usize, seed: u64) -> GenerationRequest {
    let params = SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        top_k: 50,
        seed: Some(seed),
        ..SamplingParams::default()
    };
    let mut r = GenerationRequest::new(prompt, params);
    r.max_tokens = Some(max_tokens);
    r.ignore_eos = true;
    r
}

fn wait_for_idle_blocks(engine: &tealight::engine::EngineHandle) {
    let start = Instant::now();
    while engine.metrics().kv_blocks_used.get() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "KV blocks still in use"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// 24 concurrent requests (greedy and seeded, different lengths, some sharing a prefix) give
/// exactly the tokens each gives alone.
#[test]
fn concurrent_requests_equal_solo_runs() {
    let (engine, tok) = start_engine(|c| c.max_num_batched_tokens = 256);
    let requests: Vec<GenerationRequest> = (0..24)
        .map(|i| {
            let p = prompt(&tok, i);
            let n = 4 + (i * 5) % 19;
            if i % 2 == 0 {
                greedy(p, n)
            } else {
                seeded(p, n, 1000 + i as u64)
            }
        })
        .collect();
    let runs = solo_then_batched(&engine, &requests);
    for (i, (want, (_, tokens, reason, usage))) in runs.iter().enumerate() {
        assert_eq!(tokens, want, "request {i} differs when batched");
        assert_eq!(*reason, FinishReason::Length);
        assert_eq!(usage.completion_tokens, tokens.len());
        assert_eq!(usage.prompt_tokens, requests[i].prompt_ids.len());
    }
    wait_for_idle_blocks(&engine);
}

/// With a pool so small that sequences must be preempted, everything still completes with the
/// same tokens, and no block is leaked.
#[test]
fn preemption_under_memory_pressure_keeps_outputs() {
    let (engine, tok) = start_engine(|c| {
        c.num_blocks = 12;
        c.max_model_len = 12 * 16;
        c.enable_prefix_caching = false;
    });
    let requests: Vec<GenerationRequest> = (0..6).map(|i| greedy(prompt(&tok, i), 40)).collect();
    let solo: Vec<Vec<u32>> = requests
        .iter()
        .map(|r| collect(engine.submit(r.clone()).unwrap()).1)
        .collect();
    let streams: Vec<_> = requests
        .iter()
        .map(|r| engine.submit(r.clone()).unwrap())
        .collect();
    for (s, want) in streams.into_iter().zip(&solo) {
        assert_eq!(&collect(s).1, want);
    }
    assert!(
        engine.metrics().preemptions.get() > 0,
        "the pool was meant to force preemption"
    );
    wait_for_idle_blocks(&engine);
}

#[test]
fn prefix_cache_hit_gives_the_same_output_and_is_counted() {
    let (engine, tok) = start_engine(|_| {});
    let long = tok
        .encode(&"shared system prompt with many words ".repeat(12), false)
        .unwrap();
    let (_, first, _, u1) = collect(engine.submit(greedy(long.clone(), 8)).unwrap());
    let hits_before = engine.metrics().prefix_cache_hits.get();
    let (_, second, _, u2) = collect(engine.submit(greedy(long.clone(), 8)).unwrap());
    assert_eq!(first, second);
    assert_eq!(u1.cached_tokens, 0);
    assert!(
        u2.cached_tokens >= 16 * ((long.len() - 1) / 16) && u2.cached_tokens > 0,
        "{u2:?}"
    );
    assert!(engine.metrics().prefix_cache_hits.get() > hits_before);
}

#[test]
fn dropping_the_stream_cancels_and_frees_blocks() {
    let (engine, tok) = start_engine(|_| {});
    let mut stream = engine.submit(greedy(prompt(&tok, 1), 100_000)).unwrap();
    for _ in 0..3 {
        assert!(matches!(stream.blocking_recv(), Some(Event::Delta { .. })));
    }
    assert!(engine.metrics().kv_blocks_used.get() > 0);
    drop(stream);
    wait_for_idle_blocks(&engine);
}

#[test]
fn context_limit_ends_with_length_and_long_prompts_are_rejected() {
    let (engine, tok) = start_engine(|c| c.max_model_len = 64);
    let p = prompt(&tok, 2);
    let (_, tokens, reason, usage) = collect(engine.submit(greedy(p.clone(), 10_000)).unwrap());
    assert_eq!(reason, FinishReason::Length);
    assert_eq!(p.len() + tokens.len(), 64);
    assert_eq!(usage.completion_tokens, 64 - p.len());
    let too_long: Vec<u32> = (0..64).map(|i| 100 + i).collect();
    match engine.submit(greedy(too_long, 1)) {
        Err(tealight::Error::ContextLength {
            message,
            tokens,
            max_model_len,
            ..
        }) => {
            assert!(message.contains("64"), "{message}");
            assert_eq!((tokens, max_model_len), (64, 64));
        }
        other => panic!(
            "expected a context-length refusal, got {:?}",
            other.map(|_| ())
        ),
    }
}

#[test]
fn stop_strings_stop_tokens_and_min_tokens() {
    let (engine, tok) = start_engine(|_| {});
    let p = prompt(&tok, 4);
    let (text, tokens, _, _) = collect(engine.submit(greedy(p.clone(), 24)).unwrap());
    // A stop string taken from the middle of the greedy text: output ends right before it.
    let chars: Vec<char> = text.chars().collect();
    let cut = chars.len() / 2;
    let stop: String = chars[cut..(cut + 2).min(chars.len())].iter().collect();
    let expected_prefix: String = {
        let at = text.find(&stop).unwrap();
        text[..at].to_owned()
    };
    let mut r = greedy(p.clone(), 24);
    r.stop = vec![stop.clone()];
    let (stopped, _, reason, _) = collect(engine.submit(r.clone()).unwrap());
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!(stopped, expected_prefix);
    r.include_stop_str_in_output = true;
    let (stopped, ..) = collect(engine.submit(r).unwrap());
    assert_eq!(stopped, format!("{expected_prefix}{stop}"));

    // A stop token id: the 5th greedy token ends the request after 5 tokens.
    let mut r = greedy(p.clone(), 24);
    r.stop_token_ids = vec![tokens[4]];
    let first = tokens.iter().position(|&t| t == tokens[4]).unwrap();
    let (_, got, reason, _) = collect(engine.submit(r.clone()).unwrap());
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!(got.len(), first + 1);
    // min_tokens beyond it: the stop token is suppressed until then.
    r.min_tokens = 10;
    let (_, got, _, _) = collect(engine.submit(r).unwrap());
    assert!(got.len() >= 10);
    assert!(!got[..9].contains(&tokens[4]));
}

#[test]
fn full_queue_is_refused_and_shutdown_drains() {
    let (engine, tok) = start_engine(|c| {
        c.max_num_seqs = 1;
        c.max_waiting = 2;
    });
    let mut running = engine.submit(greedy(prompt(&tok, 1), 60)).unwrap();
    assert!(matches!(running.blocking_recv(), Some(Event::Delta { .. })));
    let waiting: Vec<_> = (0..2)
        .map(|i| engine.submit(greedy(prompt(&tok, i), 3)).unwrap())
        .collect();
    assert!(matches!(
        engine.submit(greedy(prompt(&tok, 3), 3)),
        Err(tealight::Error::Overloaded(_))
    ));
    // Shutdown lets everything accepted finish, and refuses new work.
    let drained = std::thread::spawn(move || {
        let mut n = 0;
        while let Some(ev) = running.blocking_recv() {
            if let Event::Finished { reason, .. } = ev {
                assert_eq!(reason, FinishReason::Length);
                n += 1;
            }
        }
        n
    });
    engine.shutdown(Duration::from_secs(60));
    assert!(matches!(
        engine.submit(greedy(prompt(&tok, 3), 3)),
        Err(tealight::Error::Unavailable(_))
    ));
    assert_eq!(drained.join().unwrap(), 1);
    for s in waiting {
        assert_eq!(collect(s).2, FinishReason::Length);
    }
}

/// The start-up steps run the real forward and sampler: the profiling step at a step far larger
/// than the pool it attends over (block tables cycle over scratch blocks), and the warm-up step
/// on a real pool. On the CPU the allocator cannot measure, so the estimate stands.
#[test]
fn profiling_and_warm_up_steps_run_on_the_model() {
    use tealight::engine::startup::{
        StepShape, estimate_activation_bytes, profile_activations, warm_up,
    };
    use tealight::model::{AttentionBackend, KvCache};
    let model = load("tiny", tealight::model::loader::DtypeChoice::Auto).model;
    let shape = StepShape {
        tokens: 300,
        rows: 40,
        context: 1000,
    };
    for backend in [AttentionBackend::Cpu, AttentionBackend::Generic] {
        let sampler = tealight::sampling::Sampler::new();
        let profile = profile_activations(&model, backend, &sampler, shape, 16).unwrap();
        assert_eq!(profile.measured, None);
        assert_eq!(
            profile.estimate,
            estimate_activation_bytes(model.config(), model.dtype(), shape)
        );
        assert_eq!(profile.peak(), profile.estimate);
        let cache = KvCache::new(model.config(), 4, 16, model.dtype(), model.device()).unwrap();
        warm_up(&model, &cache, backend, &sampler).unwrap();
    }
}
