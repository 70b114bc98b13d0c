//! The dtypes a packed weight is kept in, and how each widens to f32 (exactly, for all four).

use half::{bf16, f16};

/// Which load-and-widen the kernel uses for an element type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ElementKind {
    F32,
    Bf16,
    F16,
    F8E4M3,
}

pub trait PanelElement: Copy + Default + Send + Sync + 'static {
    const KIND: ElementKind;
    fn widen(self) -> f32;
    /// Where column `j` (0..16) of a panel sits within its row of 16: the order the kernel's
    /// widening produces columns in.
    fn slot(j: usize) -> usize {
        j
    }
}

impl PanelElement for f32 {
    const KIND: ElementKind = ElementKind::F32;
    fn widen(self) -> f32 {
        self
    }
}

impl PanelElement for bf16 {
    const KIND: ElementKind = ElementKind::Bf16;
    fn widen(self) -> f32 {
        self.to_f32()
    }
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
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

/// One FP8 (e4m3) weight byte. It widens to its value × 2⁻⁸: moving the 7 exponent and
/// mantissa bits up by 7 and the sign by 8 makes an f16 whose exponent bias is 8 more than
/// e4m3's, subnormals included (so F16C finishes the job); the 2⁸ is folded into the block
/// scales, exactly. (0x7f/0xff, e4m3's NaN, would read as 480 · 2⁻⁸; checkpoints hold none.)
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct F8E4M3(pub u8);

impl F8E4M3 {
    /// The f16 bits of the value × 2⁻⁸.
    pub fn f16_bits(self) -> u16 {
        let b = self.0 as u16;
        ((b & 0x7F) << 7) | ((b & 0x80) << 8)
    }
}

impl PanelElement for F8E4M3 {
    const KIND: ElementKind = ElementKind::F8E4M3;
    fn widen(self) -> f32 {
        f16::from_bits(self.f16_bits()).to_f32()
    }
}
