//! One projection of a Qwen3-0.6B-shaped layer (gate|up: 1024 → 6144, f32 activations) at the
//! row counts a step is made of — single decodes, decode batches, prefill chunks — three ways:
//! - `gemm_f32`: candle's matmul (gemm 0.19) on the weight held as `[in, out]` f32, one row
//!   multiplied as two (the path CPUs without AVX2 take);
//! - `packed_f32`, `packed_bf16`: the packed kernel with the weight kept in f32 or in bf16.
//!
//!     cargo bench --bench projection

use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use tealight::model::cpu_linear::PackedWeight;

const IN: usize = 1024;
const OUT: usize = 6144;

fn projection(c: &mut Criterion) {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 0.02, (OUT, IN), &dev)
        .and_then(|w| w.to_dtype(DType::BF16))
        .expect("weight");
    let w32 = w.to_dtype(DType::F32).expect("f32 weight");
    let transposed = w32.t().and_then(|t| t.contiguous()).expect("transpose");
    let packed_f32 = PackedWeight::pack(&w32).expect("pack f32");
    let packed_bf16 = PackedWeight::pack(&w).expect("pack bf16");
    let mut group = c.benchmark_group("projection_1024x6144");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for rows in [1usize, 2, 4, 16, 64, 512] {
        let x = Tensor::randn(0f32, 1.0, (rows, IN), &dev).expect("input");
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("gemm_f32", rows), &x, |b, x| {
            b.iter(|| {
                if rows == 1 {
                    Tensor::cat(&[x, x], 0)
                        .and_then(|xx| xx.matmul(&transposed))
                        .expect("matmul")
                } else {
                    x.matmul(&transposed).expect("matmul")
                }
            })
        });
        if PackedWeight::supported() {
            group.bench_with_input(BenchmarkId::new("packed_f32", rows), &x, |b, x| {
                b.iter(|| packed_f32.forward(x).expect("packed"))
            });
            group.bench_with_input(BenchmarkId::new("packed_bf16", rows), &x, |b, x| {
                b.iter(|| packed_bf16.forward(x).expect("packed"))
            });
        }
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
