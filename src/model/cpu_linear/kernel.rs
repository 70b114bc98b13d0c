//! The x86-64 kernel (AVX2 + FMA + F16C): register tiles of up to 6 rows × 16 columns, or up to
//! 3 rows × 32 columns, accumulating in f32.
//!
//! Threads split the output columns (pairs of panels); each walks its panels in order and, for
//! each, every block of rows, so a panel is read from memory once per call and served from cache
//! to the other row blocks. That makes a decode step stream the weights exactly once.
//!
//! Small row blocks take several panels at once (four for a single row, two for two or three):
//! one row against one panel is only two FMA chains, too few to hide the FMA latency, while the
//! arithmetic of each element stays one chain in `k` order either way.

use super::element::{ElementKind, PanelElement};
use super::{PANEL, Scales};
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Rows of the tallest register tile: 6 × 16 columns is 12 accumulators, two weight registers
/// and a broadcast — all 16 AVX2 registers.
const MAX_ROWS: usize = 6;

pub fn supported() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// `y = x · Wᵀ` (`x`: `rows × in_dim`, `y`: `rows × out_dim`, row-major; `packed`: panels).
/// Callers check [`supported`] first.
pub fn matmul<E: PanelElement>(
    x: &[f32],
    rows: usize,
    in_dim: usize,
    packed: &[E],
    scales: Option<&Scales>,
    out_dim: usize,
    y: &mut [f32],
) {
    let panels = out_dim.div_ceil(PANEL);
    assert!(
        supported(),
        "packed-matmul kernel on a CPU without AVX2/FMA/F16C"
    );
    assert!(x.len() >= rows * in_dim, "packed-matmul: input too short");
    assert!(y.len() >= rows * out_dim, "packed-matmul: output too short");
    assert!(
        packed.len() >= panels * PANEL * in_dim,
        "packed-matmul: weight too short"
    );
    assert!(
        (E::KIND == ElementKind::F8E4M3) == scales.is_some(),
        "packed-matmul: block scales go with FP8 weights"
    );
    if rows == 0 || panels == 0 {
        return;
    }
    let problem = Problem {
        x: interleave_row_blocks(&x[..rows * in_dim], in_dim),
        rows,
        in_dim,
        packed,
        scales,
        out_dim,
        y: OutPtr(y.as_mut_ptr()),
    };
    // Panels a tile takes at once: a single row against two panels is only four FMA chains,
    // too few to cover the FMA latency, so it takes four (eight chains).
    let width = if rows == 1 { 4 } else { 2 };
    let groups = panels.div_ceil(width);
    // A few tasks per thread so an unlucky thread's tail stays short.
    let tasks = (rayon::current_num_threads() * 4).clamp(1, groups);
    let groups_per_task = groups.div_ceil(tasks);
    (0..groups.div_ceil(groups_per_task))
        .into_par_iter()
        .for_each(|task| {
            let first_group = task * groups_per_task;
            for group in first_group..(first_group + groups_per_task).min(groups) {
                let (panel, count) = (group * width, width.min(panels - group * width));
                // SAFETY: `problem`'s sizes were asserted above; each task writes its own
                // panels' columns; the CPU features were checked.
                unsafe { problem.panels(panel, count) };
            }
        });
}

/// One call's operands, with `x` interleaved by row block.
struct Problem<'a, E> {
    x: Vec<f32>,
    rows: usize,
    in_dim: usize,
    packed: &'a [E],
    scales: Option<&'a Scales>,
    out_dim: usize,
    y: OutPtr,
}

impl<E: PanelElement> Problem<'_, E> {
    /// Every row block against `count` panels from `panel` (up to 4 for a single row, else 2).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn panels(&self, panel: usize, count: usize) {
        for row in (0..self.rows).step_by(MAX_ROWS) {
            let tile = Tile {
                x: self.x[row * self.in_dim..].as_ptr(),
                w: self.packed[panel * PANEL * self.in_dim..].as_ptr(),
                w_stride: PANEL * self.in_dim,
                scales: self.scales.map_or(std::ptr::null(), |s| {
                    s.values[panel * s.per_panel..].as_ptr()
                }),
                scale_stride: self.scales.map_or(0, |s| s.per_panel),
                scale_block: self.scales.map_or(usize::MAX, |s| s.k_block),
                k: self.in_dim,
                // SAFETY: inside `y` (the caller's bounds).
                y: unsafe { self.y.get().add(row * self.out_dim + panel * PANEL) },
                y_stride: self.out_dim,
                cols: self.out_dim - panel * PANEL,
            };
            // SAFETY: `MAX_ROWS.min(rows - row)` rows and `count` panels are in bounds.
            unsafe { block(MAX_ROWS.min(self.rows - row), count, tile) };
        }
    }
}

/// Each block of [`MAX_ROWS`] rows (the last may be shorter) interleaved column by column, so a
/// tile's inputs for one `k` are adjacent. Read in place, rows a power-of-two apart (1024 f32,
/// say) fall into one L1 set and evict each other. Block `b` starts where its first row did.
fn interleave_row_blocks(x: &[f32], in_dim: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(MAX_ROWS * in_dim.max(1))
        .zip(x.par_chunks(MAX_ROWS * in_dim.max(1)))
        .for_each(|(dst, src)| {
            let rows = src.len() / in_dim;
            for (r, row) in src.chunks_exact(in_dim).enumerate() {
                for (k, &v) in row.iter().enumerate() {
                    dst[k * rows + r] = v;
                }
            }
        });
    out
}

/// The output pointer, shared by tasks that write disjoint columns.
struct OutPtr(*mut f32);
// SAFETY: every task writes its own columns; `matmul` returns only after all tasks end.
unsafe impl Sync for OutPtr {}
impl OutPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Where one register tile reads and writes.
#[derive(Clone, Copy)]
struct Tile<E> {
    /// The tile's rows, interleaved: `x[k · rows + r]`.
    x: *const f32,
    w: *const E,
    w_stride: usize,
    /// FP8 only: the scale of each block of `scale_block` inputs, `scale_stride` per panel.
    scales: *const f32,
    scale_stride: usize,
    scale_block: usize,
    k: usize,
    y: *mut f32,
    y_stride: usize,
    /// Valid output columns from the tile's first one (the last panel may be partial).
    cols: usize,
}

impl<E> Tile<E> {
    /// The same rows against the tile's `c`-th panel.
    unsafe fn panel(self, c: usize) -> Self {
        // SAFETY: the caller passes a panel the tile covers.
        unsafe {
            Self {
                w: self.w.add(c * self.w_stride),
                scales: if self.scales.is_null() {
                    self.scales
                } else {
                    self.scales.add(c * self.scale_stride)
                },
                y: self.y.add(c * PANEL),
                cols: self.cols.saturating_sub(c * PANEL),
                ..self
            }
        }
    }
}

/// `rows` (1..=6) rows against `panels` (1 to 4 for one row, else 1 or 2) panels.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block<E: PanelElement>(rows: usize, panels: usize, t: Tile<E>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (rows, panels) {
            (1, 4) => tile::<E, 1, 4>(t),
            (1, 3) => tile::<E, 1, 3>(t),
            (1, 2) => tile::<E, 1, 2>(t),
            (2, 2) => tile::<E, 2, 2>(t),
            (3, 2) => tile::<E, 3, 2>(t),
            (1, _) => tile::<E, 1, 1>(t),
            (2, _) => tile::<E, 2, 1>(t),
            (3, _) => tile::<E, 3, 1>(t),
            (r, p) => {
                for c in 0..p {
                    let t = t.panel(c);
                    match r {
                        4 => tile::<E, 4, 1>(t),
                        5 => tile::<E, 5, 1>(t),
                        _ => tile::<E, 6, 1>(t),
                    }
                }
            }
        }
    }
}

/// `R` rows × `C` panels: `y[r][c·16 + j] = Σₖ x[r][k] · w_c[k][j]`, one FMA chain per element
/// in `k` order from zero.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<E: PanelElement, const R: usize, const C: usize>(t: Tile<E>) {
    // SAFETY: the caller guarantees `R` rows of `k` inputs, `C` panels of `k · 16` weights and
    // `min(cols, C · 16)` writable outputs per row.
    unsafe {
        let fp8 = E::KIND == ElementKind::F8E4M3;
        let mut acc = [[[_mm256_setzero_ps(); 2]; C]; R];
        // FP8 weights go a scale block at a time, each block's scales loaded once (no division
        // in the loop); the other types have one block, all of `k`.
        for first in (0..t.k).step_by(t.scale_block.min(t.k).max(1)) {
            let mut scale = [_mm256_setzero_ps(); C];
            if fp8 {
                let block = first / t.scale_block;
                for (c, s) in scale.iter_mut().enumerate() {
                    *s = _mm256_set1_ps(*t.scales.add(c * t.scale_stride + block));
                }
            }
            for k in first..first.saturating_add(t.scale_block).min(t.k) {
                let mut w = [[_mm256_setzero_ps(); 2]; C];
                for (c, w) in w.iter_mut().enumerate() {
                    *w = load16(t.w.add(c * t.w_stride + k * PANEL));
                    if fp8 {
                        *w = [_mm256_mul_ps(w[0], scale[c]), _mm256_mul_ps(w[1], scale[c])];
                    }
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let xr = _mm256_set1_ps(*t.x.add(k * R + r));
                    for (acc, w) in acc.iter_mut().zip(&w) {
                        acc[0] = _mm256_fmadd_ps(xr, w[0], acc[0]);
                        acc[1] = _mm256_fmadd_ps(xr, w[1], acc[1]);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, acc) in acc.iter().enumerate() {
                if let Some(out) = t.output(r, c) {
                    out.store(*acc);
                }
            }
        }
    }
}

/// Up to 16 outputs of one row: a panel's columns, fewer in a partial last panel.
struct Outputs {
    at: *mut f32,
    len: usize,
}

impl<E> Tile<E> {
    /// Row `r`'s outputs in the tile's `c`-th panel, if the panel has valid columns.
    unsafe fn output(&self, r: usize, c: usize) -> Option<Outputs> {
        let col = c * PANEL;
        // SAFETY: row `r` and the valid columns are inside `y` (the tile's contract).
        (col < self.cols).then(|| Outputs {
            at: unsafe { self.y.add(r * self.y_stride + col) },
            len: PANEL.min(self.cols - col),
        })
    }
}

impl Outputs {
    #[target_feature(enable = "avx2")]
    unsafe fn store(&self, acc: [__m256; 2]) {
        // SAFETY: `len` valid outputs at `at`.
        unsafe {
            if self.len == PANEL {
                _mm256_storeu_ps(self.at, acc[0]);
                _mm256_storeu_ps(self.at.add(8), acc[1]);
            } else {
                let mut v = [0f32; PANEL];
                _mm256_storeu_ps(v.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(v.as_mut_ptr().add(8), acc[1]);
                std::ptr::copy_nonoverlapping(v.as_ptr(), self.at, self.len);
            }
        }
    }
}

/// 16 consecutive weights widened to f32 (exact for all three element types).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load16<E: PanelElement>(p: *const E) -> [__m256; 2] {
    // SAFETY: the caller guarantees 16 readable elements at `p`.
    unsafe {
        match E::KIND {
            ElementKind::F32 => {
                let p = p.cast::<f32>();
                [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))]
            }
            ElementKind::Bf16 => {
                // bf16 is the top half of an f32: interleaving zeros below each value widens
                // it. The unpacks work per 128-bit lane, which the packing's slot order undoes.
                let v = _mm256_loadu_si256(p.cast::<__m256i>());
                let zero = _mm256_setzero_si256();
                [
                    _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, v)),
                    _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, v)),
                ]
            }
            ElementKind::F16 => {
                let p = p.cast::<__m128i>();
                [
                    _mm256_cvtph_ps(_mm_loadu_si128(p)),
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(1))),
                ]
            }
            ElementKind::F8E4M3 => {
                // The f16 of value × 2⁻⁸ (see `F8E4M3`): magnitude up 7 bits, sign up 8. Sign-
                // extended to 16 bits, a byte's sign fills bits 8–15, so after the shift by 7
                // bit 15 is the sign and one mask keeps it with the magnitude.
                let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.cast::<__m128i>()));
                let bits =
                    _mm256_and_si256(_mm256_slli_epi16(v, 7), _mm256_set1_epi16(0xBF80u16 as i16));
                [
                    _mm256_cvtph_ps(_mm256_castsi256_si128(bits)),
                    _mm256_cvtph_ps(_mm256_extracti128_si256(bits, 1)),
                ]
            }
        }
    }
}
