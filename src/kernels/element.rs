//! The one description of how the kernels' element types become f32 and back. [`Widen`] is
//! what every kernel reads (the CPU projections' packed panels, FP8 bytes included, build on it:
//! [`super::cpu_linear::element::PanelElement`]); [`Element`] adds the narrowing of the dtypes
//! activations and caches are stored in (`tl_to_float` / `tl_from_float` in
//! kernels/common.cuh: round to nearest even), and the FP8 KV cache's e4m3 ([`e4m3_bits`]).

use candle_core::WithDType;
use float8::F8E4M3;
use half::{bf16, f16};

/// An element read as f32 for arithmetic (exactly, for every type here).
pub trait Widen: Copy + Send + Sync + 'static {
    fn widen(self) -> f32;
}

/// A storage dtype of activations and caches: widened to read, narrowed to write.
pub trait Element: Widen + WithDType {
    fn narrow(x: f32) -> Self;
    /// `x` rounded to this type and back (what storing an f32 in this type keeps).
    fn round(x: f32) -> f32 {
        Self::narrow(x).widen()
    }
}

impl Widen for f32 {
    fn widen(self) -> f32 {
        self
    }
}

impl Widen for f16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

impl Widen for bf16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

impl Element for f32 {
    fn narrow(x: f32) -> Self {
        x
    }
}

impl Element for f16 {
    fn narrow(x: f32) -> Self {
        f16::from_f32(x)
    }
}

impl Element for bf16 {
    fn narrow(x: f32) -> Self {
        bf16::from_f32(x)
    }
}

/// An FP8 (e4m3, "fn": no infinities, one NaN pattern per sign) KV-cache element, candle's
/// `DType::F8E4M3` (`--kv-cache-dtype fp8`).
impl Widen for F8E4M3 {
    fn widen(self) -> f32 {
        if self.is_nan() {
            return f32::NAN;
        }
        // The weights' shift-and-mask widening (value × 2⁻¹²⁰, exact) undone by an exact power
        // of two: `float8`'s own conversion walks through f16 with a loop for subnormals.
        let scaled = f32::from_bits(super::cpu_linear::F8E4M3(self.to_bits()).f32_bits());
        scaled * E4M3_UNSCALE
    }
}

impl Element for F8E4M3 {
    fn narrow(x: f32) -> Self {
        F8E4M3::from_bits(e4m3_bits(x))
    }
}

/// 2¹²⁰: what the shift-and-mask widening's lanes are multiplied by to give the values.
const E4M3_UNSCALE: f32 = f32::from_bits((127 + 120) << 23);

/// Largest finite e4m3 value.
pub const E4M3_MAX: f32 = 448.0;

/// `x` as e4m3 bits: rounded to nearest even, saturated to ±448 (a key beyond the range keeps
/// its sign and the largest magnitude rather than becoming NaN: CUDA's `__NV_SATFINITE`, which
/// vLLM's cache writes use), NaN kept as NaN (0x7f with the sign), signed zeros kept. The same
/// bits as candle's conversion (`float8`'s, which goes through f64 and a branch per case), in
/// f32 arithmetic: cheap enough to run on every K/V element a step writes.
pub fn e4m3_bits(x: f32) -> u8 {
    let sign = ((x.to_bits() >> 24) & 0x80) as u8;
    let a = x.abs();
    let magnitude = if a.is_nan() {
        0x7F
    } else if a >= 464.0 {
        // 464 lies halfway between 448 (0x7e) and the NaN pattern's 480; ties go to the even
        // 0x7e, and so does everything above.
        0x7E
    } else if a < 2f32.powi(-6) {
        // Subnormals are multiples of 2⁻⁹: scaling by 2⁹ is exact, and 8 (a tie from 2⁻⁶
        // rounds up to it) is the smallest normal's code.
        (a * 512.0).round_ties_even() as u8
    } else {
        // Round the 23 mantissa bits to 3 (ties to even), carrying into the exponent, then
        // rebias the exponent from 127 to 7.
        let bits = a.to_bits();
        let rounded = bits + 0x7_FFFF + ((bits >> 20) & 1);
        ((rounded >> 20) - ((127 - 7) << 3)) as u8
    };
    magnitude | sign
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code widens to candle's value, and narrows back to itself (NaN to NaN).
    #[test]
    fn every_e4m3_code_round_trips() {
        for b in 0u8..=255 {
            let x = F8E4M3::from_bits(b);
            let (got, want) = (x.widen(), x.to_f32());
            if b & 0x7F == 0x7F {
                assert!(got.is_nan() && want.is_nan(), "{b:#04x}");
                assert_eq!(e4m3_bits(got) & 0x7F, 0x7F, "{b:#04x}");
                continue;
            }
            assert_eq!(got.to_bits(), want.to_bits(), "{b:#04x}");
            assert_eq!(e4m3_bits(got), b, "{b:#04x} ({got})");
        }
    }

    /// The narrowing gives candle's (`float8`'s) bits for f32 values across the whole range:
    /// every 2¹²th bit pattern, each code's midpoints to its neighbours and the values just
    /// either side of them.
    #[test]
    fn narrowing_matches_candle() {
        let check = |x: f32| {
            let want = F8E4M3::from_f32(x).to_bits();
            let got = e4m3_bits(x);
            if x.is_nan() {
                assert_eq!(got & 0x7F, 0x7F, "{x}");
            } else {
                assert_eq!(got, want, "{x:e} ({:#010x})", x.to_bits());
            }
        };
        for bits in (0..=u32::MAX).step_by(4096) {
            check(f32::from_bits(bits));
        }
        for b in 0u8..0x7E {
            let (lo, hi) = (
                F8E4M3::from_bits(b).to_f32(),
                F8E4M3::from_bits(b + 1).to_f32(),
            );
            let mid = (lo + hi) / 2.0;
            for x in [mid, mid.next_up(), mid.next_down(), lo, hi] {
                check(x);
                check(-x);
            }
        }
    }

    #[test]
    fn out_of_range_values_saturate_and_nan_stays_nan() {
        for (x, want) in [
            (448.0, 0x7E),
            (463.9, 0x7E),
            (464.0, 0x7E),
            (1e6, 0x7E),
            (f32::INFINITY, 0x7E),
            (f32::MAX, 0x7E),
            (-448.0, 0xFE),
            (-5000.0, 0xFE),
            (f32::NEG_INFINITY, 0xFE),
        ] {
            assert_eq!(e4m3_bits(x), want, "{x}");
        }
        assert_eq!(F8E4M3::narrow(1e9).widen(), E4M3_MAX);
        assert_eq!(F8E4M3::narrow(-1e9).widen(), -E4M3_MAX);
        assert!(F8E4M3::narrow(f32::NAN).widen().is_nan());
        assert!(F8E4M3::narrow(-f32::NAN).widen().is_nan());
    }

    /// Zeros keep their sign, and values below half the smallest subnormal (2⁻¹⁰) flush to a
    /// zero of their sign.
    #[test]
    fn zeros_keep_their_sign() {
        assert_eq!(e4m3_bits(0.0), 0x00);
        assert_eq!(e4m3_bits(-0.0), 0x80);
        assert_eq!(e4m3_bits(-1e-9), 0x80);
        assert_eq!(
            e4m3_bits(2f32.powi(-10)),
            0x00,
            "a tie rounds to the even 0"
        );
        assert_eq!(e4m3_bits(2f32.powi(-10).next_up()), 0x01);
        let neg_zero = F8E4M3::narrow(-0.0).widen();
        assert!(neg_zero == 0.0 && neg_zero.is_sign_negative());
    }
}
