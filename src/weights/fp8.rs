//! Block-scaled FP8 weights, as Qwen's FP8 checkpoints store them
//! (`quantization_config: {quant_method: "fp8", fmt: "e4m3", weight_block_size: [128, 128]}`):
//! each linear `weight` is e4m3 `[out, in]`, and `weight_scale_inv` holds one scale per
//! `128 × 128` block; the real weight is the e4m3 value times its block's scale.

use candle_core::{DType, Device, Tensor};
use float8::F8E4M3;

/// The largest finite e4m3 value.
const E4M3_MAX: f32 = 448.0;

#[derive(Clone)]
pub struct Fp8Weight {
    pub rows: usize,
    pub cols: usize,
    /// e4m3 bytes, row-major.
    pub bytes: Vec<u8>,
    /// `[ceil(rows / block[0]), ceil(cols / block[1])]`, row-major.
    pub scales: Vec<f32>,
    pub block: [usize; 2],
}

impl std::fmt::Debug for Fp8Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fp8Weight({}x{}, blocks {:?})",
            self.rows, self.cols, self.block
        )
    }
}

impl Fp8Weight {
    fn grid(rows: usize, cols: usize, block: [usize; 2]) -> [usize; 2] {
        [rows.div_ceil(block[0]), cols.div_ceil(block[1])]
    }

    /// From a checkpoint's e4m3 `weight` and its `weight_scale_inv`; the error says what is
    /// wrong (the caller names the tensor).
    pub fn from_tensors(
        weight: &Tensor,
        scale_inv: &Tensor,
        block: [usize; 2],
    ) -> Result<Self, String> {
        let (rows, cols) = weight.dims2().map_err(|e| e.to_string())?;
        if weight.dtype() != DType::F8E4M3 {
            return Err(format!("is {:?}, expected F8_E4M3", weight.dtype()));
        }
        let grid = Self::grid(rows, cols, block);
        if scale_inv.dims() != grid {
            return Err(format!(
                "weight_scale_inv has shape {:?}, expected {grid:?} for a {rows}x{cols} weight in blocks of {block:?}",
                scale_inv.dims()
            ));
        }
        let bytes = weight
            .flatten_all()
            .and_then(|t| t.to_vec1::<F8E4M3>())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|v| v.to_bits())
            .collect();
        let scales = scale_inv
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            rows,
            cols,
            bytes,
            scales,
            block,
        })
    }

    /// Quantizes a dense `[rows, cols]` weight (`--quantization fp8`): per block, the scale
    /// maps its largest magnitude to e4m3's largest value.
    pub fn quantize(weight: &Tensor, block: [usize; 2]) -> candle_core::Result<Self> {
        let (rows, cols) = weight.dims2()?;
        let w = weight
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let grid = Self::grid(rows, cols, block);
        let mut scales = vec![0f32; grid[0] * grid[1]];
        for (i, &v) in w.iter().enumerate() {
            let at = (i / cols / block[0]) * grid[1] + (i % cols) / block[1];
            scales[at] = scales[at].max(v.abs());
        }
        for s in &mut scales {
            *s = if *s > 0.0 { *s / E4M3_MAX } else { 1.0 };
        }
        let bytes = w
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let s = scales[(i / cols / block[0]) * grid[1] + (i % cols) / block[1]];
                F8E4M3::from_f32(v / s).to_bits()
            })
            .collect();
        Ok(Self {
            rows,
            cols,
            bytes,
            scales,
            block,
        })
    }

    /// The scale of weight `(row, col)`.
    pub fn scale(&self, row: usize, col: usize) -> f32 {
        let grid = Self::grid(self.rows, self.cols, self.block);
        self.scales[(row / self.block[0]) * grid[1] + col / self.block[1]]
    }

    /// The weight in f32 (value × scale), through candle's e4m3 conversion.
    pub fn dequantize(&self) -> candle_core::Result<Tensor> {
        let values = Tensor::from_raw_buffer(
            &self.bytes,
            DType::F8E4M3,
            &[self.rows, self.cols],
            &Device::Cpu,
        )?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
        let scaled = values
            .iter()
            .enumerate()
            .map(|(i, v)| v * self.scale(i / self.cols, i % self.cols))
            .collect();
        Tensor::from_vec(scaled, (self.rows, self.cols), &Device::Cpu)
    }

    /// Stacks weights along the rows (q|k|v, gate|up); each part but the last must be whole
    /// row blocks, so the scale grids stack too.
    pub fn stack(parts: Vec<Self>) -> Result<Self, String> {
        let mut iter = parts.into_iter();
        let mut first = iter.next().ok_or("no weights to stack")?;
        for part in iter {
            if part.cols != first.cols
                || part.block != first.block
                || !first.rows.is_multiple_of(first.block[0])
            {
                return Err(format!("cannot stack {part:?} onto {first:?}"));
            }
            first.rows += part.rows;
            first.bytes.extend_from_slice(&part.bytes);
            first.scales.extend_from_slice(&part.scales);
        }
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_then_dequantize_is_close_and_stacks() {
        let w: Vec<f32> = (0..200 * 300)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 300.0)
            .collect();
        let t = Tensor::from_vec(w.clone(), (200, 300), &Device::Cpu).unwrap();
        let q = Fp8Weight::quantize(&t, [128, 128]).unwrap();
        assert_eq!(q.scales.len(), 2 * 3);
        let back = q
            .dequantize()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (a, b) in w.iter().zip(&back) {
            // e4m3 keeps 3 mantissa bits: within 1/16 relative, or the block's subnormal step.
            assert!((a - b).abs() <= a.abs() / 16.0 + 1e-3, "{a} vs {b}");
        }
        let top = Fp8Weight::quantize(&t.narrow(0, 0, 128).unwrap(), [128, 128]).unwrap();
        let rest = Fp8Weight::quantize(&t.narrow(0, 128, 72).unwrap(), [128, 128]).unwrap();
        let stacked = Fp8Weight::stack(vec![top, rest]).unwrap();
        assert_eq!(stacked.bytes, q.bytes);
        assert_eq!(stacked.scales, q.scales);
        let odd = Fp8Weight::quantize(&t.narrow(0, 0, 100).unwrap(), [128, 128]).unwrap();
        assert!(Fp8Weight::stack(vec![odd, q]).is_err());
    }
}
