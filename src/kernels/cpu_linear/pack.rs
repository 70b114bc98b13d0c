//! The panel layout: packing a row-major `[out, in]` weight, reading rows back, and the scalar
//! definition of the product. Within a panel's row of 16, columns sit in the element type's
//! [`PanelElement::slot`] order.

use super::element::{F8E4M3, PanelElement};
use super::{PANEL, Scales};
use crate::kernels::huge_pages;
use rayon::prelude::*;

/// Index of `W[col][k]` in the packed layout.
#[inline]
fn packed_index<E: PanelElement>(col: usize, k: usize, in_dim: usize) -> usize {
    (col / PANEL * in_dim + k) * PANEL + E::slot(col % PANEL)
}

/// Packs `w` (`out × in`, row-major) into column panels; the last panel is zero-padded.
pub fn panels<E: PanelElement>(w: &[E], out_dim: usize, in_dim: usize) -> Vec<E> {
    assert_eq!(w.len(), out_dim * in_dim, "weight size");
    let mut packed = huge_pages::filled(out_dim.div_ceil(PANEL) * PANEL * in_dim, E::default());
    packed
        .par_chunks_mut(PANEL * in_dim)
        .enumerate()
        .for_each(|(p, panel)| {
            for j in 0..PANEL.min(out_dim - p * PANEL) {
                let row = &w[(p * PANEL + j) * in_dim..][..in_dim];
                let slot = E::slot(j);
                for (k, &v) in row.iter().enumerate() {
                    panel[k * PANEL + slot] = v;
                }
            }
        });
    packed
}

/// Weight `(col, k)` as the kernel sees it: widened, times its block scale if it has one.
#[inline]
fn weight<E: PanelElement>(
    packed: &[E],
    scales: Option<&Scales>,
    col: usize,
    k: usize,
    in_dim: usize,
) -> f32 {
    let w = packed[packed_index::<E>(col, k, in_dim)].widen();
    match scales {
        // One rounding, then an exact power of two (see `F8E4M3`).
        Some(s) => w * s.get(col / PANEL, k) * F8E4M3::INPUT_FACTOR,
        None => w,
    }
}

/// Rows `ids` of the original weight, widened to f32 (and scaled), concatenated.
pub fn gather_rows<E: PanelElement>(
    packed: &[E],
    scales: Option<&Scales>,
    in_dim: usize,
    ids: &[u32],
) -> Vec<f32> {
    let mut out = Vec::with_capacity(ids.len() * in_dim);
    for &id in ids {
        out.extend((0..in_dim).map(|k| weight(packed, scales, id as usize, k, in_dim)));
    }
    out
}

/// `y = x · Wᵀ`, each element a `mul_add` chain over `k` in order starting from zero: exactly
/// the arithmetic of the SIMD kernel, one element at a time. With block scales (FP8), one chain
/// of the widened weights against the inputs × [`F8E4M3::INPUT_FACTOR`] per block, added in
/// block order as `chain.mul_add(scale, acc)`.
pub fn reference<E: PanelElement>(
    packed: &[E],
    scales: Option<&Scales>,
    x: &[f32],
    rows: usize,
    in_dim: usize,
    out_dim: usize,
) -> Vec<f32> {
    let block = scales.map_or(in_dim, |s| s.k_block).max(1);
    let input_factor = scales.map_or(1.0, |_| F8E4M3::INPUT_FACTOR);
    let mut y = vec![0f32; rows * out_dim];
    for r in 0..rows {
        for col in 0..out_dim {
            let mut acc = 0f32;
            for first in (0..in_dim).step_by(block) {
                let mut chain = 0f32;
                for k in first..(first + block).min(in_dim) {
                    let w = packed[packed_index::<E>(col, k, in_dim)].widen();
                    chain = (x[r * in_dim + k] * input_factor).mul_add(w, chain);
                }
                acc = match scales {
                    Some(s) => chain.mul_add(s.get(col / PANEL, first), acc),
                    None => chain,
                };
            }
            y[r * out_dim + col] = acc;
        }
    }
    y
}
