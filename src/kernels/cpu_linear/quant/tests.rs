use super::*;
use crate::weights::quantized::QuantizedWeight;
use candle_core::{DType, Device};

fn values(n: usize, seed: u64) -> Vec<f32> {
    // A fixed-seed generator: failures reproduce.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn weight(dtype: GgmlType, out_dim: usize, in_dim: usize, seed: u64) -> QuantizedWeight {
    let t = Tensor::from_vec(
        values(out_dim * in_dim, seed),
        (out_dim, in_dim),
        &Device::Cpu,
    )
    .unwrap();
    QuantizedWeight::quantize(&t, dtype).unwrap()
}

fn run(w: &QuantizedPanels, x: &[f32], rows: usize) -> Vec<f32> {
    let x = Tensor::from_vec(x.to_vec(), (rows, w.in_dim), &Device::Cpu).unwrap();
    w.forward(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

const TYPES: [GgmlType; 3] = [GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K];

fn shapes(dtype: GgmlType) -> Vec<(usize, usize)> {
    let block = Format::of(dtype)
        .unwrap()
        .activation_block()
        .max(dtype.block_size());
    vec![
        (1, block),
        (8, block),
        (13, 2 * block),
        (40, 4 * block),
        (67, 3 * block),
    ]
}

/// Every row count (whole and partial row tiles) and partial last panels, against the scalar
/// definition, bit for bit.
#[test]
fn kernels_match_the_scalar_definition_bit_for_bit() {
    if !cpu_supported() {
        eprintln!("skipped: this CPU has no AVX2/FMA/F16C");
        return;
    }
    for dtype in TYPES {
        for (out_dim, in_dim) in shapes(dtype) {
            let w = QuantizedPanels::pack(&weight(dtype, out_dim, in_dim, 3)).unwrap();
            for rows in [1, 2, 3, 4, 5, 7, 8, 9, 13] {
                let x = values(rows * in_dim, rows as u64 + 10);
                let expected = bits(&w.reference(&x, rows));
                assert_eq!(
                    bits(&run(&w, &x, rows)),
                    expected,
                    "{dtype} {rows}x{in_dim} · {in_dim}x{out_dim}"
                );
                for tiles in Tiles::available() {
                    let mut y = vec![0f32; rows * out_dim];
                    w.multiply_with(&x, rows, &mut y, tiles).unwrap();
                    assert_eq!(
                        bits(&y),
                        expected,
                        "{tiles:?} {dtype} {rows}x{in_dim} · {in_dim}x{out_dim}"
                    );
                }
            }
        }
    }
}

/// The definition is the product of the dequantized weight with the input, up to the input's
/// 8-bit quantization.
#[test]
fn reference_is_the_product_of_the_dequantized_weight() {
    for dtype in TYPES {
        let (out_dim, in_dim) = (24, 512);
        let q = weight(dtype, out_dim, in_dim, 5);
        let w = QuantizedPanels::pack(&q).unwrap();
        let x = values(3 * in_dim, 6);
        let xt = Tensor::from_vec(x.clone(), (3, in_dim), &Device::Cpu).unwrap();
        let want = xt
            .matmul(&q.dequantize().unwrap().t().unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = w.reference(&x, 3);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 0.01 * scale, "{dtype}: {a} vs {b}");
        }
    }
}

/// A row's output does not depend on how many rows share the call.
#[test]
fn rows_are_bitwise_independent_of_the_row_count() {
    if !cpu_supported() {
        return;
    }
    for dtype in TYPES {
        let in_dim = 1024;
        let w = QuantizedPanels::pack(&weight(dtype, 40, in_dim, 7)).unwrap();
        let x = values(23 * in_dim, 8);
        let first = |rows: usize| bits(&run(&w, &x[..rows * in_dim], rows)[..40]);
        let alone = first(1);
        for rows in [2, 3, 4, 5, 8, 23] {
            assert_eq!(first(rows), alone, "{dtype} {rows} rows");
        }
    }
}

#[test]
fn rows_read_back_the_dequantized_weight() {
    for dtype in TYPES {
        let q = weight(dtype, 21, 64.max(dtype.block_size()), 9);
        let w = QuantizedPanels::pack(&q).unwrap();
        let ids = [20u32, 0, 8, 7, 20];
        let got = w.rows(&ids).unwrap().to_vec2::<f32>().unwrap();
        let ids_t = Tensor::new(&ids, &Device::Cpu).unwrap();
        let want = q
            .dequantize()
            .unwrap()
            .index_select(&ids_t, 0)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(got, want, "{dtype}");
        assert!(w.rows(&[21]).is_err());
    }
}
