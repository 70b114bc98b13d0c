//! Forward-pass throughput on a Qwen3-0.6B-shaped model with random weights: one decode step at
//! batch 1 and 16 (context 128 each) and at batch 4 with 4,096 cached tokens each (where reading
//! the KV cache weighs), and a 512-token prefill.
//!
//!     cargo bench --bench forward                      # f32 (the CPU default)
//!     TEALIGHT_BENCH_DTYPE=f16 cargo bench --bench forward
//!     TEALIGHT_BENCH_KV_DTYPE=f16 cargo bench --bench forward   # f32 activations, f16 cache
//!     TEALIGHT_BENCH_KV_DTYPE=fp8 cargo bench --bench forward   # … an fp8 (e4m3) cache
//!
//! The checkpoint is generated once into `target/bench-models/0.6b` (or `$TEALIGHT_BENCH_MODEL`).
//! `scripts/bench/bench_forward.sh` runs this beside HF transformers on the same checkpoint.

use candle_core::{DType, Device};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use tealight::model::loader::{DtypeChoice, load_model};
use tealight::model::{AttentionBackend, BatchInput, KvCache, SequenceChunk};
use tealight::weights::checkpoint::CheckpointFiles;

mod common;
use common::model_dir;

const BLOCK: usize = 16;
const CONTEXT: usize = 128;
/// The long-context decode case: sequences × cached tokens.
const LONG: (usize, usize) = (4, 4096);

fn dtype() -> DtypeChoice {
    match std::env::var("TEALIGHT_BENCH_DTYPE").as_deref() {
        Ok("f16") => DtypeChoice::F16,
        Ok("bf16") => DtypeChoice::Bf16,
        _ => DtypeChoice::F32,
    }
}

/// `--kv-cache-dtype` for the run (`None`: the model's).
fn kv_dtype() -> Option<DType> {
    match std::env::var("TEALIGHT_BENCH_KV_DTYPE").as_deref() {
        Ok("f16") => Some(DType::F16),
        Ok("bf16") => Some(DType::BF16),
        Ok("fp8") => Some(DType::F8E4M3),
        _ => None,
    }
}

/// `n` sequences, each with `context` tokens cached, feeding one token each.
fn decode_batch(n: usize, context: usize) -> BatchInput {
    let blocks_per_seq = (context + 1).div_ceil(BLOCK);
    BatchInput {
        token_ids: (0..n as u32).map(|i| 1000 + i).collect(),
        chunks: (0..n)
            .map(|s| SequenceChunk {
                num_query_tokens: 1,
                context_len: context + 1,
                block_table: (0..blocks_per_seq as u32)
                    .map(|b| (s * blocks_per_seq) as u32 + b)
                    .collect(),
                logits_tokens: 1,
            })
            .collect(),
    }
}

fn prefill_batch(len: usize) -> BatchInput {
    BatchInput {
        token_ids: (0..len as u32).map(|i| (i * 7919) % 150_000).collect(),
        chunks: vec![SequenceChunk {
            num_query_tokens: len,
            context_len: len,
            block_table: (0..len.div_ceil(BLOCK) as u32).collect(),
            logits_tokens: 1,
        }],
    }
}

fn forward(c: &mut Criterion) {
    let files = CheckpointFiles::from_dir(&model_dir()).expect("checkpoint");
    let loaded = load_model(files, &Device::Cpu, dtype()).expect("load");
    let model = &loaded.model;
    let kv = kv_dtype().unwrap_or(model.dtype());
    let long_blocks = LONG.0 * (LONG.1 + 1).div_ceil(BLOCK);
    let cache = KvCache::new(
        model.config(),
        long_blocks.max(16 * 16 + 64),
        BLOCK,
        kv,
        &Device::Cpu,
    )
    .expect("cache");
    let backend = AttentionBackend::Cpu;
    let mut tag = format!("{:?}", model.dtype()).to_lowercase();
    if kv != model.dtype() {
        tag = format!("{tag}-kv-{kv:?}").to_lowercase();
    }

    let mut group = c.benchmark_group(format!("qwen3-0.6b-{tag}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(20));
    for n in [1usize, 16] {
        let batch = decode_batch(n, CONTEXT);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("decode_b{n}_ctx{CONTEXT}"), |b| {
            b.iter(|| model.forward(&batch, &cache, backend).expect("forward"))
        });
    }
    let long = decode_batch(LONG.0, LONG.1);
    group.throughput(Throughput::Elements(LONG.0 as u64));
    group.bench_function(format!("decode_b{}_ctx{}", LONG.0, LONG.1), |b| {
        b.iter(|| model.forward(&long, &cache, backend).expect("forward"))
    });
    let prefill = prefill_batch(512);
    group.throughput(Throughput::Elements(512));
    group.bench_function("prefill_512", |b| {
        b.iter(|| model.forward(&prefill, &cache, backend).expect("forward"))
    });
    group.finish();
}

// No plots: criterion's plotting backend panics on machines without system fonts.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = forward
}
criterion_main!(benches);
