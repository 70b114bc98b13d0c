//! Quantized projections on the CPU with our own integer kernels: GGML block formats (Q8_0,
//! Q4_K, Q6_K) repacked at load into panels of 8 output columns, multiplied by activations quantized
//! to int8 per block (as llama.cpp does), in register tiles of several rows so a batch streams
//! each weight once. AVX2 everywhere; where the CPU has AVX-512 VNNI, `vpdpbusd` tiles (picked
//! at run time).
//!
//! The invariance rule of the dense kernel holds here too: an output element is the block
//! terms of its row and column accumulated by one FMA each in block order, from zero, the
//! integer parts exact; activations are quantized per row. So a row's result does not depend
//! on the rows sharing its call, the tile it lands in or the thread; the tests hold every
//! kernel to the scalar [`QuantizedPanels::reference`] bit for bit.

mod activations;
mod q4_k;
mod q6_k;
mod q8_0;

pub use activations::QuantizedRows;

use super::TASKS_PER_THREAD;
use crate::kernels::huge_pages;
use crate::weights::gguf::GgmlType;
use crate::weights::quantized::QuantizedWeight;
use candle_core::{CpuStorage, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

/// Output columns per panel: one AVX2 register of 32-bit lanes.
pub const COLS: usize = 8;

/// The block formats with a kernel here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Q8_0,
    Q4K,
    Q6K,
}

impl Format {
    fn of(dtype: GgmlType) -> Option<Self> {
        match dtype {
            GgmlType::Q8_0 => Some(Self::Q8_0),
            GgmlType::Q4_K => Some(Self::Q4K),
            GgmlType::Q6_K => Some(Self::Q6K),
            _ => None,
        }
    }

    /// Inputs per activation block (the weights' block or super-block).
    fn activation_block(self) -> usize {
        match self {
            Self::Q8_0 => q8_0::BLOCK,
            Self::Q4K => q4_k::BLOCK,
            Self::Q6K => q6_k::BLOCK,
        }
    }

    fn panel_bytes(self, in_dim: usize) -> usize {
        match self {
            Self::Q8_0 => q8_0::panel_bytes(in_dim),
            Self::Q4K => q4_k::panel_bytes(in_dim),
            Self::Q6K => q6_k::panel_bytes(in_dim),
        }
    }

    fn pack(self, rows: &[u8], out_dim: usize, in_dim: usize, panel: &mut [u8], p: usize) {
        match self {
            Self::Q8_0 => q8_0::pack(rows, out_dim, in_dim, panel, p),
            Self::Q4K => q4_k::pack(rows, out_dim, in_dim, panel, p),
            Self::Q6K => q6_k::pack(rows, out_dim, in_dim, panel, p),
        }
    }

    fn dequantize_column(self, panel: &[u8], in_dim: usize, j: usize, out: &mut [f32]) {
        match self {
            Self::Q8_0 => q8_0::dequantize_column(panel, in_dim, j, out),
            Self::Q4K => q4_k::dequantize_column(panel, in_dim, j, out),
            Self::Q6K => q6_k::dequantize_column(panel, in_dim, j, out),
        }
    }

    fn reference(self, panel: &[u8], x: &QuantizedRows, y: &mut [f32], stride: usize, cols: usize) {
        match self {
            Self::Q8_0 => q8_0::reference(panel, x, y, stride, cols),
            Self::Q4K => q4_k::reference(panel, x, y, stride, cols),
            Self::Q6K => q6_k::reference(panel, x, y, stride, cols),
        }
    }
}

/// A quantized `[out, in]` weight repacked into panels for the CPU kernels.
pub struct QuantizedPanels {
    format: Format,
    dtype: GgmlType,
    in_dim: usize,
    out_dim: usize,
    data: Vec<u8>,
}

impl QuantizedPanels {
    /// Whether this CPU runs the kernels and there is one for `weight`'s type and shape.
    pub fn supports(weight: &QuantizedWeight) -> bool {
        cpu_supported()
            && Format::of(weight.dtype)
                .is_some_and(|f| weight.cols.is_multiple_of(f.activation_block()))
    }

    pub fn pack(weight: &QuantizedWeight) -> candle_core::Result<Self> {
        let Some(format) = Format::of(weight.dtype) else {
            bail!("no CPU kernel for {}", weight.dtype)
        };
        let (out_dim, in_dim) = (weight.rows, weight.cols);
        let stride = format.panel_bytes(in_dim);
        let mut data = huge_pages::filled(out_dim.div_ceil(COLS) * stride, 0u8);
        data.par_chunks_mut(stride.max(1))
            .enumerate()
            .for_each(|(p, panel)| format.pack(&weight.bytes, out_dim, in_dim, panel, p));
        Ok(Self {
            format,
            dtype: weight.dtype,
            in_dim,
            out_dim,
            data,
        })
    }

    pub fn dtype(&self) -> GgmlType {
        self.dtype
    }

    fn panel(&self, p: usize) -> &[u8] {
        let stride = self.format.panel_bytes(self.in_dim);
        &self.data[p * stride..(p + 1) * stride]
    }

    /// `x`: f32 `[rows, in]` → f32 `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(&QuantizedMatmul(self))
    }

    /// Rows `ids` of the weight, dequantized: `[ids.len(), in]` (tied-embedding lookups).
    pub fn rows(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let mut out = vec![0f32; ids.len() * self.in_dim];
        for (dst, &id) in out.chunks_mut(self.in_dim.max(1)).zip(ids) {
            let id = id as usize;
            if id >= self.out_dim {
                bail!(
                    "row {id} out of range for a weight of {} rows",
                    self.out_dim
                )
            }
            let panel = self.panel(id / COLS);
            self.format
                .dequantize_column(panel, self.in_dim, id % COLS, dst);
        }
        Tensor::from_vec(out, (ids.len(), self.in_dim), &candle_core::Device::Cpu)
    }

    /// The activations as the kernels take them.
    pub fn quantize_input(&self, x: &[f32], rows: usize) -> QuantizedRows {
        QuantizedRows::quantize(x, rows, self.in_dim, self.format.activation_block())
    }

    /// The scalar definition of [`Self::forward`], bit for bit. Slow; for tests.
    pub fn reference(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let xq = self.quantize_input(x, rows);
        let mut y = vec![0f32; rows * self.out_dim];
        for p in 0..self.out_dim.div_ceil(COLS) {
            let cols = COLS.min(self.out_dim - p * COLS);
            let out = &mut y[p * COLS..];
            self.format
                .reference(self.panel(p), &xq, out, self.out_dim, cols);
        }
        y
    }

    fn multiply(&self, x: &[f32], rows: usize, y: &mut [f32]) -> candle_core::Result<()> {
        self.multiply_with(x, rows, y, Tiles::best())
    }

    fn multiply_with(
        &self,
        x: &[f32],
        rows: usize,
        y: &mut [f32],
        tiles: Tiles,
    ) -> candle_core::Result<()> {
        if !cpu_supported() {
            bail!("quantized CPU kernels need x86-64 with AVX2, FMA and F16C")
        }
        if tiles == Tiles::Vnni && !vnni_supported() {
            bail!("the VNNI tiles need AVX-512 F, VL and VNNI")
        }
        if rows == 0 || self.out_dim == 0 {
            return Ok(());
        }
        let xq = self.quantize_input(x, rows);
        let panels = self.out_dim.div_ceil(COLS);
        let out = OutPtr(y.as_mut_ptr());
        let tasks = (rayon::current_num_threads() * TASKS_PER_THREAD).clamp(1, panels);
        let per_task = panels.div_ceil(tasks);
        (0..panels.div_ceil(per_task))
            .into_par_iter()
            .for_each(|task| {
                for p in task * per_task..((task + 1) * per_task).min(panels) {
                    // SAFETY: the features were checked; `xq`, the panel and `y` have the
                    // sizes the tiles read and write; tasks write disjoint columns.
                    unsafe { self.panel_rows(&xq, p, &out, tiles) };
                }
            });
        Ok(())
    }

    /// Every row block of `xq` against panel `p`.
    /// `tiles` must be able to run here.
    unsafe fn panel_rows(&self, xq: &QuantizedRows, p: usize, out: &OutPtr, tiles: Tiles) {
        const ROWS: usize = 4;
        let blocks = xq.blocks_per_row();
        let vnni = tiles == Tiles::Vnni;
        for r0 in (0..xq.rows).step_by(ROWS) {
            let tile = Tile {
                panel: self.panel(p).as_ptr(),
                blocks,
                xq: xq.q[r0 * xq.cols..].as_ptr(),
                x_stride: xq.cols,
                xd: xq.d[r0 * blocks..].as_ptr(),
                xd_stride: blocks,
                sums: xq.sums16[(r0 * xq.cols / 16).min(xq.sums16.len())..].as_ptr(),
                sums_stride: xq.cols / 16,
                // SAFETY: row `r0`, column `p · COLS` is inside `y`.
                y: unsafe { out.0.add(r0 * self.out_dim + p * COLS) },
                y_stride: self.out_dim,
                cols: COLS.min(self.out_dim - p * COLS),
            };
            #[cfg(target_arch = "x86_64")]
            // SAFETY: forwarded from the caller; `rows` rows remain from `r0`.
            unsafe {
                // The tile function of `R` rows for the row count left from `r0`.
                macro_rules! by_rows {
                    ($($tile:ident)::+) => {
                        match ROWS.min(xq.rows - r0) {
                            1 => $($tile)::+::<1>(&tile),
                            2 => $($tile)::+::<2>(&tile),
                            3 => $($tile)::+::<3>(&tile),
                            _ => $($tile)::+::<4>(&tile),
                        }
                    };
                }
                match (self.format, vnni) {
                    (Format::Q8_0, true) => by_rows!(q8_0::vnni::tile),
                    (Format::Q4K, true) => by_rows!(q4_k::vnni::tile),
                    (Format::Q6K, true) => by_rows!(q6_k::vnni::tile),
                    (Format::Q8_0, false) => by_rows!(q8_0::avx2::tile),
                    (Format::Q4K, false) => by_rows!(q4_k::avx2::tile),
                    (Format::Q6K, false) => by_rows!(q6_k::avx2::tile),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = tile;
        }
    }
}

fn cpu_supported() -> bool {
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

/// Which register tiles multiply: the VNNI tiles (AVX-512 VNNI and VL on 256-bit registers)
/// replace the AVX2 tiles where the CPU has them, with the same results bit for bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tiles {
    Avx2,
    Vnni,
}

impl Tiles {
    fn best() -> Self {
        if vnni_supported() {
            Self::Vnni
        } else {
            Self::Avx2
        }
    }

    /// Every set that runs on this CPU (tests hold each to the definition).
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut all = vec![Self::Avx2];
        if vnni_supported() {
            all.push(Self::Vnni);
        }
        all
    }
}

fn vnni_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Where one register tile reads and writes: `R` rows (known to the kernel) from `xq`, one
/// panel, `R` rows of outputs of which the first `cols` columns are real.
pub(super) struct Tile {
    panel: *const u8,
    blocks: usize,
    xq: *const i8,
    x_stride: usize,
    xd: *const f32,
    xd_stride: usize,
    /// Sums of every 16 quantized inputs (256-blocks only).
    sums: *const i16,
    sums_stride: usize,
    y: *mut f32,
    y_stride: usize,
    cols: usize,
}

impl Tile {
    /// Writes the accumulators of `R` rows (8 columns each, the last panel's padding dropped).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    unsafe fn store<const R: usize>(&self, acc: &[std::arch::x86_64::__m256; R]) {
        use std::arch::x86_64::*;
        for (r, a) in acc.iter().enumerate() {
            // SAFETY: row `r` of the tile has `cols` writable outputs (the caller's bounds).
            unsafe {
                let y = self.y.add(r * self.y_stride);
                if self.cols == COLS {
                    _mm256_storeu_ps(y, *a);
                } else {
                    let mut lanes = [0f32; COLS];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), *a);
                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), y, self.cols);
                }
            }
        }
    }
}

/// The output pointer, shared by tasks that write disjoint columns.
struct OutPtr(*mut f32);
// SAFETY: every task writes its own columns; `multiply` returns only after all tasks end.
unsafe impl Sync for OutPtr {}

/// The candle op around [`QuantizedPanels::multiply`].
struct QuantizedMatmul<'a>(&'a QuantizedPanels);

impl candle_core::CustomOp1 for QuantizedMatmul<'_> {
    fn name(&self) -> &'static str {
        "quantized-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = self.0;
        let (rows, in_dim) = layout.shape().dims2()?;
        if in_dim != w.in_dim {
            bail!(
                "quantized-matmul: input {:?} does not fit a weight of {} inputs",
                layout.shape(),
                w.in_dim
            )
        }
        let (CpuStorage::F32(x), Some((start, end))) = (x, layout.contiguous_offsets()) else {
            bail!("quantized-matmul needs a contiguous f32 input")
        };
        let mut y = vec![0f32; rows * w.out_dim];
        w.multiply(&x[start..end], rows, &mut y)?;
        Ok((CpuStorage::F32(y), Shape::from((rows, w.out_dim))))
    }
}

#[cfg(test)]
mod tests;
