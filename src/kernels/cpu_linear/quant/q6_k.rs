//! Q6_K weights (super-blocks of 256: 6-bit values `q` in 16 sub-blocks of 16, each with an
//! int8 scale, one f16 factor; the weight is `d · sc · (q − 32)`) in panels of 8 columns,
//! against activations quantized per 256. Per super-block
//! `S = Σ_j sc_j · (Σ q·x − 32 · Σ_{sub-block j} x)` (exact), then `acc = fma(S, d·dx, acc)`.
//!
//! Panel layout per super-block (1808 bytes): `d[8]` (f16); the scales twice each
//! (`[sub-block][column][2]`, 256 bytes); then eight groups of 192 bytes, one per pair `p` of
//! sub-block pairs and half `h` of its eight steps, in that order. A group holds its four steps'
//! low 4 bits exactly as Q4_K lays out its nibbles (values `64p + 4s + t` and `64p + 32 + 4s + t`
//! in one byte, 32 bytes a step), then 16 bytes of high bits a step: byte `i` holds the two
//! 2-bit high parts of the step's byte `i` in its low nibble and of byte `16 + i` in its high
//! nibble. The tiles read a super-block front to back: with the high bits in a region of their
//! own (the first layout), two interleaved streams a kilobyte apart ran a weight larger than the
//! caches at a third of the speed of one that fits.

use super::activations::QuantizedRows;
use super::{COLS, Tile};
use half::f16;

pub const BLOCK: usize = 256;
const ROW_BLOCK_BYTES: usize = 210;
const SCALES: usize = 16;
const GROUPS: usize = SCALES + 256;
/// Steps of 32 bytes (8 columns × 4 values) in a group.
const GROUP_STEPS: usize = 4;
const GROUP_BYTES: usize = GROUP_STEPS * (32 + 16);
pub const PANEL_BLOCK_BYTES: usize = GROUPS + 8 * GROUP_BYTES;

/// Where step `step` (0..8) of pair `pair` starts: its low nibbles, and its high bits.
const fn step_at(pair: usize, step: usize) -> (usize, usize) {
    let group = GROUPS + (pair * 2 + step / GROUP_STEPS) * GROUP_BYTES;
    let s = step % GROUP_STEPS;
    (group + s * 32, group + GROUP_STEPS * 32 + s * 16)
}

pub fn panel_bytes(in_dim: usize) -> usize {
    in_dim / BLOCK * PANEL_BLOCK_BYTES
}

/// The 256 values (0..64) and 16 scales of one GGML Q6_K block (ggml's dequantization order).
fn unpack(src: &[u8]) -> ([u8; 256], [i8; 16]) {
    let (ql, qh, sc) = (&src[0..128], &src[128..192], &src[192..208]);
    let mut q = [0u8; 256];
    for half in 0..2 {
        let (ql, qh) = (&ql[half * 64..], &qh[half * 32..]);
        for l in 0..32 {
            let base = half * 128 + l;
            q[base] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            q[base + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            q[base + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            q[base + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    (q, std::array::from_fn(|i| sc[i] as i8))
}

/// Where value `v` (0..256) of column `j` sits: the byte of its low 4 bits (and whether they
/// are that byte's high nibble), and the byte and shift of its 2 high bits.
fn place(v: usize, j: usize) -> (usize, bool, usize, u32) {
    let (pair, within) = (v / 64, v % 64);
    let (upper, l) = (within >= 32, within % 32);
    let (s, t) = (l / 4, l % 4);
    let byte = j * 4 + t;
    let (low, high) = step_at(pair, s);
    // Low nibble of a high-bits byte: the step's bytes 0..16, high nibble: 16..32; within a
    // nibble, bits 0-1 for the first sub-block of the pair, 2-3 for the second.
    let shift = (if byte >= 16 { 4 } else { 0 }) + if upper { 2 } else { 0 };
    (low + byte, upper, high + byte % 16, shift)
}

pub fn pack(rows: &[u8], out_dim: usize, in_dim: usize, panel: &mut [u8], p: usize) {
    let blocks = in_dim / BLOCK;
    for j in 0..COLS.min(out_dim - p * COLS) {
        let row = &rows[(p * COLS + j) * blocks * ROW_BLOCK_BYTES..][..blocks * ROW_BLOCK_BYTES];
        for b in 0..blocks {
            let src = &row[b * ROW_BLOCK_BYTES..][..ROW_BLOCK_BYTES];
            let dst = &mut panel[b * PANEL_BLOCK_BYTES..][..PANEL_BLOCK_BYTES];
            dst[2 * j..2 * j + 2].copy_from_slice(&src[208..210]);
            let (q, sc) = unpack(src);
            for (sub, &s) in sc.iter().enumerate() {
                dst[SCALES + sub * 16 + 2 * j] = s as u8;
                dst[SCALES + sub * 16 + 2 * j + 1] = s as u8;
            }
            for (v, &q) in q.iter().enumerate() {
                let (at, upper, high, shift) = place(v, j);
                dst[at] |= (q & 0xF) << if upper { 4 } else { 0 };
                dst[high] |= (q >> 4) << shift;
            }
        }
    }
}

fn value(block: &[u8], v: usize, j: usize) -> i32 {
    let (at, upper, high, shift) = place(v, j);
    let low = if upper {
        block[at] >> 4
    } else {
        block[at] & 0xF
    };
    (low | (((block[high] >> shift) & 3) << 4)) as i32
}

fn parts(panel: &[u8], b: usize, j: usize) -> (&[u8], f32) {
    let block = &panel[b * PANEL_BLOCK_BYTES..][..PANEL_BLOCK_BYTES];
    (
        block,
        f16::from_le_bytes([block[2 * j], block[2 * j + 1]]).to_f32(),
    )
}

fn scale(block: &[u8], sub: usize, j: usize) -> i32 {
    block[SCALES + sub * 16 + 2 * j] as i8 as i32
}

pub fn dequantize_column(panel: &[u8], in_dim: usize, j: usize, out: &mut [f32]) {
    for b in 0..in_dim / BLOCK {
        let (block, d) = parts(panel, b, j);
        for v in 0..BLOCK {
            let sc = d * scale(block, v / 16, j) as f32;
            out[b * BLOCK + v] = sc * (value(block, v, j) - 32) as f32;
        }
    }
}

pub fn reference(panel: &[u8], x: &QuantizedRows, y: &mut [f32], y_stride: usize, cols: usize) {
    let blocks = x.cols / BLOCK;
    for r in 0..x.rows {
        let xq = &x.q[r * x.cols..];
        for j in 0..cols {
            let mut acc = 0f32;
            for b in 0..blocks {
                let (block, d) = parts(panel, b, j);
                let s: i32 = (0..16)
                    .map(|sub| {
                        let dot: i32 = (0..16)
                            .map(|l| {
                                let v = sub * 16 + l;
                                (value(block, v, j) - 32) * xq[b * BLOCK + v] as i32
                            })
                            .sum();
                        scale(block, sub, j) * dot
                    })
                    .sum();
                acc = (s as f32).mul_add(d * x.d[r * blocks + b], acc);
            }
            y[r * y_stride + j] = acc;
        }
    }
}

/// The scales of sub-block `sub` of the super-block at `p`, each column's stored twice, as the
/// i16 pair of its 32-bit lane.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn scale16(p: *const u8, sub: usize) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // SAFETY: inside the super-block (the caller's bounds); the caller has AVX2.
    unsafe { _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(SCALES + sub * 16) as *const __m128i)) }
}

/// The tile's body, shared by its AVX2 and VNNI forms: `block_dot(p, b)` gives each row's
/// `Σ_j sc_j · Σ q·x` over super-block `b` (at `p`), the part where the forms differ; the
/// offset for the − 32 of every value and the accumulation are common. Inlined into each form,
/// so it compiles with that form's target features.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_with<const R: usize>(
    t: &Tile,
    block_dot: impl Fn(*const u8, usize) -> [std::arch::x86_64::__m256i; R],
) {
    use std::arch::x86_64::*;
    // SAFETY: `t` describes `R` rows of `t.blocks` super-blocks with their sums of 16, a panel
    // of as many, `R` rows of at least `t.cols` writable outputs (the caller's bounds); the
    // caller has AVX2, FMA and F16C.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..t.blocks {
            let p = t.panel.add(b * PANEL_BLOCK_BYTES);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let dot = block_dot(p, b);
            // Σ_j sc_j · (sum of sub-block j's x), for the − 32 of every value.
            let mut offset = [_mm256_setzero_si256(); R];
            for sub in 0..16 {
                let sc = scale16(p, sub);
                for (r, offset) in offset.iter_mut().enumerate() {
                    let sum = *t.sums.add(r * t.sums_stride + b * 16 + sub);
                    let m = _mm256_madd_epi16(sc, _mm256_set1_epi32(sum as u16 as i32));
                    *offset = _mm256_add_epi32(*offset, m);
                }
            }
            for r in 0..R {
                let total = _mm256_sub_epi32(dot[r], _mm256_slli_epi32(offset[r], 5));
                let dx = _mm256_set1_ps(*t.xd.add(r * t.xd_stride + b));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_mul_ps(d, dx), acc[r]);
            }
        }
        t.store(&acc);
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// The 32 six-bit values of one step: `(first sub-block pair's, second's)`.
    #[target_feature(enable = "avx2")]
    unsafe fn step_values(p: *const u8, pair: usize, step: usize) -> (__m256i, __m256i) {
        // SAFETY: inside the super-block (the caller's bounds).
        unsafe {
            let nibble = _mm256_set1_epi8(0x0F);
            let two = _mm256_set1_epi8(0x03);
            let (low, high) = step_at(pair, step);
            let w = _mm256_loadu_si256(p.add(low) as *const __m256i);
            let h = _mm_loadu_si128(p.add(high) as *const __m128i);
            let h = _mm256_set_m128i(
                _mm_and_si128(_mm_srli_epi16(h, 4), _mm_set1_epi8(0x0F)),
                _mm_and_si128(h, _mm_set1_epi8(0x0F)),
            );
            let first = _mm256_or_si256(
                _mm256_and_si256(w, nibble),
                _mm256_slli_epi16(_mm256_and_si256(h, two), 4),
            );
            let second = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(w, 4), nibble),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), two), 4),
            );
            (first, second)
        }
    }

    /// `R` rows against one panel: two steps' products summed in i16, scaled by `madd`.
    // The row loops index several per-row register arrays at once.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::kernels::cpu_linear::quant) unsafe fn tile<const R: usize>(t: &Tile) {
        // SAFETY: the features are enabled here; the bounds are the caller's.
        unsafe {
            tile_with::<R>(t, |p, b| {
                let mut dot = [_mm256_setzero_si256(); R];
                for pair in 0..4 {
                    // Two steps at a time: 2 · (2 · 63 · 127) stays within i16.
                    for step in (0..8).step_by(2) {
                        let (a0, b0) = step_values(p, pair, step);
                        let (a1, b1) = step_values(p, pair, step + 1);
                        let (sub_a, sub_b) = (pair * 4 + step / 4, pair * 4 + 2 + step / 4);
                        let (sc_a, sc_b) = (scale16(p, sub_a), scale16(p, sub_b));
                        for r in 0..R {
                            let x = t.xq.add(r * t.x_stride + b * BLOCK + pair * 64 + step * 4);
                            let at = |o: usize| {
                                _mm256_set1_epi32((x.add(o) as *const i32).read_unaligned())
                            };
                            let sum_a = _mm256_add_epi16(
                                _mm256_maddubs_epi16(a0, at(0)),
                                _mm256_maddubs_epi16(a1, at(4)),
                            );
                            let sum_b = _mm256_add_epi16(
                                _mm256_maddubs_epi16(b0, at(32)),
                                _mm256_maddubs_epi16(b1, at(36)),
                            );
                            dot[r] = _mm256_add_epi32(
                                dot[r],
                                _mm256_add_epi32(
                                    _mm256_madd_epi16(sum_a, sc_a),
                                    _mm256_madd_epi16(sum_b, sc_b),
                                ),
                            );
                        }
                    }
                }
                dot
            })
        }
    }
}

/// The same tile with AVX-512 VNNI and VL on 256-bit registers, for decode's single rows, where
/// nothing amortizes the unpacking of the high bits across rows: `vpternlogd` merges low and
/// high parts in one operation each (8 operations a step against 14), and `vpdpbusd` sums a
/// sub-block's products straight into 32 bits, its scale applied once per four steps. Same
/// exact integers as the AVX2 tile.
#[cfg(target_arch = "x86_64")]
pub(super) mod vnni {
    use super::*;
    use std::arch::x86_64::*;

    /// `c ? a : b`, bit by bit (the truth table of `vpternlogd`'s bit select).
    const SELECT: i32 = 0xE4;

    /// The 32 six-bit values of one step: `(first sub-block pair's, second's)`.
    #[target_feature(enable = "avx2,avx512f,avx512vl")]
    unsafe fn step_values(p: *const u8, pair: usize, step: usize) -> (__m256i, __m256i) {
        // SAFETY: inside the super-block (the caller's bounds).
        unsafe {
            let low_nibbles = _mm256_set1_epi8(0x0F);
            let (low, high) = step_at(pair, step);
            let w = _mm256_loadu_si256(p.add(low) as *const __m256i);
            let h = _mm_loadu_si128(p.add(high) as *const __m128i);
            // Byte i < 16 takes its high parts from bits 0-3 of h[i], byte 16 + i from bits
            // 4-7: both end in bits 4-7 (first's at 4-5, second's at 6-7), bits 0-3 clear.
            let high = _mm256_and_si256(
                _mm256_set_m128i(h, _mm_slli_epi16(h, 4)),
                _mm256_set1_epi8(0xF0u8 as i8),
            );
            let first = _mm256_and_si256(
                _mm256_ternarylogic_epi32::<SELECT>(w, high, low_nibbles),
                _mm256_set1_epi8(0x3F),
            );
            let second = _mm256_ternarylogic_epi32::<SELECT>(
                _mm256_srli_epi16(w, 4),
                _mm256_srli_epi16(high, 2),
                low_nibbles,
            );
            (first, second)
        }
    }

    /// `R` rows against one panel.
    // The row loops index several per-row register arrays at once.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    pub(in crate::kernels::cpu_linear::quant) unsafe fn tile<const R: usize>(t: &Tile) {
        // SAFETY: the features are enabled here; the bounds are the caller's.
        unsafe {
            tile_with::<R>(t, |p, b| {
                // Each 32-bit lane's high half of the widened scales is the scale,
                // sign-extended by the arithmetic shift.
                let scale32 = |sub: usize| _mm256_srai_epi32(scale16(p, sub), 16);
                let mut dot = [_mm256_setzero_si256(); R];
                for pair in 0..4 {
                    for half in 0..2 {
                        let mut sum_a = [_mm256_setzero_si256(); R];
                        let mut sum_b = [_mm256_setzero_si256(); R];
                        for step in half * 4..half * 4 + 4 {
                            let (a, b2) = step_values(p, pair, step);
                            for r in 0..R {
                                let x = t.xq.add(r * t.x_stride + b * BLOCK + pair * 64 + step * 4);
                                let xa = _mm256_set1_epi32((x as *const i32).read_unaligned());
                                let xb =
                                    _mm256_set1_epi32((x.add(32) as *const i32).read_unaligned());
                                sum_a[r] = _mm256_dpbusd_epi32(sum_a[r], a, xa);
                                sum_b[r] = _mm256_dpbusd_epi32(sum_b[r], b2, xb);
                            }
                        }
                        let (sc_a, sc_b) = (scale32(pair * 4 + half), scale32(pair * 4 + 2 + half));
                        for r in 0..R {
                            dot[r] = _mm256_add_epi32(
                                dot[r],
                                _mm256_add_epi32(
                                    _mm256_mullo_epi32(sum_a[r], sc_a),
                                    _mm256_mullo_epi32(sum_b[r], sc_b),
                                ),
                            );
                        }
                    }
                }
                dot
            })
        }
    }
}
