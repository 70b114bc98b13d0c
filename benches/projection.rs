//! One projection of a Qwen3-0.6B-shaped layer (gate|up: 1024 → 6144, f32) at the row counts a
//! step is made of — single decodes, decode batches, prefill chunks — through candle's matmul
//! with the checkpoint's `[out, in]` weight (`x · Wᵀ` on a transposed view) and through
//! [`Projection`], which keeps the weight as `[in, out]` on the CPU and multiplies one row as two.
//!
//!     cargo bench --bench projection

use candle_core::{Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use tealight::model::layers::Projection;

const IN: usize = 1024;
const OUT: usize = 6144;

fn projection(c: &mut Criterion) {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 0.02, (OUT, IN), &dev).expect("weight");
    let proj = Projection::from_weight(w.clone()).expect("projection");
    let mut group = c.benchmark_group("projection_1024x6144");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for rows in [1usize, 2, 4, 16, 64, 512] {
        let x = Tensor::randn(0f32, 1.0, (rows, IN), &dev).expect("input");
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("checkpoint_layout", rows), &x, |b, x| {
            b.iter(|| x.matmul(&w.t().expect("view")).expect("matmul"))
        });
        group.bench_with_input(BenchmarkId::new("projection", rows), &x, |b, x| {
            b.iter(|| proj.forward(x).expect("forward"))
        });
    }
    group.finish();
}

// No plots: criterion's plotting backend panics on machines without system fonts.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = projection
}
criterion_main!(benches);
