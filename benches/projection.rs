//! One projection of a Qwen3-0.6B-shaped layer (gate|up: 1024 → 6144, f32 activations) at the
//! row counts a step is made of — single decodes, decode batches, prefill chunks — three ways:
//! - `gemm_f32`: candle's matmul (gemm 0.19) on the weight held as `[in, out]` f32, one row
//!   multiplied as two (the path CPUs without AVX2 take);
//! - `packed_f32`, `packed_bf16`: the packed kernel with the weight kept in f32 or in bf16;
//! - `packed_fp8`: the packed kernel on e4m3 weights with 128 × 128 block scales;
//! - `candle_q8_0`, `candle_q4_k`, `candle_q6_k`: candle's `QMatMul` on the GGML formats;
//! - `panels_q8_0`, `panels_q4_k`, `panels_q6_k`: our integer kernels on the same weights.
//!
//! and `head_151936x1024`: the tied head of Qwen3-0.6B in each GGML format, larger than the
//! caches, so a single row measures how fast the format streams from memory.
//!
//!     cargo bench --bench projection

use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use tealight::kernels::cpu_linear::{PackedWeight, QuantizedPanels};
use tealight::weights::fp8::Fp8Weight;
use tealight::weights::gguf::GgmlType;
use tealight::weights::quantized::{CandleQuantized, QuantizedWeight};

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
    let packed_fp8 = PackedWeight::pack_fp8(&Fp8Weight::quantize(&w32, [128, 128]).expect("fp8"))
        .expect("pack fp8");
    let quantized: Vec<(&str, CandleQuantized, QuantizedPanels)> = [
        ("q8_0", GgmlType::Q8_0),
        ("q4_k", GgmlType::Q4_K),
        ("q6_k", GgmlType::Q6_K),
    ]
    .into_iter()
    .map(|(name, kind)| {
        let q = QuantizedWeight::quantize(&w32, kind).expect("quantize");
        (
            name,
            CandleQuantized::new(&q, &dev).expect("candle"),
            QuantizedPanels::pack(&q).expect("panels"),
        )
    })
    .collect();
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
            group.bench_with_input(BenchmarkId::new("packed_fp8", rows), &x, |b, x| {
                b.iter(|| packed_fp8.forward(x).expect("packed"))
            });
            for (name, candle, panels) in &quantized {
                group.bench_with_input(
                    BenchmarkId::new(format!("candle_{name}"), rows),
                    &x,
                    |b, x| b.iter(|| candle.forward(x).expect("candle")),
                );
                group.bench_with_input(
                    BenchmarkId::new(format!("panels_{name}"), rows),
                    &x,
                    |b, x| b.iter(|| panels.forward(x).expect("panels")),
                );
            }
        }
    }
    group.finish();
}

/// The tied head of Qwen3-0.6B (151936 × 1024): a weight far larger than the caches, so a
/// single row measures how fast each format streams from memory (throughput in bytes read).
fn head(c: &mut Criterion) {
    const VOCAB: usize = 151_936;
    if !PackedWeight::supported() {
        return;
    }
    let dev = Device::Cpu;
    let w32 = Tensor::randn(0f32, 0.02, (VOCAB, IN), &dev).expect("weight");
    let mut group = c.benchmark_group("head_151936x1024");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let x = Tensor::randn(0f32, 1.0, (1, IN), &dev).expect("input");
    for (name, packed) in [
        (
            "bf16",
            w32.to_dtype(DType::BF16)
                .and_then(|w| PackedWeight::pack(&w)),
        ),
        (
            "fp8",
            Fp8Weight::quantize(&w32, [128, 128]).and_then(|w| PackedWeight::pack_fp8(&w)),
        ),
    ] {
        let packed = packed.expect("packed");
        let bytes = VOCAB * IN * if name == "bf16" { 2 } else { 1 };
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::new(format!("packed_{name}"), 1), &x, |b, x| {
            b.iter(|| packed.forward(x).expect("packed"))
        });
    }
    for (name, kind) in [
        ("q8_0", GgmlType::Q8_0),
        ("q4_k", GgmlType::Q4_K),
        ("q6_k", GgmlType::Q6_K),
    ] {
        let q = QuantizedWeight::quantize(&w32, kind).expect("quantize");
        let panels = QuantizedPanels::pack(&q).expect("panels");
        group.throughput(Throughput::Bytes(q.bytes.len() as u64));
        for rows in [1usize, 4] {
            let x = Tensor::randn(0f32, 1.0, (rows, IN), &dev).expect("input");
            group.bench_with_input(
                BenchmarkId::new(format!("panels_{name}"), rows),
                &x,
                |b, x| b.iter(|| panels.forward(x).expect("panels")),
            );
        }
    }
    group.finish();
}

// No plots: criterion's plotting backend panics on machines without system fonts.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = projection, head
}
criterion_main!(benches);
