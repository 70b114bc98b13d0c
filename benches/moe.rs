//! One sparse block of Qwen3-30B-A3B's shape (128 experts of hidden 2048 → width 768, top-8)
//! against a dense SwiGLU MLP of the same active shape (width 8 × 768 = 6144): the same
//! multiply-adds a token, in one product instead of eight experts'. At 512 tokens (a prefill
//! step) the dense MLP is what the kernels do at their best, so the ratio is what routing,
//! grouping and many small products cost; at 1 token (a decode step) both read the same bytes
//! (eight experts' weights, or the dense weight); at 16 (c = 16 decoding) the block reads most
//! of its 128 experts. In bf16 (the packed kernel), Q8_0 and Q4_K (the integer kernels).
//!
//!     cargo bench --bench moe
//!     TEALIGHT_BENCH_FORMATS=q8_0 cargo bench --bench moe     # one format (faster set-up)

use candle_core::{DType, Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use tealight::model::layers::Projection;
use tealight::model::mlp::DenseMlp;
use tealight::model::moe::SparseMoe;
use tealight::weights::gguf::GgmlType;
use tealight::weights::quantized::QuantizedWeight;
use tealight::weights::store::StoredWeight;

const HIDDEN: usize = 2048;
const WIDTH: usize = 768;
const EXPERTS: usize = 128;
const TOP_K: usize = 8;

/// A `[out, in]` weight as a checkpoint of `format` would hold it.
fn stored(out: usize, inp: usize, format: &str) -> StoredWeight {
    let scale = (3.0 / inp as f64).sqrt();
    let w = Tensor::rand(-scale, scale, (out, inp), &Device::Cpu)
        .and_then(|w| w.to_dtype(DType::F32))
        .expect("weight");
    match format {
        "bf16" => StoredWeight::Dense(w.to_dtype(DType::BF16).expect("bf16")),
        "q8_0" => {
            StoredWeight::Quantized(QuantizedWeight::quantize(&w, GgmlType::Q8_0).expect("q8_0"))
        }
        _ => StoredWeight::Quantized(QuantizedWeight::quantize(&w, GgmlType::Q4_K).expect("q4_k")),
    }
}

fn mlp(width: usize, format: &str) -> DenseMlp {
    let dev = Device::Cpu;
    let gate_up = vec![stored(width, HIDDEN, format), stored(width, HIDDEN, format)];
    DenseMlp::new(
        Projection::from_stored_parts(gate_up, &dev, DType::F32).expect("gate|up"),
        Projection::from_stored_parts(vec![stored(HIDDEN, width, format)], &dev, DType::F32)
            .expect("down"),
    )
}

fn moe(c: &mut Criterion) {
    let mut group = c.benchmark_group("moe_30b_a3b_layer");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let formats = std::env::var("TEALIGHT_BENCH_FORMATS").unwrap_or("bf16,q8_0,q4_k".into());
    for format in formats.split(',') {
        let router = Tensor::randn(0f32, 0.05, (EXPERTS, HIDDEN), &Device::Cpu).expect("router");
        let sparse = SparseMoe::new(
            Projection::from_stored(router, DType::F32).expect("router"),
            (0..EXPERTS).map(|_| mlp(WIDTH, format)).collect(),
            TOP_K,
            true,
        );
        let dense = mlp(TOP_K * WIDTH, format);
        for tokens in [1usize, 16, 512] {
            let x = Tensor::randn(0f32, 1.0, (tokens, HIDDEN), &Device::Cpu).expect("input");
            group.throughput(Throughput::Elements(tokens as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("sparse_{format}"), tokens),
                &x,
                |b, x| b.iter(|| sparse.forward(x).expect("sparse")),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("dense_same_active_{format}"), tokens),
                &x,
                |b, x| b.iter(|| dense.forward(x).expect("dense")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, moe);
criterion_main!(benches);
