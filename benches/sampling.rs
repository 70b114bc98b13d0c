//! Timing of the sampling paths at Qwen3's vocabulary size (151,936).
//!
//! A plain timing loop (no external bench framework):
//! `CARGO_PROFILE_TEST_OPT_LEVEL=3 cargo test --bench sampling` (or `cargo bench --bench sampling`).

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tealight::sampling::{
    RowSpec, SamplingParams, SequenceSampler, greedy_ids, process_logits, select_device,
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

fn time<F: FnMut()>(label: &str, per: usize, mut f: F) {
    f();
    let start = Instant::now();
    let mut iters = 0;
    while start.elapsed() < Duration::from_millis(1500) || iters < 3 {
        f();
        iters += 1;
    }
    let each = start.elapsed() / (iters * per as u32);
    println!("{label:<58} {:>9.1} us", each.as_secs_f64() * 1e6);
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

fn main() {
    let data = rows(32, 1);
    let batch =
        |n: usize| Tensor::from_vec(data[..n].concat(), (n, VOCAB), &Device::Cpu).expect("tensor");
    let one = batch(1);
    let eight = batch(8);
    let thirty_two = batch(32);
    let cases = [
        (
            "qwen3 defaults (T 0.6, top_k 20, top_p 0.95)",
            spec(0.6, 20, 0.95, 0.0),
        ),
        ("top_p 0.9 only", spec(1.0, 0, 0.9, 0.0)),
        ("plain sampling (T 1)", spec(1.0, 0, 1.0, 0.0)),
        ("min_p 0.05", spec(1.0, 0, 1.0, 0.05)),
        ("top_k 2000", spec(1.0, 2000, 1.0, 0.0)),
    ];
    println!("per row, vocab {VOCAB}, on this machine's CPU:");
    for (name, s) in cases {
        time(&format!("host  B=1  {name}"), 1, || {
            select_host(&one, &[s]).expect("host");
        });
        time(&format!("host  B=32 {name}"), 32, || {
            select_host(&thirty_two, &[s; 32]).expect("host");
        });
        time(&format!("device-ops on CPU B=8 {name}"), 8, || {
            select_device(&eight, &[s; 8]).expect("device");
        });
    }
    time("greedy argmax (device ops) B=32", 32, || {
        greedy_ids(&thirty_two).expect("greedy");
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
    time(
        "penalties, 4000-token prompt + 500 outputs, B=32",
        32,
        || {
            process_logits(&thirty_two, &views).expect("penalties");
        },
    );
}
