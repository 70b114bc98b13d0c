//! Pooling (prefill-only) requests in the engine: they end after their prefill with the last
//! token's final hidden state, run in the same steps as generation without changing its
//! tokens, reuse the prefix cache, and may fill the context.

use crate::common::{collect, start_engine};
use tealight::engine::{EngineHandle, Event, FinishReason, GenerationRequest, Pooling, Usage};
use tealight::sampling::SamplingParams;

/// A pooling request's vector and usage.
fn pooled(engine: &EngineHandle, ids: &[u32]) -> (Vec<f32>, Usage) {
    let request = GenerationRequest::pooled(ids.to_vec(), Pooling::LastHidden);
    finish_pooled(engine.submit(request).unwrap())
}

fn finish_pooled(mut stream: tealight::engine::EventStream) -> (Vec<f32>, Usage) {
    let mut values = None;
    loop {
        match stream.blocking_recv().expect("a finish") {
            Event::Pooled(v) => values = Some(v),
            Event::Finished { reason, usage, .. } => {
                assert_eq!(reason, FinishReason::Stop);
                assert_eq!(usage.completion_tokens, 0, "pooling generates nothing");
                return (values.expect("pooled before finished"), usage);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn greedy(ids: &[u32], max_tokens: usize) -> GenerationRequest {
    let mut r = GenerationRequest::new(ids.to_vec(), SamplingParams::greedy());
    r.max_tokens = Some(max_tokens);
    r.ignore_eos = true;
    r
}

#[test]
fn pooling_runs_beside_generation_and_changes_nothing() {
    // Small steps: the long prompt is read in several chunks, mixed with decodes.
    let (engine, tok) = start_engine(|c| {
        c.max_num_batched_tokens = 48;
        c.max_model_len = 512;
    });
    let long = "The inventory clerk records every item in the ledger. ".repeat(20);
    let texts = [
        "What is the capital of China?",
        long.as_str(),
        "你好，世界",
        "a",
    ];
    let inputs: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tok.encode(t, false).unwrap())
        .collect();
    assert!(inputs[1].len() > 96, "the long input spans chunks");
    let solo: Vec<(Vec<f32>, Usage)> = inputs.iter().map(|ids| pooled(&engine, ids)).collect();
    for ((values, usage), ids) in solo.iter().zip(&inputs) {
        assert_eq!(values.len(), 128, "the tiny model's hidden size");
        assert_eq!(usage.prompt_tokens, ids.len());
        assert!(values.iter().all(|v| v.is_finite()));
    }
    let generation = [greedy(&inputs[0], 12), greedy(&inputs[2], 20)];
    let solo_tokens: Vec<Vec<u32>> = generation
        .iter()
        .map(|r| collect(engine.submit(r.clone()).unwrap()).1)
        .collect();

    // All at once: generation and pooling interleaved in the same steps.
    let gen_streams: Vec<_> = generation
        .iter()
        .map(|r| engine.submit(r.clone()).unwrap())
        .collect();
    let pool_streams: Vec<_> = inputs
        .iter()
        .map(|ids| {
            let r = GenerationRequest::pooled(ids.clone(), Pooling::LastHidden);
            engine.submit(r).unwrap()
        })
        .collect();
    for (stream, (values, _)) in pool_streams.into_iter().zip(&solo) {
        let (batched, usage) = finish_pooled(stream);
        assert!(max_diff(&batched, values) < 1e-4, "batched = solo");
        // The solo run left the prompt in the prefix cache.
        assert!(usage.cached_tokens > 0 || usage.prompt_tokens < 16);
    }
    for (stream, want) in gen_streams.into_iter().zip(&solo_tokens) {
        assert_eq!(
            &collect(stream).1,
            want,
            "generation unchanged by pooling beside it"
        );
    }
}

#[test]
fn a_pooled_input_may_fill_the_context_but_not_pass_it() {
    let (engine, _) = start_engine(|c| c.max_model_len = 32);
    let ids: Vec<u32> = (0..32).map(|i| 1000 + i).collect();
    let (values, usage) = pooled(&engine, &ids);
    assert_eq!((values.len(), usage.prompt_tokens), (128, 32));
    let over: Vec<u32> = (0..33).collect();
    let err = engine
        .submit(GenerationRequest::pooled(over, Pooling::LastHidden))
        .err()
        .expect("refused");
    assert!(
        matches!(err, tealight::Error::ContextLength { tokens: 33, .. }),
        "{err:?}"
    );
    // A generation request still needs room for one token.
    assert!(engine.submit(greedy(&ids, 1)).is_err());
}
