//! Sampling at Qwen3's vocabulary (151,936): the host path against the device path (rows
//! narrowed to their top candidates with tensor ops, drawn on the host), per step of B rows.
//!
//! `cargo bench --bench sampling` (criterion). Before timing, each case prints what the device
//! path issues per step: ops on the device (each one kernel launch on a GPU), copies from the
//! device and rows that needed their whole logits on the host; the host path is one copy of
//! `B × vocab` f32 and no launches. Here both run on the CPU, so the times compare the work of
//! the two paths on a CPU, not a GPU's; the launch and copy counts are what a GPU would see.

use std::hint::black_box;

use candle_core::{Device, Tensor};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tealight::sampling::{
    RowSpec, SamplingParams, SequenceSampler, greedy_ids, process_logits, select_device_counted,
    select_host,
};

const VOCAB: usize = 151_936;

/// Roughly LM-shaped rows: a normal body plus a handful of clearly preferred tokens.
fn rows(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut row: Vec<f32> = (0..VOCAB)
                .map(|_| {
                    let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
                    2.5 * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                })
                .collect();
            for k in 0..8 {
                let i = rng.random_range(0..VOCAB);
                row[i] = 18.0 - k as f32;
            }
            row
        })
        .collect()
}

fn spec(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> RowSpec {
    RowSpec {
        temperature,
        top_k,
        top_p,
        min_p,
        u: 0.37,
    }
}

fn selection(c: &mut Criterion) {
    let data = rows(32, 1);
    let cases = [
        ("qwen3 defaults", spec(0.6, 20, 0.95, 0.0)),
        ("top_p 0.9", spec(1.0, 0, 0.9, 0.0)),
        ("min_p 0.05", spec(1.0, 0, 1.0, 0.05)),
        ("top_k 200", spec(1.0, 200, 1.0, 0.0)),
        ("plain", spec(1.0, 0, 1.0, 0.0)),
    ];
    println!("per step, device path (host path: 0 launches, 1 copy of B x {VOCAB} f32):");
    for b in [1usize, 32] {
        let logits = Tensor::from_vec(data[..b].concat(), (b, VOCAB), &Device::Cpu).expect("rows");
        for (name, s) in cases {
            let specs = vec![s; b];
            let (ids, work) = select_device_counted(&logits, &specs).expect("device");
            assert_eq!(ids, select_host(&logits, &specs).expect("host"));
            println!(
                "  B={b:<3} {name:<15} {:>3} launches, {} copies, {} rows on the host",
                work.launches, work.copies, work.host_rows
            );
            let mut group = c.benchmark_group(format!("sampling/{name}"));
            group.sample_size(10);
            group.bench_with_input(BenchmarkId::new("host", b), &specs, |bench, specs| {
                bench.iter(|| select_host(black_box(&logits), specs).expect("host"))
            });
            group.bench_with_input(BenchmarkId::new("device", b), &specs, |bench, specs| {
                bench.iter(|| select_device_counted(black_box(&logits), specs).expect("device"))
            });
            group.finish();
        }
    }
}

fn greedy_and_penalties(c: &mut Criterion) {
    let data = rows(32, 2);
    let logits = Tensor::from_vec(data.concat(), (32, VOCAB), &Device::Cpu).expect("rows");
    c.bench_function("greedy argmax B=32", |b| {
        b.iter(|| greedy_ids(black_box(&logits)).expect("greedy"))
    });
    let prompt: Vec<u32> = (0..4000).map(|i| (i * 37) % VOCAB as u32).collect();
    let mut seqs: Vec<SequenceSampler> = (0..32)
        .map(|_| {
            SequenceSampler::new(
                SamplingParams {
                    repetition_penalty: 1.1,
                    presence_penalty: 0.5,
                    ..Default::default()
                },
                &prompt,
            )
        })
        .collect();
    for s in seqs.iter_mut() {
        for t in 0..500 {
            s.record(t * 13);
        }
    }
    let views: Vec<&SequenceSampler> = seqs.iter().collect();
    c.bench_function("penalties, 4000-token prompt + 500 outputs, B=32", |b| {
        b.iter(|| process_logits(black_box(&logits), &views).expect("penalties"))
    });
}

criterion_group! {
    name = benches;
    // No plots: they need system fonts, which headless machines lack.
    config = Criterion::default().without_plots();
    targets = selection, greedy_and_penalties
}
criterion_main!(benches);
