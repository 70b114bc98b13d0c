//! The dtypes a packed weight is kept in: the three of [`crate::kernels::Element`] and FP8
//! bytes, each widening to f32 exactly ([`Widen`]), and where the kernel wants their columns.

use crate::kernels::Widen;
use half::{bf16, f16};

/// Which load-and-widen the kernel uses for an element type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ElementKind {
    F32,
    Bf16,
    F16,
    F8E4M3,
}

pub trait PanelElement: Widen + Default {
    const KIND: ElementKind;
    /// Where column `j` (0..16) of a panel sits within its row of 16: the order the kernel's
    /// widening produces columns in.
    fn slot(j: usize) -> usize {
        j
    }
}

impl PanelElement for f32 {
    const KIND: ElementKind = ElementKind::F32;
}

impl PanelElement for bf16 {
    const KIND: ElementKind = ElementKind::Bf16;
    /// The kernel widens a row of 16 bf16 with one 256-bit load and two unpacks against zero,
    /// which work within 128-bit lanes: the low unpack takes slots 0–3 and 8–11, the high one
    /// 4–7 and 12–15. Storing columns 4–7 in slots 8–11 (and 8–11 in 4–7) makes them come out
    /// as columns 0–7 and 8–15. (Two shuffles instead of two zero-extends and two shifts.)
    fn slot(j: usize) -> usize {
        match j / 4 {
            1 => j + 4,
            2 => j - 4,
            _ => j,
        }
    }
}

impl PanelElement for f16 {
    const KIND: ElementKind = ElementKind::F16;
}

/// One FP8 (e4m3) weight byte. It widens to its value × 2⁻¹²⁰: the sign and the 7 exponent and
/// mantissa bits moved up to the top of an f32 (sign-extended, shifted by 20, masked) put e4m3's
/// exponent into f32's, whose bias is 120 more; e4m3's subnormals land on f32 subnormals, still
/// exact. One shift and one mask a weight, no conversion instruction. The kernels take the
/// inputs × [`Self::INPUT_FACTOR`] and the block scales × [`Self::SCALE_FACTOR`], powers of two
/// whose product undoes the 2⁻¹²⁰ with every product far from f32's subnormals. (0x7f/0xff,
/// e4m3's NaN, would read as 480; checkpoints hold none.)
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct F8E4M3(pub u8);

impl F8E4M3 {
    /// 2⁶⁴: what the kernels multiply the inputs by (activations stay far below 2⁶⁴).
    pub const INPUT_FACTOR: f32 = f32::from_bits((127 + 64) << 23);
    /// 2⁵⁶: what the packed block scales carry (2¹²⁰ / [`Self::INPUT_FACTOR`]).
    pub const SCALE_FACTOR: f32 = f32::from_bits((127 + 56) << 23);

    /// The f32 bits of the value × 2⁻¹²⁰.
    pub fn f32_bits(self) -> u32 {
        ((self.0 as i8 as i32 as u32) << 20) & 0x87F0_0000
    }
}

impl Widen for F8E4M3 {
    fn widen(self) -> f32 {
        f32::from_bits(self.f32_bits())
    }
}

impl PanelElement for F8E4M3 {
    const KIND: ElementKind = ElementKind::F8E4M3;
}
