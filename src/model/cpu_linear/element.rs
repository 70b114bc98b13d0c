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
}

impl PanelElement for f16 {
    const KIND: ElementKind = ElementKind::F16;
    fn widen(self) -> f32 {
        self.to_f32()
    }
}
