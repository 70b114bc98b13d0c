//! The one description of how the kernels' element types become f32 and back. [`Widen`] is
//! what every kernel reads (the CPU projections' packed panels, FP8 bytes included, build on it:
//! [`super::cpu_linear::element::PanelElement`]); [`Element`] adds the narrowing of the dtypes
//! activations and caches are stored in (`tl_to_float` / `tl_from_float` in
//! kernels/common.cuh: round to nearest even).

use candle_core::WithDType;
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
