//! The dtypes a packed weight is kept in, and how each widens to f32 (exactly, for all three).

use half::{bf16, f16};

/// Which load-and-widen the kernel uses for an element type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ElementKind {
    F32,
    Bf16,
    F16,
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
