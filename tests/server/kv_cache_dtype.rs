//! `--kv-cache-dtype`: a 16-bit cache beside the CPU's f32 activations holds twice the blocks
//! in the same memory and serves the same greedy text, an fp8 cache four times; `auto` is
//! float16 for a CPU generation model; what the backends cannot read is refused at start-up.

use std::sync::OnceLock;

use serde_json::json;

use crate::http_client::*;

fn f16_cache() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--kv-cache-dtype", "float16", "--api-key", KEY]))
}

fn f32_cache() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| start(&["--kv-cache-dtype", "float32", "--api-key", KEY]))
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
    // Every server gets --kv-cache-memory 64MiB; the default one (`auto`) is float16.
    assert_eq!(blocks(f16_cache()), 2.0 * blocks(f32_cache()));
    assert_eq!(blocks(server()), blocks(f16_cache()));
    let case = fixture_case("english_multi_turn");
    let body = json!({"prompt": case["prompt_ids"], "max_tokens": 16, "temperature": 0,
        "ignore_eos": true});
    let [f16, f32] = [f16_cache(), f32_cache()].map(|s| {
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
    assert_eq!(blocks(&fp8), 4.0 * blocks(f32_cache()));
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
    // The `cpu` backend reads a narrower cache beside f32 activations only.
    let mixed = try_load(&["--dtype", "float16", "--kv-cache-dtype", "bfloat16"]).unwrap_err();
    assert!(mixed.contains("--kv-cache-dtype"), "{mixed}");
    let fp8 = try_load(&["--dtype", "bfloat16", "--kv-cache-dtype", "fp8"]).unwrap_err();
    assert!(fp8.contains("fp8") && fp8.contains("generic"), "{fp8}");
    // The `generic` backend (CUDA's default) reads them beside any model dtype.
    let generic = ["--attention-backend", "generic", "--dtype", "bfloat16"];
    try_load(&[&generic[..], &["--kv-cache-dtype", "fp8"]].concat()).unwrap();
    try_load(&[&generic[..], &["--kv-cache-dtype", "float16"]].concat()).unwrap();
    // The model's own dtype is always accepted.
    try_load(&["--dtype", "bfloat16", "--kv-cache-dtype", "bf16"]).unwrap();
}

/// The offload and event flags load, and what cannot work is refused with the flag's name.
#[test]
fn offload_and_event_flags_load_or_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let tiers = start(&[
        "--kv-offload-dir",
        path,
        "--kv-offloading-size",
        "0.01",
        "--api-key",
        KEY,
    ]);
    let metrics = tiers.get("/metrics").body;
    assert!(metrics.contains("tealight:kv_offload_restored_blocks_total 0"));
    // The tier's directory is created under the model's namespace.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let events = r#"{"enable_kv_cache_events": true, "endpoint": "tcp://127.0.0.1:1",
                     "replay_endpoint": "tcp://*:5558"}"#;
    let replay = try_load(&["--kv-events-config", events]).unwrap_err();
    assert!(replay.contains("replay_endpoint"), "{replay}");
    let kafka = try_load(&["--kv-events-config", r#"{"publisher": "kafka"}"#]).unwrap_err();
    assert!(kafka.contains("--kv-events-config"), "{kafka}");
    let broken = try_load(&["--kv-events-config", "{"]).unwrap_err();
    assert!(broken.contains("--kv-events-config"), "{broken}");
    let no_cache = try_load(&["--kv-offload-dir", path, "--no-enable-prefix-caching"]);
    assert!(no_cache.unwrap_err().contains("prefix caching"));
    // Events switched off in the JSON are no events, not an error.
    try_load(&["--kv-events-config", r#"{"enable_kv_cache_events": false}"#]).unwrap();
}
