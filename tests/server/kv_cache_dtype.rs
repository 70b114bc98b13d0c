//! `--kv-cache-dtype`: a 16-bit cache beside the CPU's f32 activations holds twice the blocks
//! in the same memory and serves the same greedy text, an fp8 cache four times; what the
//! backends cannot read is refused at start-up.

use std::sync::OnceLock;

use serde_json::json;

use crate::http_client::*;

fn f16_cache() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--kv-cache-dtype", "float16", "--api-key", KEY]))
}

fn blocks(s: &TestServer) -> f64 {
    let text = s.get("/metrics").body;
    let line = text
        .lines()
        .find(|l| l.starts_with("tealight:cache_config_info"))
        .expect("cache_config_info");
    let value = line.split("num_gpu_blocks=\"").nth(1).unwrap();
    value.split('"').next().unwrap().parse().unwrap()
}

#[test]
fn a_16_bit_cache_holds_twice_the_blocks_and_the_same_text() {
    // Both servers get --kv-cache-memory 64MiB.
    assert_eq!(blocks(f16_cache()), 2.0 * blocks(server()));
    let case = fixture_case("english_multi_turn");
    let body = json!({"prompt": case["prompt_ids"], "max_tokens": 16, "temperature": 0,
        "ignore_eos": true});
    let [f16, f32] = [f16_cache(), server()].map(|s| {
        let r = s.post("/v1/completions", &body);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["choices"][0]["text"].clone()
    });
    assert_eq!(f16, f32);
}

/// fp8 (e4m3) holds four times the f32 blocks in the same memory and serves; its text is not
/// compared: fp8's rounding parts greedy runs of the random-weight model from f32's
/// (tests/model/kv_dtype.rs measures how far).
#[test]
fn an_fp8_cache_holds_four_times_the_blocks() {
    let fp8 = start(&["--kv-cache-dtype", "fp8_e4m3", "--api-key", KEY]);
    assert_eq!(blocks(&fp8), 4.0 * blocks(server()));
    let body = json!({"prompt": fixture_case("english_multi_turn")["prompt_ids"],
        "max_tokens": 8, "temperature": 0, "ignore_eos": true});
    let r = fp8.post("/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["usage"]["completion_tokens"], 8);
}

#[test]
fn caches_the_backends_cannot_read_are_refused_at_start_up() {
    let e5m2 = try_load(&["--kv-cache-dtype", "fp8_e5m2"]).unwrap_err();
    assert!(e5m2.contains("e4m3"), "{e5m2}");
    let mixed = try_load(&["--dtype", "float16", "--kv-cache-dtype", "bfloat16"]).unwrap_err();
    assert!(mixed.contains("--kv-cache-dtype"), "{mixed}");
    // fp8 is read beside f32 activations only.
    let fp8 = try_load(&["--dtype", "bfloat16", "--kv-cache-dtype", "fp8"]).unwrap_err();
    assert!(fp8.contains("fp8"), "{fp8}");
    // The model's own dtype is always accepted.
    try_load(&["--dtype", "bfloat16", "--kv-cache-dtype", "bf16"]).unwrap();
}
