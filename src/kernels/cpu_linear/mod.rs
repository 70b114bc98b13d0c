//! Dense projections on the CPU, `y = x · Wᵀ` with f32 activations and f32 accumulation, from a
//! weight kept in its checkpoint dtype (bf16, f16 or f32) and packed into column panels.
//!
//! Why a kernel of our own rather than candle's gemm:
//! - Bandwidth. A decode step multiplies a few rows by every weight, so it is bound by how fast
//!   the weights stream from memory. Kept in bf16 or f16 they are half the bytes of f32, and
//!   widening either to f32 is exact, so the products are bit for bit those of the same weights
//!   held in f32 — the model stays an f32 model, it only reads less.
//! - Few-row shapes. gemm 0.19 is built for large products: it sends one row down a separate
//!   gemv path and leaves most of the FLOPs unused for decode batches of 2–64 rows.
//! - Batch invariance. Every output element is one fused-multiply-add chain over the inner
//!   dimension in order (FP8: one per 128-input scale block, the blocks' sums scaled and added
//!   in order), whatever the row count, the row block or the thread it lands on, so a
//!   sequence's logits do not depend on what else shares its step (seeded sampling relies on
//!   it). The tests hold the kernel to a scalar chain bit for bit.
//!
//! Layout: output columns in panels of [`PANEL`]; panel `p` stores `W[p·16 + j][k]` at
//! `(p · in + k) · 16 + slot(j)`, so the kernel reads each panel front to back, 16 columns per
//! step of `k`; `slot` is the identity except for bf16 (see [`PanelElement::slot`]). The last
//! panel is zero-padded.
//!
//! The kernel needs x86-64 with AVX2, FMA and F16C (every x86 server CPU since 2013); elsewhere
//! [`PackedWeight::supported`] is false and projections go through candle's matmul.

mod element;
#[cfg(target_arch = "x86_64")]
mod kernel;
mod pack;
pub mod quant;

pub use element::{F8E4M3, PanelElement};
pub use quant::QuantizedPanels;

use crate::weights::fp8::Fp8Weight;
use candle_core::{CpuStorage, DType, Layout, Shape, Tensor, bail};
use half::{bf16, f16};

/// Output columns per panel: two AVX2 registers of f32.
pub const PANEL: usize = 16;

/// Parallel tasks a product is cut into, per thread (dense and quantized kernels). A thread that
/// finishes early waits for the other's last task, and a decode step is a hundred products:
/// small tasks keep that tail short.
const TASKS_PER_THREAD: usize = 16;

/// A weight `[out, in]` packed into column panels, in the dtype it was given.
pub struct PackedWeight {
    data: PanelData,
    in_dim: usize,
    out_dim: usize,
}

enum PanelData {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
    F16(Vec<f16>),
    /// FP8 weights with their block scales (one per panel and block of inputs).
    Fp8(Vec<F8E4M3>, Scales),
}

/// Block scales of an FP8 packed weight: `values[panel · per_panel + k / k_block]`, each the
/// checkpoint's scale × [`F8E4M3::SCALE_FACTOR`].
pub struct Scales {
    values: Vec<f32>,
    per_panel: usize,
    k_block: usize,
}

impl Scales {
    fn get(&self, panel: usize, k: usize) -> f32 {
        self.values[panel * self.per_panel + k / self.k_block]
    }
}

impl PackedWeight {
    /// Whether this machine runs the kernel.
    pub fn supported() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            kernel::supported()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Whether a weight of this dtype can be packed (others are widened to f32 first).
    pub fn keeps(dtype: DType) -> bool {
        matches!(dtype, DType::F32 | DType::BF16 | DType::F16)
    }

    /// Packs a CPU `[out, in]` weight, keeping its dtype when [`Self::keeps`] it and widening
    /// it to f32 otherwise.
    pub fn pack(weight: &Tensor) -> candle_core::Result<Self> {
        let (out_dim, in_dim) = weight.dims2()?;
        let weight = if Self::keeps(weight.dtype()) {
            weight.clone()
        } else {
            weight.to_dtype(DType::F32)?
        };
        let data = match weight.dtype() {
            DType::BF16 => PanelData::Bf16(pack::panels(&flat::<bf16>(&weight)?, out_dim, in_dim)),
            DType::F16 => PanelData::F16(pack::panels(&flat::<f16>(&weight)?, out_dim, in_dim)),
            _ => PanelData::F32(pack::panels(&flat::<f32>(&weight)?, out_dim, in_dim)),
        };
        Ok(Self {
            data,
            in_dim,
            out_dim,
        })
    }

    /// Packs a block-scaled FP8 weight, one byte a weight. Its row blocks must be whole panels.
    pub fn pack_fp8(weight: &Fp8Weight) -> candle_core::Result<Self> {
        let [row_block, k_block] = weight.block;
        if !row_block.is_multiple_of(PANEL) {
            bail!("FP8 row blocks of {row_block} are not whole panels of {PANEL}")
        }
        let (out_dim, in_dim) = (weight.rows, weight.cols);
        let values: Vec<F8E4M3> = weight.bytes.iter().map(|&b| F8E4M3(b)).collect();
        let per_panel = in_dim.div_ceil(k_block);
        let panels = out_dim.div_ceil(PANEL);
        let scales = (0..panels * per_panel)
            .map(|i| {
                let (panel, kb) = (i / per_panel, i % per_panel);
                weight.scale(panel * PANEL, kb * k_block) * F8E4M3::SCALE_FACTOR
            })
            .collect();
        Ok(Self {
            data: PanelData::Fp8(
                pack::panels(&values, out_dim, in_dim),
                Scales {
                    values: scales,
                    per_panel,
                    k_block,
                },
            ),
            in_dim,
            out_dim,
        })
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The dtype the weight is kept in.
    pub fn dtype(&self) -> DType {
        match self.data {
            PanelData::F32(_) => DType::F32,
            PanelData::Bf16(_) => DType::BF16,
            PanelData::F16(_) => DType::F16,
            PanelData::Fp8(..) => DType::F8E4M3,
        }
    }

    /// `x`: f32 `[rows, in]` → f32 `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(&PackedMatmul(self))
    }

    /// Rows `ids` of the original `[out, in]` weight, widened to f32: `[ids.len(), in]`. The
    /// embedding lookup when the input embedding is tied to this projection.
    pub fn rows(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.out_dim) {
            bail!(
                "row {bad} out of range for a weight of {} rows",
                self.out_dim
            )
        }
        let values = match &self.data {
            PanelData::F32(d) => pack::gather_rows(d, None, self.in_dim, ids),
            PanelData::Bf16(d) => pack::gather_rows(d, None, self.in_dim, ids),
            PanelData::F16(d) => pack::gather_rows(d, None, self.in_dim, ids),
            PanelData::Fp8(d, s) => pack::gather_rows(d, Some(s), self.in_dim, ids),
        };
        Tensor::from_vec(values, (ids.len(), self.in_dim), &candle_core::Device::Cpu)
    }

    /// `y = x · Wᵀ` on plain slices (`x`: `rows × in`, `y`: `rows × out`, row-major).
    fn multiply(&self, x: &[f32], rows: usize, y: &mut [f32]) -> candle_core::Result<()> {
        #[cfg(target_arch = "x86_64")]
        if kernel::supported() {
            let (k, n) = (self.in_dim, self.out_dim);
            match &self.data {
                PanelData::F32(w) => kernel::matmul(x, rows, k, w, None, n, y),
                PanelData::Bf16(w) => kernel::matmul(x, rows, k, w, None, n, y),
                PanelData::F16(w) => kernel::matmul(x, rows, k, w, None, n, y),
                PanelData::Fp8(w, s) => kernel::matmul(x, rows, k, w, Some(s), n, y),
            }
            return Ok(());
        }
        let _ = (x, rows, y);
        bail!("packed projections need x86-64 with AVX2, FMA and F16C")
    }

    /// The scalar definition of what [`Self::forward`] computes, bit for bit: for each output
    /// element one `mul_add` chain over `k` in order, from zero (FP8: one per scale block, the
    /// blocks' sums scaled and added in order). Slow; for tests.
    pub fn reference(&self, x: &[f32], rows: usize) -> Vec<f32> {
        match &self.data {
            PanelData::F32(d) => pack::reference(d, None, x, rows, self.in_dim, self.out_dim),
            PanelData::Bf16(d) => pack::reference(d, None, x, rows, self.in_dim, self.out_dim),
            PanelData::F16(d) => pack::reference(d, None, x, rows, self.in_dim, self.out_dim),
            PanelData::Fp8(d, s) => pack::reference(d, Some(s), x, rows, self.in_dim, self.out_dim),
        }
    }
}

fn flat<T: candle_core::WithDType>(t: &Tensor) -> candle_core::Result<Vec<T>> {
    t.flatten_all()?.to_vec1::<T>()
}

/// The candle op around [`PackedWeight::multiply`].
struct PackedMatmul<'a>(&'a PackedWeight);

impl candle_core::CustomOp1 for PackedMatmul<'_> {
    fn name(&self) -> &'static str {
        "packed-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = self.0;
        let (rows, in_dim) = layout.shape().dims2()?;
        if in_dim != w.in_dim {
            bail!(
                "packed-matmul: input {:?} does not fit a weight of {} inputs",
                layout.shape(),
                w.in_dim
            )
        }
        let (CpuStorage::F32(x), Some((start, end))) = (x, layout.contiguous_offsets()) else {
            bail!("packed-matmul needs a contiguous f32 input")
        };
        let mut y = vec![0f32; rows * w.out_dim];
        w.multiply(&x[start..end], rows, &mut y)?;
        Ok((CpuStorage::F32(y), Shape::from((rows, w.out_dim))))
    }
}

#[cfg(test)]
mod tests;
