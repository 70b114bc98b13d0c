//! Activations quantized to 8 bits per block, per row, as the integer kernels take them:
//! blocks of 32 with one f32 scale each (for Q8_0 weights), or blocks of 256 with one scale
//! and the sums of every 16 values (for the K-quants, whose minimums and offsets need them).
//!
//! Quantizing a row depends on that row alone, so it keeps a sequence's results independent of
//! what shares its batch. Scale `d = max|x| / 127`, `q = round_half_even(x / d)` computed as
//! `x · (1/d)`: the SIMD conversion rounds the same way, so any vectorised version would agree.

use rayon::prelude::*;

/// Values a parallel task quantizes at least.
const MIN_VALUES_PER_TASK: usize = 16 * 1024;

/// Rows of activations as int8 blocks.
pub struct QuantizedRows {
    pub rows: usize,
    pub cols: usize,
    pub block: usize,
    /// `rows × cols` int8 values, row-major.
    pub q: Vec<i8>,
    /// One scale per block, `rows × cols / block`.
    pub d: Vec<f32>,
    /// Sums of each run of 16 values, `rows × cols / 16` (only for 256-blocks).
    pub sums16: Vec<i16>,
}

impl QuantizedRows {
    /// Quantizes `x` (`rows × cols`, row-major) in blocks of `block` (32 or 256; `cols` a
    /// multiple of it).
    pub fn quantize(x: &[f32], rows: usize, cols: usize, block: usize) -> Self {
        assert!(cols.is_multiple_of(block) && x.len() >= rows * cols);
        let blocks = cols / block;
        let mut q = vec![0i8; rows * cols];
        let mut d = vec![0f32; rows * blocks];
        // A decode row is a few microseconds of work: split only what is worth a hand-over
        // to another thread.
        q.par_chunks_mut(block)
            .zip(d.par_iter_mut())
            .zip(x[..rows * cols].par_chunks(block))
            .with_min_len((MIN_VALUES_PER_TASK / block).max(1))
            .for_each(|((q, d), x)| *d = quantize_block(x, q));
        let sums16 = if block == 256 {
            q.chunks(16)
                .map(|c| c.iter().map(|&v| v as i16).sum())
                .collect()
        } else {
            Vec::new()
        };
        Self {
            rows,
            cols,
            block,
            q,
            d,
            sums16,
        }
    }

    pub fn blocks_per_row(&self) -> usize {
        self.cols / self.block
    }
}

/// Quantizes one block into `q`; returns its scale.
fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..512)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        for block in [32, 256] {
            let q = QuantizedRows::quantize(&x, 2, 256, block);
            for (i, &v) in x.iter().enumerate() {
                let d = q.d[i / block];
                let back = q.q[i] as f32 * d;
                assert!((back - v).abs() <= d * 0.5 + 1e-6, "{v} vs {back}");
            }
            if block == 256 {
                assert_eq!(q.sums16.len(), 32);
                let s: i16 = q.q[16..32].iter().map(|&v| v as i16).sum();
                assert_eq!(q.sums16[1], s);
            }
        }
        let zeros = QuantizedRows::quantize(&[0.0; 32], 1, 32, 32);
        assert_eq!(zeros.d, vec![0.0]);
        assert!(zeros.q.iter().all(|&v| v == 0));
    }
}
