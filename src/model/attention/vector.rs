//! The two vector loops of decode attention on the CPU: a query against a key (`dot`) and the
//! probability-weighted sum of value rows (`weighted_sum`). Keys and values are read in the
//! cache's own type ([`CacheElement`]: f32, or f16/bf16/fp8 under `--kv-cache-dtype`) and widened
//! to f32 in registers, so a narrow cache is read in its own bytes. With AVX2, FMA and F16C
//! (detected at run time) both keep several independent FMA chains in registers: a single add
//! chain waits on each add's latency, and accumulating into memory key by key is one load and
//! one store per eight products. Elsewhere, and for lengths that are not a multiple of 32,
//! portable loops.
//!
//! Both loops read the cache in lanes ([`CacheElement::lane`]): the value times a power of two
//! that is 1 except for fp8, whose cheapest widening leaves it at 2⁻¹²⁰. The caller multiplies
//! the other operand by [`CacheElement::INPUT_FACTOR`] and the result by
//! [`CacheElement::output_factor`], both exact, where it folds its own scales in anyway.

use float8::F8E4M3;
use half::{bf16, f16};

use crate::kernels::Widen;

/// An element of the KV cache as the vector loops read it: eight at a time into f32 lanes.
pub trait CacheElement: Widen {
    /// The power of two a lane is the value times (see [`Self::lane`]).
    const LANE_FACTOR: f32 = 1.0;
    /// What the loops' other operand (queries, probabilities) is multiplied by before them: a
    /// power of two that keeps its products with the lanes clear of f32's subnormals, which
    /// lose bits and, on some CPUs, take a slow path.
    const INPUT_FACTOR: f32 = 1.0;

    /// What a loop's result is multiplied by to give values: 1 / (input × lane factor), exact.
    fn output_factor() -> f32 {
        1.0 / (Self::INPUT_FACTOR * Self::LANE_FACTOR)
    }

    /// One element as the loops read it: its value × [`Self::LANE_FACTOR`].
    fn lane(self) -> f32 {
        self.widen()
    }

    /// Eight elements from `p` as f32 lanes, each as [`Self::lane`] reads it.
    ///
    /// # Safety
    /// Eight elements must be readable at `p`, and the CPU must have AVX2 and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl CacheElement for f32 {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller's contract.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl CacheElement for f16 {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract (16 readable bytes, F16C present).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
}

impl CacheElement for bf16 {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // bf16 is the high half of an f32: widen each to 32 bits and shift it into place.
        // SAFETY: the caller's contract (16 readable bytes, AVX2 present).
        unsafe {
            let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(wide))
        }
    }
}

/// e4m3 read as the FP8 weights are (`cpu_linear::F8E4M3`): the byte sign-extended, shifted up
/// by 20 and masked puts its sign, exponent and mantissa where f32 has them, with f32's
/// exponent bias 120 more than e4m3's, so the lane is the value × 2⁻¹²⁰ (e4m3's subnormals on
/// f32's, still exact). Three integer instructions for eight lanes: a 128-long `dot` reads
/// 0.44 ns an element this way on a 2-core AMD EPYC, against 0.90 ns through a 256-entry f32
/// table and `vgatherdps` (f16's `vcvtph2ps`: 0.63 ns). The NaN pattern (0x7f) reads as 480:
/// the narrowing writes it only for a NaN key or value, which has already spoilt the step.
impl CacheElement for F8E4M3 {
    const LANE_FACTOR: f32 = f32::from_bits((127 - 120) << 23);
    /// 2⁶⁴: queries and probabilities × 2⁶⁴ × lanes (≥ 2⁻¹²⁹ but for zero) stay normal unless
    /// below 2³; scores and probabilities that small count for nothing beside the rest.
    const INPUT_FACTOR: f32 = f32::from_bits((127 + 64) << 23);

    fn lane(self) -> f32 {
        f32::from_bits(crate::kernels::cpu_linear::F8E4M3(self.to_bits()).f32_bits())
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract (8 readable bytes, AVX2 present).
        unsafe {
            let wide = _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()));
            let bits = _mm256_and_si256(
                _mm256_slli_epi32::<20>(wide),
                _mm256_set1_epi32(0x87F0_0000u32 as i32),
            );
            _mm256_castsi256_ps(bits)
        }
    }
}

/// `a · b` (equal lengths), `b` read in lanes ([`CacheElement::lane`]).
pub fn dot<R: CacheElement>(a: &[f32], b: &[R]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if a.len().is_multiple_of(LANES) && simd() {
        // SAFETY: the features were detected; the lengths are equal multiples of 32.
        return unsafe { avx2::dot(a, b) };
    }
    portable_dot(a, b)
}

/// Asks for `row` to be brought into the cache (a hint; no effect where there is none). The
/// cache holds a kv head's rows one slot apart — 4 KiB for Qwen3-0.6B, a page each — which the
/// hardware prefetcher does not follow: without the hint every row is a fresh miss.
pub fn prefetch<R>(row: &[R]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks((64 / std::mem::size_of::<R>().max(1)).max(1)) {
        // SAFETY: a prefetch of a valid address; it never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
}

/// Rows ahead of the one in use that [`prefetch`] is asked for.
pub const PREFETCH_AHEAD: usize = 4;

/// `acc += Σ_j weights[j] · row(j)`, each row `acc.len()` long, rows in order and read in lanes
/// ([`CacheElement::lane`]).
pub fn weighted_sum<'a, R: CacheElement>(
    acc: &mut [f32],
    weights: &[f32],
    row: impl Fn(usize) -> &'a [R],
) {
    #[cfg(target_arch = "x86_64")]
    if acc.len().is_multiple_of(LANES) && simd() {
        // SAFETY: the features were detected; `acc` is a multiple of 32 long and every row
        // is as long as `acc` (asserted per row inside).
        return unsafe { avx2::weighted_sum(acc, weights, row) };
    }
    for (j, &w) in weights.iter().enumerate() {
        if j + PREFETCH_AHEAD < weights.len() {
            prefetch(row(j + PREFETCH_AHEAD));
        }
        acc.iter_mut()
            .zip(row(j))
            .for_each(|(a, x)| *a += w * x.lane());
    }
}

/// Elements the SIMD loops take at a time: four registers of eight.
const LANES: usize = 32;

fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Eight independent accumulators, so the compiler can vectorise it.
fn portable_dot<R: CacheElement>(a: &[f32], b: &[R]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y.lane())
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i].lane();
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{CacheElement, LANES};
    use std::arch::x86_64::*;

    /// Four FMA chains of eight lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot<R: CacheElement>(a: &[f32], b: &[R]) -> f32 {
        assert!(a.len() == b.len() && a.len().is_multiple_of(LANES));
        // SAFETY: every load is inside both slices (lengths checked above).
        unsafe {
            let mut acc = [_mm256_setzero_ps(); 4];
            for i in (0..a.len()).step_by(LANES) {
                for (c, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_loadu_ps(a.as_ptr().add(i + 8 * c));
                    let y = R::load8(b.as_ptr().add(i + 8 * c));
                    *acc = _mm256_fmadd_ps(x, y, *acc);
                }
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0b01));
            _mm_cvtss_f32(s)
        }
    }

    /// 32 columns of `acc` at a time held in four registers across all rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn weighted_sum<'a, R: CacheElement>(
        acc: &mut [f32],
        weights: &[f32],
        row: impl Fn(usize) -> &'a [R],
    ) {
        assert!(acc.len().is_multiple_of(LANES));
        for col in (0..acc.len()).step_by(LANES) {
            let first = col == 0;
            // SAFETY: `col + 32` is within `acc`, and within each row (checked per row).
            unsafe {
                let at = acc.as_mut_ptr().add(col);
                let mut sum: [__m256; 4] = std::array::from_fn(|c| _mm256_loadu_ps(at.add(8 * c)));
                for (j, &w) in weights.iter().enumerate() {
                    // The first pass over the rows brings each in whole for the next ones.
                    if first && j + super::PREFETCH_AHEAD < weights.len() {
                        super::prefetch(row(j + super::PREFETCH_AHEAD));
                    }
                    let r = row(j);
                    assert_eq!(r.len(), acc.len(), "value row length");
                    let w = _mm256_set1_ps(w);
                    for (c, sum) in sum.iter_mut().enumerate() {
                        *sum = _mm256_fmadd_ps(w, R::load8(r.as_ptr().add(col + 8 * c)), *sum);
                    }
                }
                for (c, sum) in sum.iter().enumerate() {
                    _mm256_storeu_ps(at.add(8 * c), *sum);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 25.0)
            .collect()
    }

    #[test]
    fn dot_matches_the_f64_sum() {
        for n in [8, 32, 64, 128, 100] {
            let (a, b) = (values(n, 1), values(n, 2));
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let got = dot(&a, &b) as f64;
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{n}: {got} vs {want}"
            );
        }
    }

    /// Narrow rows read by the SIMD loads (32 and 128 long) and the portable loops (40) give
    /// what the same rows widened one by one give, once the caller's factors are applied.
    #[test]
    fn narrow_rows_are_widened_exactly() {
        use crate::kernels::Element;
        fn check<R: CacheElement + Element>() {
            let close = |got: f32, want: f32, what: &str| {
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{what}: {got} vs {want}"
                )
            };
            let input = |xs: Vec<f32>| -> Vec<f32> {
                xs.into_iter().map(|x| x * R::INPUT_FACTOR).collect()
            };
            for n in [32, 128, 40] {
                let a = values(n, 3);
                let b: Vec<R> = values(n, 4).into_iter().map(R::narrow).collect();
                let widened: Vec<f32> = b.iter().map(|x| x.widen()).collect();
                let got = dot(&input(a.clone()), &b) * R::output_factor();
                close(got, dot(&a, &widened), &format!("dot {n}"));
                let rows: Vec<Vec<R>> = (0..5)
                    .map(|j| values(n, j).into_iter().map(R::narrow).collect())
                    .collect();
                let wide: Vec<Vec<f32>> = rows
                    .iter()
                    .map(|r| r.iter().map(|x| x.widen()).collect())
                    .collect();
                let weights = values(5, 8);
                let (mut got, mut want) = (vec![0f32; n], vec![0f32; n]);
                weighted_sum(&mut got, &input(weights.clone()), |j| &rows[j]);
                weighted_sum(&mut want, &weights, |j| &wide[j]);
                for (g, w) in got.iter().zip(&want) {
                    close(g * R::output_factor(), *w, &format!("weighted sum {n}"));
                }
            }
        }
        check::<half::f16>();
        check::<half::bf16>();
        check::<F8E4M3>();
    }

    /// The fp8 SIMD load gives every code's portable lane, bit for bit, and a lane is the
    /// value × 2⁻¹²⁰ for every code but NaN.
    #[test]
    fn fp8_lanes_are_the_portable_ones() {
        let codes: Vec<F8E4M3> = (0u8..=255).map(F8E4M3::from_bits).collect();
        for c in &codes {
            if !c.is_nan() {
                assert_eq!(
                    c.lane(),
                    c.widen() * F8E4M3::LANE_FACTOR,
                    "{:#04x}",
                    c.to_bits()
                );
            }
        }
        #[cfg(target_arch = "x86_64")]
        if simd() {
            for chunk in codes.chunks(8) {
                let mut lanes = [0f32; 8];
                // SAFETY: 8 codes in the chunk; AVX2 and F16C were detected.
                unsafe {
                    std::arch::x86_64::_mm256_storeu_ps(
                        lanes.as_mut_ptr(),
                        F8E4M3::load8(chunk.as_ptr()),
                    )
                };
                for (c, l) in chunk.iter().zip(lanes) {
                    assert_eq!(l.to_bits(), c.lane().to_bits(), "{:#04x}", c.to_bits());
                }
            }
        }
    }

    #[test]
    fn weighted_sum_matches_the_f64_sum() {
        for d in [32, 64, 128, 40] {
            let rows: Vec<Vec<f32>> = (0..7).map(|j| values(d, j)).collect();
            let weights = values(7, 9);
            let mut acc = values(d, 5);
            let mut want: Vec<f64> = acc.iter().map(|&x| x as f64).collect();
            for (j, r) in rows.iter().enumerate() {
                for (w, x) in want.iter_mut().zip(r) {
                    *w += weights[j] as f64 * *x as f64;
                }
            }
            weighted_sum(&mut acc, &weights, |j| &rows[j]);
            for (g, w) in acc.iter().zip(&want) {
                assert!(
                    (*g as f64 - w).abs() <= 1e-4 * w.abs().max(1.0),
                    "{d}: {g} vs {w}"
                );
            }
        }
    }
}
