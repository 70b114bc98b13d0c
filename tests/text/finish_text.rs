//! What a request's text holds when it ends: nothing generated is lost at an EOS or stop-token
//! finish (text held back as a possible stop-string prefix, an incomplete character), and a stop
//! string generated before `min_tokens` comes out once.

use std::sync::{Arc, OnceLock};
use tealight::engine::request::{Event, FinishReason, GenerationRequest};
use tealight::engine::request_state::RequestState;
use tealight::engine::scheduler::SequenceCore;
use tealight::sampling::{SampledToken, SamplingParams};
use tealight::tokenizer::Tokenizer;
use tokio::sync::mpsc::channel;

const EOS: u32 = 151645; // <|im_end|>

fn tokenizer() -> Arc<Tokenizer> {
    static TOKENIZER: OnceLock<Arc<Tokenizer>> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models/qwen3-tiny/tokenizer.json");
            Arc::new(Tokenizer::from_file(path).unwrap())
        })
        .clone()
}

/// Feeds `tokens` as if sampled, until the request finishes; returns the concatenated text
/// and the finish reason.
fn run(request: GenerationRequest, tokens: &[u32]) -> (String, Option<FinishReason>) {
    let (tx, mut rx) = channel(4096);
    let mut state = RequestState::new(&request, tokenizer(), None, 1000, tx);
    let mut core = SequenceCore::new(1, request.prompt_ids.clone());
    for &id in tokens {
        core.tokens.push(id);
        let sampled = SampledToken {
            id,
            logprob: f32::NAN,
            top_logprobs: Vec::new(),
        };
        if state
            .on_token(&core, &sampled, &[EOS], 4096)
            .finished
            .is_some()
        {
            break;
        }
    }
    let mut text = String::new();
    let mut reason = None;
    while let Ok(event) = rx.try_recv() {
        match event {
            Event::Delta { text: t, .. } => text.push_str(&t),
            Event::Finished { reason: r, .. } => reason = Some(r),
            Event::Error(e) => panic!("{e}"),
            Event::Pooled(_) => panic!("a generation request got a pooled result"),
        }
    }
    (text, reason)
}

fn request(stop: &[&str]) -> GenerationRequest {
    let mut r = GenerationRequest::new(vec![9707], SamplingParams::greedy());
    r.stop = stop.iter().map(|s| s.to_string()).collect();
    r
}

fn ids(text: &str) -> Vec<u32> {
    tokenizer().encode(text, false).unwrap()
}

#[test]
fn text_held_for_a_possible_stop_string_survives_an_eos() {
    let mut tokens = ids("Hi\n");
    tokens.push(EOS);
    let (text, reason) = run(request(&["\n\n"]), &tokens);
    assert_eq!(text, "Hi\n");
    assert_eq!(reason, Some(FinishReason::Stop));
}

#[test]
fn text_held_for_a_possible_stop_string_survives_a_stop_token() {
    let mut tokens = ids("Hi\n");
    let stop_token = ids("!")[0];
    tokens.push(stop_token);
    let mut r = request(&["\n\n"]);
    r.stop_token_ids = vec![stop_token];
    let (text, reason) = run(r, &tokens);
    assert_eq!(text, "Hi\n");
    assert_eq!(reason, Some(FinishReason::Stop));
}

#[test]
fn an_incomplete_character_at_eos_comes_out_as_a_full_decode_would() {
    // A character the vocabulary holds only as bytes: its first token is half a character.
    let split = ["𐍈", "𝔘", "🜁", "ꙮ"]
        .iter()
        .map(|c| ids(c))
        .find(|t| t.len() > 1)
        .expect("a character split over several tokens");
    let mut tokens = ids("a");
    tokens.push(split[0]);
    tokens.push(EOS);
    let (text, _) = run(request(&[]), &tokens);
    let full = tokenizer()
        .decode(&tokens[..tokens.len() - 1], true)
        .unwrap();
    assert_eq!(text, full);
    assert!(text.ends_with('\u{FFFD}'), "{text:?}");
}

#[test]
fn a_stop_string_before_min_tokens_is_emitted_once() {
    let tokens = ids("a\n\nb c d e f g");
    let mut r = request(&["\n\n"]);
    r.include_stop_str_in_output = true;
    r.min_tokens = 100;
    r.max_tokens = Some(tokens.len());
    let (text, _) = run(r.clone(), &tokens);
    assert_eq!(text, "a\n\nb c d e f g");
    // And without include_stop_str_in_output, the same: before min_tokens it is plain text.
    r.include_stop_str_in_output = false;
    assert_eq!(run(r, &tokens).0, "a\n\nb c d e f g");
}
