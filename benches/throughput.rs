//! Offline throughput, nano-vllm style: N requests with random input/output lengths, all
//! submitted at once to the engine; reports output tokens/s. Prints one JSON line and writes the
//! workload to `target/bench-throughput/workload.json` so `scripts/bench/throughput_reference.py` can
//! run HF transformers on exactly the same requests.
//!
//!     cargo bench --bench throughput                   # 16 requests, f32
//!     TEALIGHT_BENCH_REQUESTS=32 TEALIGHT_BENCH_DTYPE=f16 cargo bench --bench throughput
//!
//! Under `cargo test` (no `--bench` argument) it runs a smoke pass instead: four short requests
//! on the embedded tiny model, checking that every requested token arrives.

use candle_core::Device;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tealight::engine::{EngineConfig, EngineHandle, Event, GenerationRequest};
use tealight::model::loader::{DtypeChoice, load_model};
use tealight::sampling::SamplingParams;
use tealight::tokenizer::Tokenizer;
use tealight::weights::checkpoint::CheckpointFiles;
use tealight::weights::synthetic::{SyntheticSpec, write_checkpoint};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = if smoke {
        tealight::weights::embedded::ensure_weights(&root.join("models/qwen3-tiny"))
            .expect("embedded model")
    } else {
        std::env::var_os("TEALIGHT_BENCH_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/bench-models/0.6b"))
    };
    if !dir.join("config.json").is_file() {
        write_checkpoint(
            &SyntheticSpec::qwen3_0_6b(),
            &dir,
            &root.join("models/qwen3-tiny"),
        )
        .expect("checkpoint");
    }
    let (requests, (min_in, max_in), (min_out, max_out)) = if smoke {
        (4, (8, 40), (2, 6))
    } else {
        (
            env_usize("TEALIGHT_BENCH_REQUESTS", 16),
            (
                env_usize("TEALIGHT_BENCH_MIN_INPUT", 32),
                env_usize("TEALIGHT_BENCH_MAX_INPUT", 256),
            ),
            (
                env_usize("TEALIGHT_BENCH_MIN_OUTPUT", 16),
                env_usize("TEALIGHT_BENCH_MAX_OUTPUT", 64),
            ),
        )
    };
    let dtype = match std::env::var("TEALIGHT_BENCH_DTYPE").as_deref() {
        Ok("f16") => DtypeChoice::F16,
        Ok("bf16") => DtypeChoice::Bf16,
        _ => DtypeChoice::F32,
    };

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let workload: Vec<(Vec<u32>, usize)> = (0..requests)
        .map(|_| {
            let n = rng.random_range(min_in..=max_in);
            let prompt = (0..n).map(|_| rng.random_range(1000..100_000)).collect();
            (prompt, rng.random_range(min_out..=max_out))
        })
        .collect();
    if !smoke {
        write_workload(&root.join("target/bench-throughput"), &workload);
    }

    let files = CheckpointFiles::from_dir(&dir).expect("checkpoint files");
    let tokenizer = Arc::new(Tokenizer::from_file(&files.tokenizer).expect("tokenizer"));
    let loaded = load_model(files, &Device::Cpu, dtype).expect("load");
    let model = loaded.model;
    let dtype_name = format!("{:?}", model.dtype()).to_lowercase();
    let mut config =
        EngineConfig::for_model(model.config(), 2 << 30, model.dtype().size_in_bytes());
    config.max_model_len = 4096;
    config.max_num_batched_tokens = env_usize("TEALIGHT_BENCH_BATCHED_TOKENS", 512);
    let engine =
        EngineHandle::start(model, tokenizer, vec![151645, 151643], config).expect("engine");

    let started = Instant::now();
    let streams: Vec<_> = workload
        .iter()
        .map(|(prompt, out)| {
            let mut r = GenerationRequest::new(prompt.clone(), SamplingParams::greedy());
            r.max_tokens = Some(*out);
            r.ignore_eos = true;
            engine.submit(r).expect("submit")
        })
        .collect();
    let mut generated = 0usize;
    for mut s in streams {
        while let Some(ev) = s.blocking_recv() {
            match ev {
                Event::Delta { token_ids, .. } => generated += token_ids.len(),
                Event::Finished { .. } => break,
                Event::Error(e) => panic!("engine error: {e}"),
                Event::Pooled(_) => panic!("a generation request got a pooled result"),
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let prompt_tokens: usize = workload.iter().map(|(p, _)| p.len()).sum();
    let requested: usize = workload.iter().map(|(_, o)| o).sum();
    assert_eq!(generated, requested, "every request runs to its max_tokens");
    println!(
        "{}",
        serde_json::json!({
            "engine": format!("tealight {dtype_name}"),
            "requests": requests,
            "prompt_tokens": prompt_tokens,
            "output_tokens": generated,
            "seconds": secs,
            "output_tokens_per_s": generated as f64 / secs,
            "threads": candle_core::utils::get_num_threads(),
        })
    );
}

/// The requests as `scripts/bench/throughput_reference.py` reads them.
fn write_workload(out_dir: &std::path::Path, workload: &[(Vec<u32>, usize)]) {
    std::fs::create_dir_all(out_dir).expect("output dir");
    let json: Vec<serde_json::Value> = workload
        .iter()
        .map(|(p, o)| serde_json::json!({"prompt_ids": p, "output_len": o}))
        .collect();
    std::fs::write(
        out_dir.join("workload.json"),
        serde_json::to_string(&json).expect("json"),
    )
    .expect("write workload");
}
