//! What verifying a draft costs: one step feeding each sequence's pending token plus k draft
//! tokens (k = 0…6), at batch 1 and 16 with 512 cached tokens each, on a Qwen3-0.6B-shaped
//! model with random weights and the CPU serving defaults (f32 weights, float16 KV cache).
//! The ratio of each k to k = 0 is the price a draft must earn back in accepted tokens.
//!
//!     cargo bench --bench verify
//!     TEALIGHT_BENCH_MODEL=/path/to/checkpoint cargo bench --bench verify
//!
//! The checkpoint is generated once into `target/bench-models/0.6b` (or `$TEALIGHT_BENCH_MODEL`).

use candle_core::{DType, Device};
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;
use tealight::model::loader::{DtypeChoice, load_model};
use tealight::model::{AttentionBackend, BatchInput, KvCache, SequenceChunk};
use tealight::weights::checkpoint::CheckpointFiles;

mod common;
use common::model_dir;

const BLOCK: usize = 16;
const CONTEXT: usize = 512;
const MAX_DRAFT: usize = 6;

/// `n` sequences with `CONTEXT` tokens cached, each feeding its pending token and `draft`
/// draft tokens, with logits for all of them (as a verifying step asks).
fn verify_batch(n: usize, draft: usize) -> BatchInput {
    let fed = 1 + draft;
    let blocks_per_seq = (CONTEXT + fed).div_ceil(BLOCK);
    BatchInput {
        token_ids: (0..(n * fed) as u32).map(|i| 1000 + i).collect(),
        chunks: (0..n)
            .map(|s| SequenceChunk {
                num_query_tokens: fed,
                context_len: CONTEXT + fed,
                block_table: (0..blocks_per_seq as u32)
                    .map(|b| (s * blocks_per_seq) as u32 + b)
                    .collect(),
                logits_tokens: fed,
            })
            .collect(),
    }
}

fn verify(c: &mut Criterion) {
    let files = CheckpointFiles::from_dir(&model_dir()).expect("checkpoint");
    let loaded = load_model(files, &Device::Cpu, DtypeChoice::F32).expect("load");
    let model = &loaded.model;
    let blocks = 16 * (CONTEXT + 1 + MAX_DRAFT).div_ceil(BLOCK);
    let cache =
        KvCache::new(model.config(), blocks, BLOCK, DType::F16, &Device::Cpu).expect("cache");
    let mut group = c.benchmark_group("verify-qwen3-0.6b-f32-kv-f16");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    for n in [1usize, 16] {
        for draft in 0..=MAX_DRAFT {
            let batch = verify_batch(n, draft);
            group.bench_function(format!("b{n}_k{draft}"), |b| {
                b.iter(|| {
                    model
                        .forward(&batch, &cache, AttentionBackend::Cpu)
                        .expect("forward")
                })
            });
        }
    }
    // The same rows as b1_k1, as two sequences decoding one token each: what the verify
    // step's layout costs beside the decode layout.
    let batch = verify_batch(2, 0);
    group.bench_function("b2_k0", |b| {
        b.iter(|| {
            model
                .forward(&batch, &cache, AttentionBackend::Cpu)
                .expect("forward")
        })
    });
    group.finish();
}

// No plots: criterion's plotting backend panics on machines without system fonts.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = verify
}
criterion_main!(benches);
