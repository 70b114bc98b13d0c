//! SwiGLU over the fused gate|up projection: `silu(gate) · up`, `[rows, 2·inter]` → `[rows, inter]`.
//!
//! On the CPU with f32 activations it is one pass and one allocation instead of candle's three
//! (silu of a strided half, then the product with the other strided half): during prefill these
//! are `rows × inter` floats each, large enough that the extra passes and the fresh pages behind
//! every new tensor cost a visible share of the step. The arithmetic is candle's own silu,
//! `g / (1 + exp(-g))`, then one multiply, so both paths give the same bits.

use candle_core::{CpuStorage, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

/// `gate_up`: `[rows, 2·inter]`, gate columns first → `[rows, inter]`.
pub fn swiglu(gate_up: &Tensor) -> candle_core::Result<Tensor> {
    let (_, width) = gate_up.dims2()?;
    if width % 2 != 0 {
        bail!("swiglu: odd gate|up width {width}")
    }
    if gate_up.device().is_cpu() && gate_up.dtype() == candle_core::DType::F32 {
        return gate_up.contiguous()?.apply_op1_no_bwd(&FusedSwiglu);
    }
    composed(gate_up)
}

/// The same map from candle's ops, for other devices and dtypes (and as the tests' reference).
fn composed(gate_up: &Tensor) -> candle_core::Result<Tensor> {
    let inter = gate_up.dim(1)? / 2;
    candle_nn::ops::silu(&gate_up.narrow(1, 0, inter)?)? * gate_up.narrow(1, inter, inter)?
}

/// Rows per rayon task: a few rows keep the task overhead small next to the work.
const ROWS_PER_TASK: usize = 4;

struct FusedSwiglu;

impl candle_core::CustomOp1 for FusedSwiglu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, width) = layout.shape().dims2()?;
        let (CpuStorage::F32(x), Some((start, end))) = (x, layout.contiguous_offsets()) else {
            bail!("fused-swiglu needs a contiguous f32 input")
        };
        let inter = width / 2;
        let x = &x[start..end];
        let mut y = vec![0f32; rows * inter];
        if inter > 0 {
            y.par_chunks_mut(inter * ROWS_PER_TASK)
                .zip(x.par_chunks(width * ROWS_PER_TASK))
                .for_each(|(out, input)| {
                    for (out_row, in_row) in out.chunks_mut(inter).zip(input.chunks(width)) {
                        let (gate, up) = in_row.split_at(inter);
                        for ((o, &g), &u) in out_row.iter_mut().zip(gate).zip(up) {
                            *o = g / (1.0 + (-g).exp()) * u;
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, inter))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    #[test]
    fn fused_matches_candles_ops_bit_for_bit() {
        for (rows, inter) in [(1, 8), (3, 7), (9, 96), (37, 130)] {
            let x = Tensor::randn(0f32, 3.0, (rows, 2 * inter), &Device::Cpu).unwrap();
            let fused = swiglu(&x).unwrap();
            assert_eq!(fused.dims(), &[rows, inter]);
            assert_eq!(bits(&fused), bits(&composed(&x).unwrap()), "{rows}×{inter}");
        }
    }

    #[test]
    fn takes_strided_inputs_and_other_dtypes() {
        let x = Tensor::randn(0f32, 1.0, (12, 5), &Device::Cpu).unwrap();
        let strided = x.t().unwrap();
        assert_eq!(
            bits(&swiglu(&strided).unwrap()),
            bits(&composed(&strided.contiguous().unwrap()).unwrap())
        );
        let half = x.to_dtype(DType::BF16).unwrap().t().unwrap();
        assert_eq!(swiglu(&half).unwrap().dims(), &[5, 6]);
    }

    #[test]
    fn edge_shapes() {
        let empty = Tensor::zeros((0, 8), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(swiglu(&empty).unwrap().dims(), &[0, 4]);
        let odd = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(swiglu(&odd).is_err());
    }
}
