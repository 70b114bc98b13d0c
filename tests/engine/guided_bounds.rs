//! Schema bounds and the compile thread: a schema at the largest bounds compiles on the stack
//! sized for them (a stack overflow would abort this test binary), a first step beyond the
//! grammar engine's limits is the client's error, and one compile serves every choice.

use crate::common;

use common::*;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tealight::error::Error;
use tealight::guided::compile_thread::{self, CompileJob};
use tealight::guided::{
    GuidedDecoding, GuidedFactory, SchemaBudget, SchemaLimits, compile_stack_bytes,
};
use tealight::tokenizer::Tokenizer;

fn factory() -> Arc<GuidedFactory> {
    let tok = Tokenizer::from_file(tiny_model_dir().join("tokenizer.json")).unwrap();
    Arc::new(GuidedFactory::new(&tok, 151_936, &[151645, 151643]).unwrap())
}

fn object(n: usize, required: bool, prefix: &str) -> Value {
    let props: Map<String, Value> = (0..n)
        .map(|i| (format!("{prefix}{i}"), json!({"type": "string"})))
        .collect();
    let mut o = json!({"type": "object", "properties": props});
    if required {
        o["required"] = Value::Array((0..n).map(|i| json!(format!("{prefix}{i}"))).collect());
    }
    o
}

/// As wide and as deep as `limits` allow: an object of `max_properties` properties, one of
/// which nests objects down to `max_depth` (each level is two JSON levels: an object and its
/// `properties`).
fn schema_at(limits: &SchemaLimits, required: bool) -> Value {
    let mut deep = json!({"type": "integer"});
    for _ in 0..(limits.max_depth - 4) / 2 {
        deep = json!({"type": "object", "properties": {"d": deep}, "required": ["d"]});
    }
    let mut top = object(limits.max_properties - 1, required, "p");
    top["properties"]["deep"] = deep;
    if required {
        top["required"].as_array_mut().unwrap().push(json!("deep"));
    }
    top
}

fn compile_on_sized_stack(
    factory: &Arc<GuidedFactory>,
    limits: &SchemaLimits,
    schema: Value,
    copies: usize,
) -> tealight::error::Result<Vec<tealight::guided::GuidedMatcher>> {
    let job = CompileJob {
        spec: Arc::new(GuidedDecoding::JsonSchema(schema)),
        copies,
    };
    let rx = compile_thread::spawn(factory.clone(), job, compile_stack_bytes(limits), ()).unwrap();
    rx.blocking_recv().expect("the compile thread answers")
}

#[test]
fn schemas_at_the_default_bounds_compile_on_the_sized_stack() {
    let limits = SchemaLimits::default();
    let f = factory();
    for required in [true, false] {
        let schema = schema_at(&limits, required);
        SchemaBudget::new(&limits).check(&schema).unwrap();
        let deeper = SchemaLimits {
            max_depth: limits.max_depth - 1,
            ..limits
        };
        assert!(
            SchemaBudget::new(&deeper).check(&schema).is_err(),
            "not at the depth bound"
        );
        let compiled = compile_on_sized_stack(&f, &limits, schema, 1);
        assert!(
            compiled.is_ok(),
            "required {required}: {:?}",
            compiled.err()
        );
    }
}

/// 7,000 properties overflowed tokio's 2 MiB blocking threads and aborted the process; with
/// the bound raised that far the compile thread's stack grows with it.
#[test]
fn raised_bounds_get_a_stack_to_match() {
    let limits = SchemaLimits {
        max_properties: 8000,
        max_nodes: 100_000,
        ..SchemaLimits::default()
    };
    let f = factory();
    let compiled = compile_on_sized_stack(&f, &limits, object(7000, true, "p"), 1);
    assert!(compiled.is_ok(), "{:?}", compiled.err());
    // Optional properties compile, but the step after `{` branches past the engine's
    // per-step limit (it failed on the engine thread, a 500): now the client's error.
    for n in [600, 7000] {
        match compile_on_sized_stack(&f, &limits, object(n, false, "p"), 1) {
            Err(Error::InvalidRequest { message, part }) => {
                assert_eq!(part, tealight::RequestPart::OutputConstraint);
                assert!(message.contains("mark properties required"), "{message}");
                assert!(message.contains("max is 2000") && !message.contains('\n'));
            }
            other => panic!(
                "{n}: expected a client error, got {:?}",
                other.map(|v| v.len())
            ),
        }
    }
}

#[test]
fn one_compile_serves_every_choice() {
    let f = factory();
    let limits = SchemaLimits::default();
    let schema = json!({"enum": ["yes", "no"]});
    let mut all = compile_on_sized_stack(&f, &limits, schema, 3).unwrap();
    assert_eq!(all.len(), 3);
    let first = all[0].next_mask().unwrap();
    // Advancing one choice leaves the others at the start.
    let quote = first.ids()[0];
    all[0].commit(quote).unwrap();
    for m in &mut all[1..] {
        assert_eq!(m.next_mask().unwrap(), first);
    }
    assert_ne!(all[0].next_mask().unwrap(), first);
}

/// Measures the stack a schema's compile needs (the constants of `compile_stack_bytes`):
/// `STACK_KIB=512 PROPS=256 DEPTH=64 REQUIRED=0 cargo test --test guided_bounds -- --ignored
/// stack_probe` aborts with a stack overflow when the stack is too small.
#[test]
#[ignore]
fn stack_probe() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let limits = SchemaLimits {
        max_properties: env("PROPS", 256),
        max_nodes: usize::MAX,
        max_depth: env("DEPTH", 64),
    };
    let schema = schema_at(&limits, env("REQUIRED", 0) == 1);
    let f = factory();
    let job = CompileJob {
        spec: Arc::new(GuidedDecoding::JsonSchema(schema)),
        copies: 1,
    };
    let rx = compile_thread::spawn(f, job, env("STACK_KIB", 2048) << 10, ()).unwrap();
    let r = rx.blocking_recv().unwrap();
    println!("compiled: {}", r.is_ok());
}
