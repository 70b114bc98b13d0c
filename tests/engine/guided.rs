//! Guided decoding end to end on the embedded tiny model, whose weights are random: left alone
//! it writes noise over the whole 152k vocabulary, so every structure in its output comes from
//! the constraint.
//!
//! Strings are where a random model can run forever (it almost never picks a closing quote out
//! of ~150k allowed tokens), so schemas here bound their strings with `maxLength`; the
//! `json_object` test (which has no schema to bound them) nudges the model towards `"` with a
//! logit bias, standing in for a real model's habit of closing its strings.

use crate::common;

use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use tealight::engine::request_state::RequestState;
use tealight::engine::stop_strings::StopStrings;
use tealight::engine::{Event, FinishReason, GenerationRequest, GuidedDecoding, StopReason};
use tealight::guided::{GuidedFactory, ToolSpec, hermes_tool_call_grammar};
use tealight::sampling::{SampledToken, SamplingParams, SequenceSampler};
use tealight::tokenizer::{IncrementalDetokenizer, Tokenizer};

const QUOTE: u32 = 1; // `"`

fn greedy_params() -> SamplingParams {
    SamplingParams::greedy()
}

fn seeded_params(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        seed: Some(seed),
        ..SamplingParams::default()
    }
}

fn request(prompt: &[u32], params: SamplingParams, guided: GuidedDecoding) -> GenerationRequest {
    let mut r = GenerationRequest::new(prompt.to_vec(), params);
    r.max_tokens = Some(1500);
    r.guided = Some(guided);
    r
}

/// Every parameter set the tests run: greedy and three seeds.
fn param_sets() -> Vec<(String, SamplingParams)> {
    let mut v = vec![("greedy".to_owned(), greedy_params())];
    for seed in [11, 22, 33] {
        v.push((format!("seed {seed}"), seeded_params(seed)));
    }
    v
}

fn validate(schema: &Value, instance: &Value) {
    let validator = jsonschema::validator_for(schema).expect("test schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{instance} violates the schema: {errors:?}"
    );
}

/// Runs a request to its end, requiring `stop` by the grammar's completion.
fn run_to_stop(
    engine: &tealight::engine::EngineHandle,
    r: GenerationRequest,
    label: &str,
) -> (String, Vec<u32>) {
    let mut stream = engine.submit(r).unwrap();
    let (mut text, mut tokens) = (String::new(), Vec::new());
    loop {
        match stream
            .blocking_recv()
            .expect("stream ended without a finish")
        {
            Event::Delta {
                text: t, token_ids, ..
            } => {
                text.push_str(&t);
                tokens.extend(token_ids);
            }
            Event::Finished {
                reason,
                stop_reason,
                usage,
            } => {
                assert_eq!(reason, FinishReason::Stop, "{label}: {text}");
                assert_eq!(stop_reason, Some(StopReason::Eos), "{label}");
                assert_eq!(usage.completion_tokens, tokens.len());
                return (text, tokens);
            }
            Event::Error(e) => panic!("{label}: engine error: {e}"),
            Event::Pooled(_) => panic!("{label}: a pooled result"),
        }
    }
}

#[test]
fn json_object_output_is_an_object() {
    let (engine, tok) = start_engine(|_| {});
    let prompt = tok.encode("Describe a cat as JSON.", false).unwrap();
    let mut sizes = Vec::new();
    for (label, mut params) in param_sets() {
        params.logit_bias = vec![(QUOTE, 10.0)];
        let r = request(&prompt, params, GuidedDecoding::JsonObject);
        let (text, tokens) = run_to_stop(&engine, r, &label);
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label}: {e}: {text:?}"));
        assert!(v.is_object(), "{label}: {text}");
        // Bounded whitespace: only the separators' single spaces, never runs or newlines
        // outside strings (the compact form re-serialised with Python's separators).
        assert_eq!(text, python_dumps(&v), "{label}");
        sizes.push(tokens.len());
    }
    assert!(
        sizes.iter().any(|&n| n > 10),
        "trivial outputs only: {sizes:?}"
    );
}

/// `json.dumps(v)` with Python's default separators (and non-ASCII kept, as generated).
fn python_dumps(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_dumps(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(python_dumps).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "greeting": {"const": "grüß dich 👋"},
            "city": {"enum": ["Zürich", "東京", "São Paulo", "New York"]},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "score": {"type": "number", "minimum": -10, "maximum": 10},
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 6},
                "minItems": 1,
                "maxItems": 3
            },
            "address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string", "maxLength": 20},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                    "floors": {"type": "array", "items": {"type": "integer"}, "maxItems": 2}
                },
                "required": ["street", "zip"],
                "additionalProperties": false
            },
            "active": {"type": "boolean"}
        },
        "required": ["name", "greeting", "city", "age", "score", "tags", "address"],
        "additionalProperties": false
    })
}

#[test]
fn json_schema_output_validates() {
    let (engine, tok) = start_engine(|_| {});
    let prompt = tok.encode("Invent a person.", false).unwrap();
    let schema = person_schema();
    let mut non_ascii = false;
    for (label, params) in param_sets() {
        let r = request(&prompt, params, GuidedDecoding::JsonSchema(schema.clone()));
        let (text, _) = run_to_stop(&engine, r, &label);
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label}: {e}: {text:?}"));
        validate(&schema, &v);
        assert_eq!(v["greeting"], "grüß dich 👋");
        non_ascii |= !v["name"].as_str().unwrap().is_ascii();
    }
    assert!(
        non_ascii,
        "the random model's free strings are expected to hold unicode"
    );
}

fn weather_tool() -> Value {
    json!({
        "type": "object",
        "properties": {
            "location": {"type": "string", "maxLength": 20},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7}
        },
        "required": ["location", "unit"],
        // Without it the grammar allows extra keys of any length, and a random-weight model
        // can wander in one until max_tokens: a valid `length` finish, but not this test's point.
        "additionalProperties": false
    })
}

fn search_tool() -> Value {
    json!({
        "type": "object",
        "properties": {
            "query": {"type": "string", "maxLength": 15},
            "filters": {
                "type": "object",
                "properties": {"lang": {"enum": ["en", "fr", "日本語"]}},
                "required": ["lang"],
                "additionalProperties": false
            }
        },
        "required": ["query", "filters"],
        "additionalProperties": false
    })
}

/// Splits hermes output into its calls' JSON, requiring the exact framing.
fn parse_calls(text: &str) -> Vec<Value> {
    let mut calls = Vec::new();
    for (i, part) in text.split("\n<tool_call>").enumerate() {
        let part = if i == 0 {
            part.strip_prefix("<tool_call>")
                .expect("starts with <tool_call>")
        } else {
            part
        };
        let body = part
            .strip_prefix('\n')
            .and_then(|p| p.strip_suffix("\n</tool_call>"))
            .unwrap_or_else(|| panic!("bad framing: {text:?}"));
        calls.push(serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}")));
    }
    calls
}

#[test]
fn forced_tool_calls_follow_the_hermes_format() {
    let (engine, tok) = start_engine(|_| {});
    let prompt = tok.encode("What is the weather in Paris?", false).unwrap();
    let (weather, search) = (weather_tool(), search_tool());
    let tools = [
        ToolSpec {
            name: "get_weather",
            parameters: Some(&weather),
        },
        ToolSpec {
            name: "web_search",
            parameters: Some(&search),
        },
    ];
    let schema_of = |name: &str| match name {
        "get_weather" => &weather,
        "web_search" => &search,
        other => panic!("unknown tool {other}"),
    };

    // A named tool: exactly one call of it.
    let named = hermes_tool_call_grammar(&tools[..1], false).unwrap();
    for (label, params) in param_sets() {
        let r = request(&prompt, params, GuidedDecoding::Lark(named.clone()));
        let (text, _) = run_to_stop(&engine, r, &label);
        let calls = parse_calls(&text);
        assert_eq!(calls.len(), 1, "{label}: {text}");
        assert_eq!(calls[0]["name"], "get_weather");
        validate(&weather, &calls[0]["arguments"]);
        // The JSON is written as Qwen3's template renders it.
        assert!(text.starts_with("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {"));
    }

    // `required` with parallel calls: one or more calls of either tool.
    let any = hermes_tool_call_grammar(&tools, true).unwrap();
    let mut names = Vec::new();
    for (label, params) in param_sets() {
        let r = request(&prompt, params, GuidedDecoding::Lark(any.clone()));
        let (text, _) = run_to_stop(&engine, r, &label);
        for call in parse_calls(&text) {
            let name = call["name"].as_str().unwrap().to_owned();
            validate(schema_of(&name), &call["arguments"]);
            names.push(name);
        }
    }
    assert!(!names.is_empty());
}

#[test]
fn grammar_completion_outranks_ignore_eos_and_min_tokens() {
    let (engine, tok) = start_engine(|_| {});
    let prompt = tok.encode("Say hello.", false).unwrap();
    let grammar = GuidedDecoding::Lark("start: \"Hello, world! \" (\"Bye.\" | \"Ciao.\")".into());
    let mut r = request(&prompt, greedy_params(), grammar);
    r.ignore_eos = true;
    r.min_tokens = 50;
    let (text, tokens) = run_to_stop(&engine, r, "literal");
    assert!(
        text == "Hello, world! Bye." || text == "Hello, world! Ciao.",
        "{text}"
    );
    // Forced text comes as the tokenizer would spell it, not byte by byte.
    assert!(tokens.len() <= 8, "{tokens:?}");
}

/// Constraining some requests of a batch leaves the others' tokens exactly as they are.
///
/// The reference is the same batch with each constrained request replaced by an unconstrained
/// one of the same prompt that generates exactly as many tokens: every step then has the same
/// shape, so the model computes the other rows identically and only the masks differ. (A
/// request alone is not the reference: the CPU forward of a row can differ in the last bits
/// with the batch's shape, which a seeded draw over the random model's flat distribution can
/// turn into another token.)
#[test]
fn constrained_requests_leave_their_batch_unchanged() {
    let (engine, tok) = start_engine(|c| c.max_num_batched_tokens = 256);
    let schema = person_schema();
    let build = |constrained: &dyn Fn(usize) -> Option<usize>| -> Vec<GenerationRequest> {
        (0..8)
            .map(|i| {
                let prompt = tok
                    .encode(&format!("Request {i}: tell me about cats and JSON."), false)
                    .unwrap();
                let params = if i % 2 == 0 {
                    greedy_params()
                } else {
                    seeded_params(100 + i as u64)
                };
                if i % 3 == 0 {
                    match constrained(i) {
                        None => {
                            request(&prompt, params, GuidedDecoding::JsonSchema(schema.clone()))
                        }
                        Some(n) => {
                            let mut r = GenerationRequest::new(prompt, params);
                            r.max_tokens = Some(n);
                            r.ignore_eos = true;
                            r
                        }
                    }
                } else {
                    let mut r = GenerationRequest::new(prompt, params);
                    r.max_tokens = Some(12 + i * 3);
                    r.ignore_eos = true;
                    r
                }
            })
            .collect()
    };
    // A long prompt ahead of the batch keeps the engine busy while the rest is submitted, so
    // both runs admit the batch in the same steps.
    let pacer = {
        let mut r = GenerationRequest::new(
            tok.encode(&"pacing text for the engine ".repeat(160), false)
                .unwrap(),
            greedy_params(),
        );
        r.max_tokens = Some(4);
        r.ignore_eos = true;
        r
    };
    let run = |requests: &[GenerationRequest]| -> Vec<(String, Vec<u32>, FinishReason)> {
        let pace = engine.submit(pacer.clone()).unwrap();
        let streams: Vec<_> = requests
            .iter()
            .map(|r| engine.submit(r.clone()).unwrap())
            .collect();
        let out = streams
            .into_iter()
            .map(|s| {
                let (text, tokens, reason, _) = collect(s);
                (text, tokens, reason)
            })
            .collect();
        collect(pace);
        out
    };
    let with_constraints = run(&build(&|_| None));
    let lengths: Vec<usize> = with_constraints.iter().map(|o| o.1.len()).collect();
    let without = run(&build(&|i| Some(lengths[i])));
    for i in 0..8 {
        if i % 3 == 0 {
            let (text, _, reason) = &with_constraints[i];
            assert_eq!(*reason, FinishReason::Stop);
            validate(&schema, &serde_json::from_str(text).unwrap());
            assert_eq!(without[i].1.len(), lengths[i]);
        } else {
            assert_eq!(with_constraints[i], without[i], "request {i} changed");
        }
    }
}

#[test]
fn bad_schemas_and_grammars_are_rejected_at_submit() {
    let (engine, tok) = start_engine(|_| {});
    let prompt = tok.encode("hi", false).unwrap();
    let cases = [
        GuidedDecoding::JsonSchema(
            json!({"type": "object", "properties": {"a": {"type": "strin"}}}),
        ),
        GuidedDecoding::JsonSchema(json!({"type": "string", "pattern": "(unclosed"})),
        GuidedDecoding::JsonSchema(json!(false)),
        GuidedDecoding::JsonSchema(json!("object")),
        GuidedDecoding::JsonSchema(json!({"type": "integer", "minimum": 5, "maximum": 1})),
        GuidedDecoding::Lark("start: foo\n".into()),
        GuidedDecoding::Lark("start: \"a\" %json {\"type\": 7}".into()),
        GuidedDecoding::Lark("   ".into()),
    ];
    for spec in cases {
        match engine.submit(request(&prompt, greedy_params(), spec.clone())) {
            // The engine names the part; the API that sent the spec names its field.
            Err(tealight::Error::InvalidRequest { message, part }) => {
                assert_eq!(part, tealight::RequestPart::OutputConstraint, "{spec:?}");
                assert!(message.starts_with("invalid "), "{message}");
            }
            Err(e) => panic!("{spec:?}: wrong error {e}"),
            Ok(_) => panic!("{spec:?} was accepted"),
        }
    }
    assert_eq!(engine.metrics().requests_waiting.get(), 0);
    // The engine still serves.
    let r = request(
        &prompt,
        greedy_params(),
        GuidedDecoding::Lark("start: \"ok\"".into()),
    );
    assert_eq!(run_to_stop(&engine, r, "after rejections").0, "ok");
}

fn tiny_tokenizer() -> Arc<Tokenizer> {
    Arc::new(Tokenizer::from_file(tiny_model_dir().join("tokenizer.json")).unwrap())
}

fn state_with(
    guided: tealight::guided::GuidedMatcher,
    tok: Arc<Tokenizer>,
) -> (RequestState, tokio::sync::mpsc::Receiver<Event>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let state = RequestState {
        events: tx,
        sampler: SequenceSampler::new(SamplingParams::greedy(), &[1]),
        detokenizer: IncrementalDetokenizer::new(tok, true),
        stops: StopStrings::new(Vec::new(), false),
        max_tokens: 100,
        min_tokens: 0,
        ignore_eos: false,
        stop_token_ids: Vec::new(),
        arrival: std::time::Instant::now(),
        first_token_at: None,
        last_token_at: None,
        cached_prompt_tokens: None,
        finished: None,
        stalled_since: None,
        report_cached_tokens: true,
        pooling: None,
        guided: Some(guided),
        speculation: None,
    };
    (state, rx)
}

/// A matcher that fails mid-generation (here: fed a token the grammar does not allow) ends
/// its request with an error event, without a panic.
#[test]
fn matcher_failures_end_the_request_with_an_error() {
    let tok = tiny_tokenizer();
    let eos = [151645, 151643];
    let factory = GuidedFactory::new(&tok, 151_936, &eos).unwrap();
    let grammar = GuidedDecoding::Lark("start: \"yes\" | \"no\"".into());

    let (mut state, mut rx) = state_with(factory.compile(&grammar).unwrap(), tok.clone());
    state.constrain_next_token();
    let mask = state.sampler.allowed().expect("a mask").clone();
    let yes = tok.encode("yes", false).unwrap()[0];
    assert!(mask.allows(yes) && !mask.allows(eos[0]));
    let core = tealight::engine::scheduler::SequenceCore::new(1, vec![1, 2]);
    let bad = tok.encode("maybe", false).unwrap()[0];
    assert!(!mask.allows(bad));
    let sampled = SampledToken {
        id: bad,
        logprob: f32::NAN,
        top_logprobs: Vec::new(),
    };
    let outcome = state.on_token(&core, &sampled, &eos, 4096);
    assert_eq!(outcome.finished, Some(FinishReason::Abort));
    match rx.try_recv() {
        Ok(Event::Error(e)) => assert!(e.contains("guided decoding"), "{e}"),
        other => panic!("expected an error event, got {other:?}"),
    }
}

#[test]
fn masks_allow_exactly_the_grammar() {
    let tok = tiny_tokenizer();
    let factory = GuidedFactory::new(&tok, 151_936, &[151645, 151643]).unwrap();
    let mut m = factory
        .compile(&GuidedDecoding::JsonSchema(json!({"enum": ["a", "b"]})))
        .unwrap();
    let mask = m.next_mask().unwrap();
    let allowed: Vec<String> = mask
        .ids()
        .iter()
        .map(|&id| tok.decode(&[id], false).unwrap())
        .collect();
    // Only prefixes of `"a"` / `"b"` may start the output.
    assert!(
        allowed
            .iter()
            .all(|t| "\"a\"".starts_with(t.as_str()) || "\"b\"".starts_with(t.as_str())),
        "{allowed:?}"
    );
    assert!(allowed.contains(&"\"".to_owned()));
    for t in tok.encode("\"b\"", false).unwrap() {
        assert!(!m.is_complete());
        assert!(m.next_mask().unwrap().allows(t));
        m.commit(t).unwrap();
    }
    assert!(m.is_complete());
}
