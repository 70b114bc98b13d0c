//! The FP8 tiles on 512-bit registers, where the CPU has AVX-512 F: a panel's 16 columns in one
//! register, widened by one extend, shift and mask (twice each on 256-bit registers). A single
//! row's FP8 product is bound by this widening, not by memory. Same arithmetic as the AVX2 tile
//! lane for lane, so the two give the same bits.

use super::{PANEL, Tile};
use crate::kernels::cpu_linear::element::F8E4M3;
use std::arch::x86_64::*;

pub fn supported() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// `rows` (1..=6) rows against `panels` (1 to 4 for one row, else 1 or 2) panels.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) unsafe fn block(rows: usize, panels: usize, t: Tile<F8E4M3>) {
    // SAFETY: forwarded from the caller.
    unsafe { by_shape!(rows, panels, t, tile) }
}

/// `R` rows × `C` panels, as the AVX2 tile defines them.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn tile<const R: usize, const C: usize>(t: Tile<F8E4M3>) {
    // SAFETY: the caller guarantees `R` rows of `k` inputs, `C` panels of `k · 16` weights and
    // `min(cols, C · 16)` writable outputs per row.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        for (block, first) in (0..t.k).step_by(t.block()).enumerate() {
            let mut chain = [[_mm512_setzero_ps(); C]; R];
            for k in first..(first + t.block()).min(t.k) {
                let w: [__m512; C] =
                    std::array::from_fn(|c| widen16(t.w.add(c * t.w_stride + k * PANEL).cast()));
                for (r, chain) in chain.iter_mut().enumerate() {
                    let xr = _mm512_set1_ps(*t.x.add(k * R + r));
                    for (chain, w) in chain.iter_mut().zip(&w) {
                        *chain = _mm512_fmadd_ps(xr, *w, *chain);
                    }
                }
            }
            for (acc, chain) in acc.iter_mut().zip(&chain) {
                for (c, (acc, chain)) in acc.iter_mut().zip(chain).enumerate() {
                    let s = _mm512_set1_ps(*t.scales.add(c * t.scale_stride + block));
                    *acc = _mm512_fmadd_ps(*chain, s, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, acc) in acc.iter().enumerate() {
                if let Some(out) = t.output(r, c) {
                    let high = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*acc));
                    out.store([_mm512_castps512_ps256(*acc), _mm256_castpd_ps(high)]);
                }
            }
        }
    }
}

/// 16 e4m3 bytes widened to f32 as [`F8E4M3::f32_bits`] does.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn widen16(p: *const u8) -> __m512 {
    // SAFETY: the caller guarantees 16 readable bytes at `p`.
    unsafe {
        let v = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast::<__m128i>()));
        let bits = _mm512_and_si512(
            _mm512_slli_epi32::<20>(v),
            _mm512_set1_epi32(0x87F0_0000u32 as i32),
        );
        _mm512_castsi512_ps(bits)
    }
}
