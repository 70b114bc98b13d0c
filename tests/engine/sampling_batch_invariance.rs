//! A per-request seed gives the same tokens whatever else is in the batch, even with
//! truncation that keeps most of a flat vocabulary (top_p only, on the random-weight tiny
//! model): on the CPU a sequence's logits differ in their last bits with the rows it is batched
//! with, and the draw must not amplify that into a different token.

use crate::common;

use common::*;
use tealight::engine::{FinishReason, GenerationRequest};
use tealight::sampling::SamplingParams;

const REQUESTS: usize = 8;
const MAX_TOKENS: usize = 48;

fn request(tokenizer: &tealight::tokenizer::Tokenizer, i: usize) -> GenerationRequest {
    let text = match i % 4 {
        0 => format!("Question {i}: what is {} times {}?", i + 2, i * 7 + 3),
        1 => format!("Write a short poem about the number {i} and the sea."),
        2 => format!(
            "Request {i}: {}",
            "summarise the following sentence please ".repeat(2 + i)
        ),
        _ => format!("List {} colours, then explain why you chose them.", i + 1),
    };
    let params = SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        seed: Some(7_000 + 131 * i as u64),
        ..SamplingParams::default()
    };
    let mut r = GenerationRequest::new(tokenizer.encode(&text, false).unwrap(), params);
    r.max_tokens = Some(MAX_TOKENS);
    r.ignore_eos = true;
    r
}

/// Eight seeded top_p requests, each run alone and then all at once with a small token budget
/// (so prefills are split into different chunks and decode rows share batches): every request
/// gives its solo tokens.
#[test]
fn seeded_top_p_requests_match_their_solo_runs_when_batched() {
    let (engine, tok) = start_engine(|c| c.max_num_batched_tokens = 64);
    let requests: Vec<GenerationRequest> = (0..REQUESTS).map(|i| request(&tok, i)).collect();
    let runs = solo_then_batched(&engine, &requests);
    for (i, (want, (_, tokens, reason, _))) in runs.iter().enumerate() {
        assert_eq!(*reason, FinishReason::Length);
        assert_eq!(want.len(), MAX_TOKENS);
        let first_difference = tokens.iter().zip(want).position(|(a, b)| a != b);
        assert_eq!(
            first_difference, None,
            "request {i} differs from its solo run at token {first_difference:?}"
        );
        assert_eq!(tokens, want, "request {i}");
    }
}
