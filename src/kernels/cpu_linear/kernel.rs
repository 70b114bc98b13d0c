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

use super::element::{ElementKind, F8E4M3, PanelElement};
use super::{PANEL, Scales, TASKS_PER_THREAD};
use half::bf16;
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
        x: interleave_row_blocks(&x[..rows * in_dim], in_dim, input_factor::<E>()),
        rows,
        in_dim,
        packed,
        scales,
        out_dim,
        y: OutPtr(y.as_mut_ptr()),
        wide_fp8: E::KIND == ElementKind::F8E4M3 && wide_fp8(),
    };
    // Panels a tile takes at once: a single row against two panels is only four FMA chains,
    // too few to cover the FMA latency, so it takes four (eight chains).
    let width = if rows == 1 { 4 } else { 2 };
    let groups = panels.div_ceil(width);
    let tasks = (rayon::current_num_threads() * TASKS_PER_THREAD).clamp(1, groups);
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
    /// FP8 weights on a CPU with AVX-512: the 512-bit tiles.
    wide_fp8: bool,
}

impl<E: PanelElement> Problem<'_, E> {
    /// Every row block against `count` panels from `panel` (up to 4 for a single row, else 2).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn panels(&self, panel: usize, count: usize) {
        if E::KIND == ElementKind::F8E4M3 && !self.wide_fp8 && self.rows > MAX_ROWS {
            // SAFETY: forwarded; the weights are FP8.
            return unsafe { self.fp8_panels_widened(panel, count) };
        }
        for row in (0..self.rows).step_by(MAX_ROWS) {
            let tile = self.tile::<E>(row, panel);
            let rows = MAX_ROWS.min(self.rows - row);
            // SAFETY: `rows` rows and `count` panels are in bounds; the 512-bit tiles run only
            // where `wide_fp8` found AVX-512.
            unsafe {
                match tile.as_fp8() {
                    Some(tile) if self.wide_fp8 => fp8_avx512::block(rows, count, tile),
                    _ => block(rows, count, tile),
                }
            }
        }
    }

    /// FP8 panels on AVX2 for two or more row blocks: each panel widened once into a bf16
    /// scratch (the widened e4m3 bits are exactly a bf16: their low 16 bits are zero) and
    /// multiplied by the bf16 tiles with the FP8 block scales. Widening a weight costs a
    /// conversion, a shift and a mask on the shuffle and shift ports the FMAs share; once per
    /// panel instead of once per row block, prefill runs at the bf16 tiles' speed. Same values
    /// in the same chains, so the same bits as the direct FP8 tiles.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn fp8_panels_widened(&self, panel: usize, count: usize) {
        let panel_len = PANEL * self.in_dim;
        let fp8 = self.packed.as_ptr().cast::<F8E4M3>();
        WIDENED.with_borrow_mut(|scratch| {
            if scratch.len() < count * panel_len {
                scratch.resize(count * panel_len, bf16::ZERO);
            }
            for c in 0..count {
                // SAFETY: panel `panel + c` is inside `packed` (the caller's bounds).
                unsafe {
                    widen_fp8_panel(
                        fp8.add((panel + c) * panel_len),
                        self.in_dim,
                        &mut scratch[c * panel_len..(c + 1) * panel_len],
                    )
                };
            }
            for row in (0..self.rows).step_by(MAX_ROWS) {
                let tile = Tile::<bf16> {
                    w: scratch.as_ptr(),
                    w_stride: panel_len,
                    ..self.tile::<bf16>(row, panel)
                };
                // SAFETY: as in `panels`; the scratch holds `count` widened panels.
                unsafe { block(MAX_ROWS.min(self.rows - row), count, tile) };
            }
        });
    }

    /// The tile of the row block from `row` against panels from `panel`, reading weights at
    /// `packed` (callers replace `w` to read a widened copy).
    fn tile<T>(&self, row: usize, panel: usize) -> Tile<T> {
        Tile {
            x: self.x[row * self.in_dim..].as_ptr(),
            w: self.packed[panel * PANEL * self.in_dim..]
                .as_ptr()
                .cast::<T>(),
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
        }
    }
}

thread_local! {
    /// Each pool thread's widened FP8 panels (reused: a fresh buffer of this size per call
    /// would be mapped and faulted in each time).
    static WIDENED: std::cell::RefCell<Vec<bf16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One FP8 panel (`k` rows of 16) widened to bf16 in the bf16 slot order: the widened f32 bits
/// of [`F8E4M3::f32_bits`], top halves. `packus` narrows within 128-bit lanes, which puts
/// columns 8–11 in slots 4–7 and 4–7 in 8–11, as [`PanelElement::slot`] for bf16 wants.
#[target_feature(enable = "avx2")]
unsafe fn widen_fp8_panel(p: *const F8E4M3, k: usize, out: &mut [bf16]) {
    assert!(out.len() >= k * PANEL);
    let dst = out.as_mut_ptr().cast::<__m256i>();
    for i in 0..k {
        // SAFETY: 16 bytes at row `i` of the panel (the caller's bounds); `out` holds `k` rows.
        unsafe {
            let row = p.add(i * PANEL).cast::<u8>();
            let lo = _mm256_srli_epi32(_mm256_castps_si256(fp8_widen8(row)), 16);
            let hi = _mm256_srli_epi32(_mm256_castps_si256(fp8_widen8(row.add(8))), 16);
            _mm256_storeu_si256(dst.add(i), _mm256_packus_epi32(lo, hi));
        }
    }
}

/// Each block of [`MAX_ROWS`] rows (the last may be shorter) interleaved column by column, so a
/// tile's inputs for one `k` are adjacent. Read in place, rows a power-of-two apart (1024 f32,
/// say) fall into one L1 set and evict each other. Block `b` starts where its first row did.
/// Each input is multiplied by `factor` (a power of two, so exactly) on the way.
fn interleave_row_blocks(x: &[f32], in_dim: usize, factor: f32) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(MAX_ROWS * in_dim.max(1))
        .zip(x.par_chunks(MAX_ROWS * in_dim.max(1)))
        .for_each(|(dst, src)| {
            let rows = src.len() / in_dim;
            for (r, row) in src.chunks_exact(in_dim).enumerate() {
                for (k, &v) in row.iter().enumerate() {
                    dst[k * rows + r] = v * factor;
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

impl<E: PanelElement> Tile<E> {
    /// The same tile typed as FP8, if its weights are.
    fn as_fp8(self) -> Option<Tile<F8E4M3>> {
        (E::KIND == ElementKind::F8E4M3).then(|| Tile {
            x: self.x,
            w: self.w.cast::<F8E4M3>(),
            w_stride: self.w_stride,
            scales: self.scales,
            scale_stride: self.scale_stride,
            scale_block: self.scale_block,
            k: self.k,
            y: self.y,
            y_stride: self.y_stride,
            cols: self.cols,
        })
    }
}

impl<E> Tile<E> {
    /// Inputs per chain: a scale block for FP8, all of `k` otherwise.
    fn block(&self) -> usize {
        self.scale_block.min(self.k).max(1)
    }

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

/// Calls the tile function `$tile` (with leading generic `$gen`, if any) of the shape of `rows`
/// (1..=6) rows against `panels` (1 to 4 for one row, else 1 or 2) panels.
macro_rules! by_shape {
    ($rows:expr, $panels:expr, $t:expr, $tile:ident $(<$gen:ty>)?) => {
        match ($rows, $panels) {
            (1, 4) => $tile::<$($gen,)? 1, 4>($t),
            (1, 3) => $tile::<$($gen,)? 1, 3>($t),
            (1, 2) => $tile::<$($gen,)? 1, 2>($t),
            (2, 2) => $tile::<$($gen,)? 2, 2>($t),
            (3, 2) => $tile::<$($gen,)? 3, 2>($t),
            (1, _) => $tile::<$($gen,)? 1, 1>($t),
            (2, _) => $tile::<$($gen,)? 2, 1>($t),
            (3, _) => $tile::<$($gen,)? 3, 1>($t),
            (r, p) => {
                for c in 0..p {
                    let t = $t.panel(c);
                    match r {
                        4 => $tile::<$($gen,)? 4, 1>(t),
                        5 => $tile::<$($gen,)? 5, 1>(t),
                        _ => $tile::<$($gen,)? 6, 1>(t),
                    }
                }
            }
        }
    };
}

// Declared after `by_shape!`, which it uses (macros are visible below their definition only).
mod fp8_avx512;

/// `rows` (1..=6) rows against `panels` (1 to 4 for one row, else 1 or 2) panels.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block<E: PanelElement>(rows: usize, panels: usize, t: Tile<E>) {
    // SAFETY: forwarded from the caller.
    unsafe { by_shape!(rows, panels, t, tile<E>) }
}

/// `R` rows × `C` panels: `y[r][c·16 + j] = Σₖ x[r][k] · w_c[k][j]`, one FMA chain per element
/// in `k` order from zero. FP8 weights: one such chain per block of the scale's inputs, each
/// added in block order as `acc = fma(chain, scale, acc)` (the scale applied once a block, not
/// once a weight, as block-scaled FP8 kernels do).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<E: PanelElement, const R: usize, const C: usize>(t: Tile<E>) {
    // SAFETY: the caller guarantees `R` rows of `k` inputs, `C` panels of `k · 16` weights and
    // `min(cols, C · 16)` writable outputs per row.
    unsafe {
        // Block-scaled (FP8, or FP8 widened to bf16): chains per scale block.
        let fp8 = !t.scales.is_null();
        let mut acc = [[[_mm256_setzero_ps(); 2]; C]; R];
        for (block, first) in (0..t.k).step_by(t.block()).enumerate() {
            let mut chain = [[[_mm256_setzero_ps(); 2]; C]; R];
            for k in first..(first + t.block()).min(t.k) {
                let mut w = [[_mm256_setzero_ps(); 2]; C];
                for (c, w) in w.iter_mut().enumerate() {
                    *w = load16(t.w.add(c * t.w_stride + k * PANEL));
                }
                for (r, chain) in chain.iter_mut().enumerate() {
                    let xr = _mm256_set1_ps(*t.x.add(k * R + r));
                    for (chain, w) in chain.iter_mut().zip(&w) {
                        chain[0] = _mm256_fmadd_ps(xr, w[0], chain[0]);
                        chain[1] = _mm256_fmadd_ps(xr, w[1], chain[1]);
                    }
                }
            }
            if !fp8 {
                acc = chain;
                continue;
            }
            for (acc, chain) in acc.iter_mut().zip(&chain) {
                for (c, (acc, chain)) in acc.iter_mut().zip(chain).enumerate() {
                    let s = _mm256_set1_ps(*t.scales.add(c * t.scale_stride + block));
                    acc[0] = _mm256_fmadd_ps(chain[0], s, acc[0]);
                    acc[1] = _mm256_fmadd_ps(chain[1], s, acc[1]);
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
                let p = p.cast::<u8>();
                [fp8_widen8(p), fp8_widen8(p.add(8))]
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    static AVX2_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's FP8 products on the AVX2 tiles (tests hold both to one result).
#[cfg(test)]
pub fn with_avx2_only<T>(f: impl FnOnce() -> T) -> T {
    AVX2_ONLY.set(true);
    let out = f();
    AVX2_ONLY.set(false);
    out
}

/// Whether FP8 products started on this thread take the 512-bit tiles.
fn wide_fp8() -> bool {
    #[cfg(test)]
    if AVX2_ONLY.get() {
        return false;
    }
    fp8_avx512::supported()
}

/// Where the FP8 weights' inputs are scaled to (see [`F8E4M3`]); 1 for the other types.
fn input_factor<E: PanelElement>() -> f32 {
    if E::KIND == ElementKind::F8E4M3 {
        F8E4M3::INPUT_FACTOR
    } else {
        1.0
    }
}

/// 8 e4m3 bytes widened to f32 as [`F8E4M3::f32_bits`] does.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn fp8_widen8(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 8 readable bytes at `p`.
    unsafe {
        let v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast::<__m128i>()));
        let bits = _mm256_and_si256(
            _mm256_slli_epi32(v, 20),
            _mm256_set1_epi32(0x87F0_0000u32 as i32),
        );
        _mm256_castsi256_ps(bits)
    }
}
