//! Q8_0 weights (blocks of 32 int8 with an f16 scale) in panels of 8 columns, against Q8_0-style
//! activations: `y = Σ_blocks (Σ q_w · q_x) · (d_w · d_x)`, the integer dot exact, the block
//! terms accumulated with one FMA each, in block order.
//!
//! Panel layout, per block of 32 inputs (272 bytes): the 8 columns' scales (f16), then 8 steps
//! of 32 bytes, step `s` holding inputs `4s..4s+4` of column 0, then of column 1, …: one 32-bit
//! lane per column, which is what `maddubs`+`madd` (AVX2) and `vpdpbusd` (VNNI) sum into.

use super::activations::QuantizedRows;
use super::{COLS, Tile};
use half::f16;

pub const BLOCK: usize = 32;
const ROW_BLOCK_BYTES: usize = 34;
pub const PANEL_BLOCK_BYTES: usize = 16 + 8 * 32;

/// Bytes of one panel of `in_dim` inputs.
pub fn panel_bytes(in_dim: usize) -> usize {
    in_dim / BLOCK * PANEL_BLOCK_BYTES
}

/// Repacks GGML row-major Q8_0 (`out_dim` rows of `in_dim`) into panels; the last panel's
/// missing columns are zero.
pub fn pack(rows: &[u8], out_dim: usize, in_dim: usize, panel: &mut [u8], p: usize) {
    let blocks = in_dim / BLOCK;
    for j in 0..COLS.min(out_dim - p * COLS) {
        let row = &rows[(p * COLS + j) * blocks * ROW_BLOCK_BYTES..][..blocks * ROW_BLOCK_BYTES];
        for b in 0..blocks {
            let src = &row[b * ROW_BLOCK_BYTES..][..ROW_BLOCK_BYTES];
            let dst = &mut panel[b * PANEL_BLOCK_BYTES..][..PANEL_BLOCK_BYTES];
            dst[2 * j..2 * j + 2].copy_from_slice(&src[..2]);
            for s in 0..8 {
                dst[16 + s * 32 + j * 4..][..4].copy_from_slice(&src[2 + s * 4..][..4]);
            }
        }
    }
}

fn scale(panel: &[u8], b: usize, j: usize) -> f32 {
    let at = b * PANEL_BLOCK_BYTES + 2 * j;
    f16::from_le_bytes([panel[at], panel[at + 1]]).to_f32()
}

fn quant(panel: &[u8], b: usize, j: usize, k: usize) -> i8 {
    panel[b * PANEL_BLOCK_BYTES + 16 + (k / 4) * 32 + j * 4 + k % 4] as i8
}

/// Column `j` of a panel, dequantized.
pub fn dequantize_column(panel: &[u8], in_dim: usize, j: usize, out: &mut [f32]) {
    for (k, o) in out.iter_mut().enumerate().take(in_dim) {
        *o = scale(panel, k / BLOCK, j) * quant(panel, k / BLOCK, j, k % BLOCK) as f32;
    }
}

/// The scalar definition of the product for one panel, bit for bit what the kernels compute.
pub fn reference(panel: &[u8], x: &QuantizedRows, y: &mut [f32], y_stride: usize, cols: usize) {
    let blocks = x.cols / BLOCK;
    for r in 0..x.rows {
        for j in 0..cols {
            let mut acc = 0f32;
            for b in 0..blocks {
                let isum: i32 = (0..BLOCK)
                    .map(|k| quant(panel, b, j, k) as i32 * x.q[r * x.cols + b * BLOCK + k] as i32)
                    .sum();
                acc = (isum as f32).mul_add(scale(panel, b, j) * x.d[r * blocks + b], acc);
            }
            y[r * y_stride + j] = acc;
        }
    }
}

/// The tile's body, shared by its AVX2 and VNNI forms: `dot(acc, |w|, x signed by w)` adds each
/// column's four u8 × i8 products to its 32-bit lane. Inlined into each form, so it compiles
/// with that form's target features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_with<const R: usize>(
    t: &Tile,
    dot: impl Fn(
        std::arch::x86_64::__m256i,
        std::arch::x86_64::__m256i,
        std::arch::x86_64::__m256i,
    ) -> std::arch::x86_64::__m256i,
) {
    use std::arch::x86_64::*;
    // SAFETY: `t` describes `R` rows of `t.blocks` blocks, a panel of as many and `R` rows
    // of at least `t.cols` writable outputs (the caller's bounds); the caller has AVX2, FMA
    // and F16C.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..t.blocks {
            let p = t.panel.add(b * PANEL_BLOCK_BYTES);
            let wd = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let mut isum = [_mm256_setzero_si256(); R];
            for s in 0..8 {
                let w = _mm256_loadu_si256(p.add(16 + s * 32) as *const __m256i);
                // |w| as unsigned (−128 reads as 128), the sign moved onto x: both forms take
                // u8 × i8.
                let aw = _mm256_sign_epi8(w, w);
                for (r, isum) in isum.iter_mut().enumerate() {
                    let xv = _mm256_set1_epi32(
                        (t.xq.add(r * t.x_stride + b * BLOCK + s * 4) as *const i32)
                            .read_unaligned(),
                    );
                    *isum = dot(*isum, aw, _mm256_sign_epi8(xv, w));
                }
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let xd = _mm256_set1_ps(*t.xd.add(r * t.xd_stride + b));
                let s = _mm256_mul_ps(wd, xd);
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), s, *acc);
            }
        }
        t.store(&acc);
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// `R` rows against one panel: `maddubs` pairs into i16 (pairs of |w| ≤ 128 times
    /// |x| ≤ 127 stay below its saturation), `madd` by ones into the 32-bit lane.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::kernels::cpu_linear::quant) unsafe fn tile<const R: usize>(t: &Tile) {
        // SAFETY: the features are enabled here; the bounds are the caller's.
        unsafe {
            let ones = _mm256_set1_epi16(1);
            tile_with::<R>(t, |acc, aw, sx| {
                _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones))
            })
        }
    }
}

/// The same tile with AVX-512 VNNI on 256-bit registers: `vpdpbusd` multiplies the u8 × i8
/// pairs and adds each group of four into the 32-bit lane without the intermediate i16 step
/// (no saturation: the sums are the same exact integers as the AVX2 tile's).
#[cfg(target_arch = "x86_64")]
pub(super) mod vnni {
    use super::*;
    use std::arch::x86_64::*;

    /// `R` rows against one panel.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(in crate::kernels::cpu_linear::quant) unsafe fn tile<const R: usize>(t: &Tile) {
        // SAFETY: the features are enabled here; the bounds are the caller's.
        unsafe { tile_with::<R>(t, |acc, aw, sx| _mm256_dpbusd_epi32(acc, aw, sx)) }
    }
}
