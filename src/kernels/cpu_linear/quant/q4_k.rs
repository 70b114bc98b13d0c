//! Q4_K weights (super-blocks of 256: 4-bit values in 8 sub-blocks of 32, each with a 6-bit
//! scale and minimum, two f16 factors) in panels of 8 columns, against activations quantized
//! per 256 (one scale, sums of every 16). Per super-block:
//! `S1 = Σ_j sc_j · Σ q·x` and `S2 = Σ_j m_j · Σ_{sub-block j} x` (exact integers), then
//! `acc = fma(S1, d·dx, acc)`, `acc = fma(S2, -(dmin·dx), acc)`, super-blocks in order.
//!
//! Panel layout per super-block (1248 bytes): `d[8]`, `dmin[8]` (f16); the scales as bytes,
//! each twice (`[sub-block][column][2]`, 128 bytes: `cvtepu8_epi16` makes the multipliers of
//! `madd` directly); the minimums of sub-blocks `2p`, `2p+1` side by side per column
//! (`[pair][column][2]`, 64 bytes); then for each pair of sub-blocks `p`, 8 steps of 32 bytes:
//! byte `(column j, t)` of step `s` holds value `4s+t` of sub-block `2p` in its low nibble and of
//! sub-block `2p+1` in its high nibble.

use super::activations::QuantizedRows;
use super::{COLS, Tile};
use half::f16;

pub const BLOCK: usize = 256;
const ROW_BLOCK_BYTES: usize = 144;
const SCALES: usize = 32;
const MINS: usize = SCALES + 128;
const QS: usize = MINS + 64;
pub const PANEL_BLOCK_BYTES: usize = QS + 1024;

pub fn panel_bytes(in_dim: usize) -> usize {
    in_dim / BLOCK * PANEL_BLOCK_BYTES
}

/// The 6-bit scale and minimum of sub-block `j` (ggml's `get_scale_min_k4`).
fn scale_min(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Repacks GGML row-major Q4_K into panel `p`.
pub fn pack(rows: &[u8], out_dim: usize, in_dim: usize, panel: &mut [u8], p: usize) {
    let blocks = in_dim / BLOCK;
    for j in 0..COLS.min(out_dim - p * COLS) {
        let row = &rows[(p * COLS + j) * blocks * ROW_BLOCK_BYTES..][..blocks * ROW_BLOCK_BYTES];
        for b in 0..blocks {
            let src = &row[b * ROW_BLOCK_BYTES..][..ROW_BLOCK_BYTES];
            let dst = &mut panel[b * PANEL_BLOCK_BYTES..][..PANEL_BLOCK_BYTES];
            dst[2 * j..2 * j + 2].copy_from_slice(&src[0..2]);
            dst[16 + 2 * j..16 + 2 * j + 2].copy_from_slice(&src[2..4]);
            for sub in 0..8 {
                let (sc, m) = scale_min(&src[4..16], sub);
                dst[SCALES + sub * 16 + 2 * j] = sc;
                dst[SCALES + sub * 16 + 2 * j + 1] = sc;
                dst[MINS + (sub / 2) * 16 + 2 * j + sub % 2] = m;
            }
            let qs = &src[16..144];
            for pair in 0..4 {
                for s in 0..8 {
                    let at = QS + pair * 256 + s * 32 + j * 4;
                    dst[at..at + 4].copy_from_slice(&qs[pair * 32 + s * 4..][..4]);
                }
            }
        }
    }
}

fn half(panel: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([panel[at], panel[at + 1]]).to_f32()
}

struct Column<'a> {
    block: &'a [u8],
    j: usize,
}

impl Column<'_> {
    fn d(&self) -> f32 {
        half(self.block, 2 * self.j)
    }
    fn dmin(&self) -> f32 {
        half(self.block, 16 + 2 * self.j)
    }
    fn scale(&self, sub: usize) -> i32 {
        self.block[SCALES + sub * 16 + 2 * self.j] as i32
    }
    fn min(&self, sub: usize) -> i32 {
        self.block[MINS + (sub / 2) * 16 + 2 * self.j + sub % 2] as i32
    }
    /// Value `l` (0..32) of sub-block `sub`, 0..=15.
    fn quant(&self, sub: usize, l: usize) -> i32 {
        let byte = self.block[QS + (sub / 2) * 256 + (l / 4) * 32 + self.j * 4 + l % 4];
        (if sub.is_multiple_of(2) {
            byte & 0xF
        } else {
            byte >> 4
        }) as i32
    }
}

fn column(panel: &[u8], b: usize, j: usize) -> Column<'_> {
    Column {
        block: &panel[b * PANEL_BLOCK_BYTES..][..PANEL_BLOCK_BYTES],
        j,
    }
}

pub fn dequantize_column(panel: &[u8], in_dim: usize, j: usize, out: &mut [f32]) {
    for b in 0..in_dim / BLOCK {
        let c = column(panel, b, j);
        let (d, dmin) = (c.d(), c.dmin());
        for sub in 0..8 {
            let (sc, m) = (d * c.scale(sub) as f32, dmin * c.min(sub) as f32);
            for l in 0..32 {
                out[b * BLOCK + sub * 32 + l] = sc * c.quant(sub, l) as f32 - m;
            }
        }
    }
}

pub fn reference(panel: &[u8], x: &QuantizedRows, y: &mut [f32], y_stride: usize, cols: usize) {
    let blocks = x.cols / BLOCK;
    for r in 0..x.rows {
        let xq = &x.q[r * x.cols..];
        let sums = &x.sums16[r * x.cols / 16..];
        for j in 0..cols {
            let mut acc = 0f32;
            for b in 0..blocks {
                let c = column(panel, b, j);
                let (mut s1, mut s2) = (0i32, 0i32);
                for sub in 0..8 {
                    let dot: i32 = (0..32)
                        .map(|l| c.quant(sub, l) * xq[b * BLOCK + sub * 32 + l] as i32)
                        .sum();
                    s1 += c.scale(sub) * dot;
                    let sum = sums[b * 16 + 2 * sub] as i32 + sums[b * 16 + 2 * sub + 1] as i32;
                    s2 += c.min(sub) * sum;
                }
                let dx = x.d[r * blocks + b];
                acc = (s1 as f32).mul_add(c.d() * dx, acc);
                acc = (s2 as f32).mul_add(-(c.dmin() * dx), acc);
            }
            y[r * y_stride + j] = acc;
        }
    }
}

/// The tile's body, shared by its AVX2 and VNNI forms, which differ in two steps:
/// `dot(sum, nibbles, x)` adds each column's four nibble × x products to its lane of a
/// sub-block's sum, and `scaled(sum, scales)` multiplies those sums by the sub-block's scales
/// (each column's stored twice, as the i16 pair of its lane). Inlined into each form, so it
/// compiles with that form's target features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_with<const R: usize>(
    t: &Tile,
    dot: impl Fn(
        std::arch::x86_64::__m256i,
        std::arch::x86_64::__m256i,
        std::arch::x86_64::__m256i,
    ) -> std::arch::x86_64::__m256i,
    scaled: impl Fn(
        std::arch::x86_64::__m256i,
        std::arch::x86_64::__m256i,
    ) -> std::arch::x86_64::__m256i,
) {
    use std::arch::x86_64::*;
    // SAFETY: `t` describes `R` rows of `t.blocks` super-blocks (with their sums of 16), a
    // panel of as many and `R` rows of at least `t.cols` writable outputs (the caller's
    // bounds); the caller has AVX2, FMA and F16C.
    unsafe {
        let nibble = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..t.blocks {
            let p = t.panel.add(b * PANEL_BLOCK_BYTES);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i));
            let mut s1 = [_mm256_setzero_si256(); R];
            let mut s2 = [_mm256_setzero_si256(); R];
            for pair in 0..4 {
                let mut lo = [_mm256_setzero_si256(); R];
                let mut hi = [_mm256_setzero_si256(); R];
                let q = p.add(QS + pair * 256);
                for s in 0..8 {
                    let w = _mm256_loadu_si256(q.add(s * 32) as *const __m256i);
                    let wl = _mm256_and_si256(w, nibble);
                    let wh = _mm256_and_si256(_mm256_srli_epi16(w, 4), nibble);
                    for (r, (lo, hi)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
                        let x = t.xq.add(r * t.x_stride + b * BLOCK + pair * 64 + s * 4);
                        let xl = _mm256_set1_epi32((x as *const i32).read_unaligned());
                        let xh = _mm256_set1_epi32((x.add(32) as *const i32).read_unaligned());
                        *lo = dot(*lo, wl, xl);
                        *hi = dot(*hi, wh, xh);
                    }
                }
                let sc = |sub: usize| {
                    _mm256_cvtepu8_epi16(
                        _mm_loadu_si128(p.add(SCALES + sub * 16) as *const __m128i),
                    )
                };
                let (sc_lo, sc_hi) = (sc(2 * pair), sc(2 * pair + 1));
                let mins = _mm256_cvtepu8_epi16(_mm_loadu_si128(
                    p.add(MINS + pair * 16) as *const __m128i
                ));
                for r in 0..R {
                    let dot = _mm256_add_epi32(scaled(lo[r], sc_lo), scaled(hi[r], sc_hi));
                    s1[r] = _mm256_add_epi32(s1[r], dot);
                    // The sums of sub-blocks 2p and 2p+1 as one i16 pair.
                    let sums = t.sums.add(r * t.sums_stride + b * 16 + pair * 4);
                    let pair_sums = ((*sums as i32 + *sums.add(1) as i32) & 0xFFFF)
                        | ((*sums.add(2) as i32 + *sums.add(3) as i32) << 16);
                    let m = _mm256_madd_epi16(mins, _mm256_set1_epi32(pair_sums));
                    s2[r] = _mm256_add_epi32(s2[r], m);
                }
            }
            for r in 0..R {
                let dx = _mm256_set1_ps(*t.xd.add(r * t.xd_stride + b));
                let scale = _mm256_mul_ps(d, dx);
                let offset = _mm256_xor_ps(_mm256_mul_ps(dmin, dx), _mm256_set1_ps(-0.0));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1[r]), scale, acc[r]);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s2[r]), offset, acc[r]);
            }
        }
        t.store(&acc);
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// `R` rows against one panel: a sub-block's products summed in i16 (nibbles ≤ 15 times
    /// |x| ≤ 127, 16 of them, stay within it), scaled by `madd` into 32 bits.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::kernels::cpu_linear::quant) unsafe fn tile<const R: usize>(t: &Tile) {
        // SAFETY: the features are enabled here; the bounds are the caller's.
        unsafe {
            tile_with::<R>(
                t,
                |sum, w, x| _mm256_add_epi16(sum, _mm256_maddubs_epi16(w, x)),
                |sum, scales| _mm256_madd_epi16(sum, scales),
            )
        }
    }
}

/// The same tile with AVX-512 VNNI on 256-bit registers: `vpdpbusd` sums each column's four
/// nibble × x products straight into 32 bits, so a sub-block's dot needs no i16 stage and the
/// scale is applied once per pair of sub-blocks with a 32-bit multiply. Same exact integers.
#[cfg(target_arch = "x86_64")]
pub(super) mod vnni {
    use super::*;
    use std::arch::x86_64::*;

    /// `R` rows against one panel.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(in crate::kernels::cpu_linear::quant) unsafe fn tile<const R: usize>(t: &Tile) {
        // SAFETY: the features are enabled here; the bounds are the caller's.
        unsafe {
            // The low half of each 32-bit lane of the widened scales is the scale.
            let low_half = _mm256_set1_epi32(0xFFFF);
            tile_with::<R>(
                t,
                |sum, w, x| _mm256_dpbusd_epi32(sum, w, x),
                |sum, scales| _mm256_mullo_epi32(sum, _mm256_and_si256(scales, low_half)),
            )
        }
    }
}
