use super::*;
use crate::kernels::Widen;
use candle_core::Device;

fn random_weight(out_dim: usize, in_dim: usize, seed: u64, dtype: DType) -> Tensor {
    // A fixed-seed generator: failures reproduce.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..out_dim * in_dim)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Tensor::from_vec(values, (out_dim, in_dim), &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn run(w: &PackedWeight, x: &Tensor) -> Vec<f32> {
    w.forward(x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Every tile shape (1–6 rows, one or two panels, partial last panel, several row blocks, the
/// streamed and the blocked path, inner dimensions across slices) against the scalar chain, bit for bit, in each kept dtype.
#[test]
fn kernel_matches_the_scalar_chain_bit_for_bit() {
    if !PackedWeight::supported() {
        eprintln!("skipped: this CPU has no AVX2/FMA/F16C");
        return;
    }
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for (out_dim, in_dim) in [(1, 1), (15, 7), (16, 64), (17, 33), (48, 300), (100, 129)] {
            let w = PackedWeight::pack(&random_weight(out_dim, in_dim, 7, dtype)).unwrap();
            assert_eq!(w.dtype(), dtype);
            for rows in [1, 2, 3, 4, 5, 6, 7, 12, 13, 19, 24, 29, 37] {
                let x = random_weight(rows, in_dim, rows as u64, DType::F32);
                let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(
                    bits(&run(&w, &x)),
                    bits(&w.reference(&xv, rows)),
                    "{dtype:?} {rows}x{in_dim} · {in_dim}x{out_dim}"
                );
            }
        }
    }
}

/// The reference itself is the product: close to candle's matmul of the widened weight.
#[test]
fn reference_is_the_matrix_product() {
    let weight = random_weight(37, 50, 3, DType::BF16);
    let x = random_weight(5, 50, 4, DType::F32);
    let w = PackedWeight::pack(&weight).unwrap();
    let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let expected = x
        .matmul(&weight.to_dtype(DType::F32).unwrap().t().unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (a, b) in w.reference(&xv, 5).iter().zip(&expected) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

/// Widening is exact: a bf16 weight gives the same bits as the same values held in f32.
#[test]
fn half_precision_weights_multiply_as_their_f32_values() {
    if !PackedWeight::supported() {
        return;
    }
    let x = random_weight(9, 200, 1, DType::F32);
    for dtype in [DType::BF16, DType::F16] {
        let weight = random_weight(40, 200, 2, dtype);
        let kept = PackedWeight::pack(&weight).unwrap();
        let widened = PackedWeight::pack(&weight.to_dtype(DType::F32).unwrap()).unwrap();
        assert_eq!(bits(&run(&kept, &x)), bits(&run(&widened, &x)), "{dtype:?}");
    }
}

/// A row's output does not depend on how many rows share the call.
#[test]
fn rows_are_bitwise_independent_of_the_row_count() {
    if !PackedWeight::supported() {
        return;
    }
    let w = PackedWeight::pack(&random_weight(96, 1536, 5, DType::BF16)).unwrap();
    let x = random_weight(40, 1536, 6, DType::F32);
    let first_row = |rows: usize| run(&w, &x.narrow(0, 0, rows).unwrap())[..96].to_vec();
    let alone = bits(&first_row(1));
    for rows in [2, 3, 4, 6, 7, 16, 24, 40] {
        assert_eq!(bits(&first_row(rows)), alone, "{rows} rows");
    }
}

#[test]
fn rows_read_back_the_original_weight() {
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let weight = random_weight(21, 6, 9, dtype);
        let w = PackedWeight::pack(&weight).unwrap();
        let ids = [20u32, 0, 16, 15, 20];
        let got = w.rows(&ids).unwrap().to_vec2::<f32>().unwrap();
        let ids_t = Tensor::new(&ids, &Device::Cpu).unwrap();
        let want = weight
            .index_select(&ids_t, 0)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(got, want, "{dtype:?}");
        assert!(w.rows(&[21]).is_err());
    }
}

#[test]
fn mismatched_inputs_are_errors() {
    let w = PackedWeight::pack(&random_weight(8, 4, 1, DType::F32)).unwrap();
    let wrong_width = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
    assert!(w.forward(&wrong_width).is_err());
    let wrong_dtype = Tensor::zeros((2, 4), DType::BF16, &Device::Cpu).unwrap();
    assert!(w.forward(&wrong_dtype).is_err());
}

#[test]
fn empty_batches_give_empty_outputs() {
    let w = PackedWeight::pack(&random_weight(8, 4, 1, DType::F32)).unwrap();
    if PackedWeight::supported() {
        let y = w
            .forward(&Tensor::zeros((0, 4), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(y.dims(), &[0, 8]);
    }
}

/// FP8 panels: the kernel is its scalar definition bit for bit (block chains, each scaled once),
/// within a few ulps of the product with the dequantized weight (value × block scale).
#[test]
fn fp8_weights_multiply_as_their_dequantized_values() {
    use crate::weights::fp8::Fp8Weight;
    if !PackedWeight::supported() {
        return;
    }
    for (out_dim, in_dim) in [(16, 128), (48, 300), (256, 200)] {
        let dense = random_weight(out_dim, in_dim, 11, DType::F32);
        let q = Fp8Weight::quantize(&(dense * 40.0).unwrap(), [16, 128]).unwrap();
        let fp8 = PackedWeight::pack_fp8(&q).unwrap();
        assert_eq!(fp8.dtype(), DType::F8E4M3);
        let widened = PackedWeight::pack(&q.dequantize().unwrap()).unwrap();
        for rows in [1, 3, 7, 13] {
            let x = random_weight(rows, in_dim, rows as u64, DType::F32);
            let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = run(&fp8, &x);
            assert_eq!(
                bits(&got),
                bits(&fp8.reference(&xv, rows)),
                "{out_dim}x{in_dim} {rows}"
            );
            #[cfg(target_arch = "x86_64")]
            assert_eq!(
                bits(&super::kernel::with_avx2_only(|| run(&fp8, &x))),
                bits(&got),
                "AVX2 tiles, {out_dim}x{in_dim} {rows}"
            );
            // The dequantized product rounds each weight's product with its scale; FP8 applies
            // the scale once a block: a few ulps apart, not bits.
            let want = run(&widened, &x);
            let size = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-5 * size,
                "{out_dim}x{in_dim} {rows}: {worst} of {size}"
            );
        }
        let ids = [0u32, (out_dim - 1) as u32];
        let want = q
            .dequantize()
            .unwrap()
            .index_select(&Tensor::new(&ids, &Device::Cpu).unwrap(), 0)
            .unwrap();
        assert_eq!(
            fp8.rows(&ids).unwrap().to_vec2::<f32>().unwrap(),
            want.to_vec2::<f32>().unwrap()
        );
    }
    // Every byte widens like candle's e4m3 conversion (subnormals and signs included; 0x7f and
    // 0xff are e4m3's NaN).
    for b in (0u8..=255).filter(|b| b & 0x7F != 0x7F) {
        let want = Tensor::from_raw_buffer(&[b], DType::F8E4M3, &[1], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        let two_to_120 = F8E4M3::INPUT_FACTOR * F8E4M3::SCALE_FACTOR;
        assert_eq!(F8E4M3(b).widen() * two_to_120, want, "{b:#04x}");
    }
}
