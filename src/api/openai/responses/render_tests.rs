//! The Responses stream checked the way the `openai` SDK's `responses.stream()` helper and
//! Codex read it: ordering, indices, sequence numbers, and done items equal to the final ones.

use serde_json::{Value, json};

use super::ResponseRenderer;
use crate::api::conversation::{ToolCatalog, ToolOrigin, custom_tool_parameters};
use crate::api::openai::responses::events::ResponseEvent;
use crate::api::openai::responses::types::ResponseObject;
use crate::api::output::Renderer;
use crate::api::output::blocks::BlockTracker;
use crate::api::sse::{self, WireEvent};
use crate::engine::{Event, FinishReason, Usage};
use crate::parsers::ToolCallSyntax;

fn catalog() -> ToolCatalog {
    let mut c = ToolCatalog::default();
    c.add("get".into(), None, None, ToolOrigin::Function);
    c.add(
        "apply_patch".into(),
        None,
        Some(custom_tool_parameters(None)),
        ToolOrigin::Custom,
    );
    c.add(
        "agents.spawn".into(),
        None,
        None,
        ToolOrigin::Namespaced {
            namespace: "agents".into(),
            name: "spawn".into(),
        },
    );
    c
}

fn delta(text: &str) -> Event {
    Event::Delta {
        text: text.into(),
        token_ids: vec![1],
        logprobs: Vec::new(),
    }
}

fn wire(events: Vec<ResponseEvent>) -> Vec<WireEvent> {
    sse::wire(events, ResponseEvent::name)
}

fn finished(reason: FinishReason, tokens: usize) -> Event {
    Event::Finished {
        reason,
        stop_reason: None,
        usage: Usage {
            prompt_tokens: 10,
            completion_tokens: tokens,
            cached_tokens: 4,
        },
    }
}

/// Runs `pieces` through a renderer; returns the events and the final object.
fn run(pieces: &[&str], reason: FinishReason) -> (Vec<WireEvent>, ResponseObject) {
    let shell = ResponseObject::in_progress("resp_1".into(), "m".into(), 1);
    let mut r = ResponseRenderer::new(
        shell,
        catalog(),
        BlockTracker::new(Some(false), Some(&ToolCallSyntax::hermes()), true),
    );
    let mut events = wire(r.start());
    for p in pieces {
        events.extend(wire(r.on_engine(0, delta(p))));
    }
    events.extend(wire(r.on_engine(0, finished(reason, pieces.len()))));
    assert!(r.is_finished());
    assert!(r.on_engine(0, delta("late")).is_empty());
    (events, r.into_whole().expect("a response"))
}

/// The checks the SDK's stream accumulator makes, plus the ones Codex relies on. Returns the
/// items of the `output_item.done` events.
fn check_stream(events: &[WireEvent]) -> Vec<Value> {
    assert_eq!(events[0].kind, "response.created");
    assert_eq!(events[1].kind, "response.in_progress");
    let mut added: Vec<Value> = Vec::new();
    let mut done: Vec<Value> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e.data["type"], e.kind);
        assert_eq!(e.data["sequence_number"], n as u64, "{}", e.kind);
        let index = e.data["output_index"].as_u64().map(|i| i as usize);
        match e.kind.as_str() {
            "response.output_item.added" => {
                assert_eq!(index, Some(added.len()), "items are added in order");
                added.push(e.data["item"].clone());
                texts.push(String::new());
            }
            "response.content_part.added" | "response.content_part.done" => {
                assert_eq!(e.data["content_index"], 0);
                assert_eq!(e.data["item_id"], added[index.unwrap()]["id"]);
            }
            "response.output_text.delta"
            | "response.reasoning_text.delta"
            | "response.function_call_arguments.delta" => {
                let i = index.unwrap();
                assert!(
                    i + 1 == added.len() && done.len() == i,
                    "delta after add, before done"
                );
                assert_eq!(e.data["item_id"], added[i]["id"]);
                texts[i].push_str(e.data["delta"].as_str().unwrap());
            }
            "response.output_text.done" | "response.reasoning_text.done" => {
                let i = index.unwrap();
                assert_eq!(
                    e.data["text"].as_str().unwrap(),
                    texts[i],
                    "done = the deltas"
                );
            }
            "response.function_call_arguments.done" => {
                let i = index.unwrap();
                assert_eq!(e.data["arguments"].as_str().unwrap(), texts[i]);
                assert_eq!(e.data["name"], added[i]["name"]);
            }
            "response.output_item.done" => {
                let i = index.unwrap();
                assert_eq!(done.len(), i);
                let item = &e.data["item"];
                assert_eq!(item["id"], added[i]["id"]);
                assert_eq!(item["type"], added[i]["type"]);
                assert_eq!(item["call_id"], added[i]["call_id"]);
                done.push(item.clone());
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                assert_eq!(n, events.len() - 1, "the terminal event is last");
                assert_eq!(done.len(), added.len(), "every item is done before the end");
                assert_eq!(e.data["response"]["output"], Value::Array(done.clone()));
            }
            _ => {}
        }
    }
    done
}

#[test]
fn reasoning_text_and_a_call_stream_in_order_and_match_the_final_object() {
    let text = "<think>\nLook it up.\n</think>\n\nChecking.<tool_call>\n{\"name\": \"get\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    let pieces: Vec<String> = text
        .chars()
        .collect::<Vec<_>>()
        .chunks(3)
        .map(|c| c.iter().collect())
        .collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let (events, response) = run(&refs, FinishReason::Stop);
    let items = check_stream(&events);
    assert_eq!(response.status, "completed");
    assert_eq!(response.output, items);
    let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["reasoning", "message", "function_call"]);
    assert_eq!(
        items[0]["content"],
        json!([{"type": "reasoning_text", "text": "Look it up."}])
    );
    assert_eq!(items[0]["summary"], json!([]));
    assert_eq!(items[1]["content"][0]["text"], "Checking.");
    assert_eq!(items[2]["arguments"], "{\"city\": \"Paris\"}");
    assert_eq!(items[2]["status"], "completed");
    assert!(items[2]["call_id"].as_str().unwrap().starts_with("call_"));
    let usage = response.usage.unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.total_tokens),
        (10, refs.len(), 10 + refs.len())
    );
    assert_eq!(usage.input_tokens_details.cached_tokens, 4);
    assert!(usage.output_tokens_details.reasoning_tokens > 0);

    let (_, whole) = run(&[text], FinishReason::Stop);
    let strip = |items: &[Value]| -> Vec<Value> {
        items
            .iter()
            .map(|i| {
                let mut i = i.clone();
                i.as_object_mut().unwrap().remove("id");
                i.as_object_mut().unwrap().remove("call_id");
                i
            })
            .collect()
    };
    assert_eq!(
        strip(&whole.output),
        strip(&response.output),
        "chunking changes nothing"
    );
}

#[test]
fn custom_and_namespaced_calls_map_back_to_their_declared_form() {
    let text = "<tool_call>\n{\"name\": \"apply_patch\", \"arguments\": {\"input\": \"*** Begin Patch\\n\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"agents.spawn\", \"arguments\": {}}\n</tool_call>";
    let (events, response) = run(&[text], FinishReason::Stop);
    let items = check_stream(&events);
    assert_eq!(items[0]["type"], "custom_tool_call");
    assert_eq!(items[0]["name"], "apply_patch");
    assert_eq!(items[0]["input"], "*** Begin Patch\n");
    assert!(items[0]["id"].as_str().unwrap().starts_with("ctc_"));
    let input_events: Vec<&WireEvent> = events
        .iter()
        .filter(|e| e.kind.starts_with("response.custom_tool_call_input"))
        .collect();
    assert_eq!(input_events[0].data["delta"], "*** Begin Patch\n");
    assert_eq!(input_events[1].data["input"], "*** Begin Patch\n");
    assert_eq!(items[1]["type"], "function_call");
    assert_eq!(items[1]["name"], "spawn");
    assert_eq!(items[1]["namespace"], "agents");
    assert_eq!(response.output, items);
}

#[test]
fn a_length_cut_is_incomplete_and_failures_are_failed() {
    let (events, response) = run(&["Once upon"], FinishReason::Length);
    let items = check_stream(&events);
    assert_eq!(events.last().unwrap().kind, "response.incomplete");
    assert_eq!(response.status, "incomplete");
    assert_eq!(
        response.incomplete_details.unwrap().reason,
        "max_output_tokens"
    );
    assert_eq!(items[0]["status"], "incomplete");

    let (events, response) = run(&[], FinishReason::Stop);
    let items = check_stream(&events);
    assert_eq!(
        items[0]["type"], "message",
        "an empty turn still has a message"
    );
    assert_eq!(response.status, "completed");

    let shell = ResponseObject::in_progress("resp_2".into(), "m".into(), 1);
    let mut r = ResponseRenderer::new(shell, catalog(), BlockTracker::new(None, None, true));
    let mut events = wire(r.start());
    events.extend(wire(r.on_engine(0, delta("partial"))));
    events.extend(wire(r.on_engine(0, Event::Error("device lost".into()))));
    assert_eq!(events.last().unwrap().kind, "response.failed");
    let failed = r.into_whole().expect("a failed response is a response");
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.error.unwrap().code, "server_error");
}
