//! The load gauges routers scrape (the inference gateway's picker every 50 ms): a request
//! counts as waiting from the moment it is accepted (a scrape does not wait for the engine's
//! next step to see it), admitted requests count as running, and both go back to zero.

use crate::common;

use common::*;
use tealight::engine::{FinishReason, GenerationRequest};
use tealight::sampling::SamplingParams;

fn greedy(prompt: Vec<u32>, max_tokens: usize) -> GenerationRequest {
    let mut r = GenerationRequest::new(prompt, SamplingParams::greedy());
    r.max_tokens = Some(max_tokens);
    r.ignore_eos = true;
    r
}

#[test]
fn queue_gauges_are_current_at_scrape_time() {
    let (engine, tok) = start_engine(|c| {
        c.max_num_seqs = 1;
        c.max_num_batched_tokens = 4096;
    });
    let m = engine.metrics();
    // A long prompt keeps the engine busy while the others arrive.
    let long: Vec<u32> = tok
        .encode(
            &"the quick brown fox jumps over the lazy dog ".repeat(400),
            false,
        )
        .unwrap()
        .into_iter()
        .take(3900)
        .collect();
    let first = engine.submit(greedy(long, 4)).unwrap();
    while m.requests_running.get() == 0 {
        std::thread::yield_now();
    }
    let prompt = tok.encode("Count slowly from one to ten.", false).unwrap();
    let mut streams: Vec<_> = (0..4)
        .map(|_| engine.submit(greedy(prompt.clone(), 48)).unwrap())
        .collect();
    // What a scrape does: the four wait, whether or not the busy engine thread has taken them
    // in yet, and the long one runs.
    engine.refresh_metrics();
    let (waiting, running) = (m.requests_waiting.get(), m.requests_running.get());
    assert_eq!((waiting, running), (4, 1));
    streams.insert(0, first);

    let mut max_running = 0;
    for (i, stream) in streams.into_iter().enumerate() {
        let (_, tokens, finish, _) = collect(stream);
        let expected = if i == 0 { 4 } else { 48 };
        assert_eq!((tokens.len(), finish), (expected, FinishReason::Length));
        engine.refresh_metrics();
        max_running = max_running.max(m.requests_running.get());
        assert!(m.requests_waiting.get() + m.requests_running.get() <= 5);
    }
    assert!(max_running <= 1);
    let start = std::time::Instant::now();
    loop {
        engine.refresh_metrics();
        if m.requests_waiting.get() == 0 && m.requests_running.get() == 0 {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 20,
            "gauges never returned to zero"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
