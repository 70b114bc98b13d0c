//! One block of keys against a set of query rows, the inner step of prompt attention on the CPU
//! ([`super::prefill`]): scores, the causal mask, the online-softmax update of each row's
//! running maximum and sum, and the probability-weighted values added to its output.
//!
//! Query rows sit in SIMD lanes: the queries are held transposed (`[head_dim][rows]`), the
//! scores as `[key][rows]`, the output as `[head_dim][rows]`, so every softmax step is lane-wise
//! and no row ever sums across lanes. Each row's arithmetic is therefore the same sequence of
//! operations whichever lane, register or call it lands in: a query's result depends only on
//! its own values and the keys it sees, not on how a prompt was cut into chunks or tasks.
//! Keys a row may not see get probability exactly 0, so a block that is partly or wholly
//! hidden from a row leaves its state bit for bit as it was (`x · 1`, `x + 0`).

/// Rows handled per register pass: two AVX2 registers of lanes.
pub const ROW_LANES: usize = 16;

/// Keys per block.
pub const KEY_BLOCK: usize = 64;

/// A task's running state over its query rows (all `[.][rows]`, `rows` a multiple of
/// [`ROW_LANES`]).
pub struct RowState {
    pub rows: usize,
    pub head_dim: usize,
    /// `[head_dim][rows]`: the queries, already multiplied by the score scale and by log2(e):
    /// scores are in base 2, so the softmax's exponentials are `2^x` (`e^s = 2^(s·log2 e)`).
    pub queries: Vec<f32>,
    /// The position of each row's token: it sees keys `0..=position`.
    pub positions: Vec<f32>,
    pub max: Vec<f32>,
    pub sum: Vec<f32>,
    /// `[head_dim][rows]`: Σ probability · value, not yet divided by `sum`.
    pub out: Vec<f32>,
    /// `[KEY_BLOCK][rows]`: the block's scores, then its probabilities.
    scores: Vec<f32>,
}

impl RowState {
    pub fn new(rows: usize, head_dim: usize) -> Self {
        debug_assert!(rows.is_multiple_of(ROW_LANES));
        Self {
            rows,
            head_dim,
            queries: vec![0.0; head_dim * rows],
            positions: vec![0.0; rows],
            max: vec![f32::NEG_INFINITY; rows],
            sum: vec![0.0; rows],
            out: vec![0.0; head_dim * rows],
            scores: vec![0.0; KEY_BLOCK * rows],
        }
    }

    /// Keys `first..first + keys.len() / head_dim` (`keys`, `values`: `[key][head_dim]`, widened)
    /// against every row. Blocks must come in order of position, starting from position 0.
    pub fn add_block(&mut self, first: usize, keys: &[f32], values: &[f32]) {
        let n = keys.len() / self.head_dim;
        debug_assert!(n <= KEY_BLOCK && values.len() == keys.len());
        #[cfg(target_arch = "x86_64")]
        if simd() {
            // SAFETY: AVX2 and FMA were detected; the sizes are this state's (asserted inside).
            unsafe { avx2::add_block(self, first, n, keys, values) };
            return;
        }
        self.add_block_portable(first, n, keys, values);
    }

    /// The same steps one element at a time, for CPUs without AVX2.
    fn add_block_portable(&mut self, first: usize, n: usize, keys: &[f32], values: &[f32]) {
        let (rows, d) = (self.rows, self.head_dim);
        for j in 0..n {
            for r in 0..rows {
                let mut s = 0f32;
                for x in 0..d {
                    s = keys[j * d + x].mul_add(self.queries[x * rows + r], s);
                }
                let visible = (first + j) as f32 <= self.positions[r];
                self.scores[j * rows + r] = if visible { s } else { f32::NEG_INFINITY };
            }
        }
        for r in 0..rows {
            let block_max = (0..n)
                .map(|j| self.scores[j * rows + r])
                .fold(f32::NEG_INFINITY, f32::max);
            let new_max = self.max[r].max(block_max);
            let alpha = (self.max[r] - new_max).exp2();
            let mut block_sum = 0f32;
            for j in 0..n {
                let s = self.scores[j * rows + r];
                let p = if s == f32::NEG_INFINITY {
                    0.0
                } else {
                    (s - new_max).exp2()
                };
                self.scores[j * rows + r] = p;
                block_sum += p;
            }
            self.sum[r] = self.sum[r].mul_add(alpha, block_sum);
            self.max[r] = new_max;
            for x in 0..d {
                let mut o = self.out[x * rows + r] * alpha;
                for j in 0..n {
                    o = values[j * d + x].mul_add(self.scores[j * rows + r], o);
                }
                self.out[x * rows + r] = o;
            }
        }
    }
}

fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{KEY_BLOCK, ROW_LANES, RowState};
    use std::arch::x86_64::*;

    /// Keys per register pass of the score product.
    const KEYS: usize = 4;
    /// Output dimensions per register pass of the value product.
    const DIMS: usize = 8;

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn add_block(
        st: &mut RowState,
        first: usize,
        n: usize,
        keys: &[f32],
        values: &[f32],
    ) {
        let (rows, d) = (st.rows, st.head_dim);
        assert!(
            rows.is_multiple_of(ROW_LANES)
                && d.is_multiple_of(DIMS)
                && n <= KEY_BLOCK
                && keys.len() >= n * d
                && values.len() >= n * d
                && st.queries.len() == d * rows
                && st.out.len() == d * rows
                && st.scores.len() == KEY_BLOCK * rows
        );
        // Keys in passes of four; a pass past `n` reads the last real key again (its scores
        // are hidden below like any key past `n`).
        let key_row = |j: usize| keys[j.min(n - 1) * d..].as_ptr();
        let passes = n.div_ceil(KEYS);
        // SAFETY (all blocks below): every index is inside the sizes asserted above.
        unsafe {
            let q = st.queries.as_ptr();
            let s = st.scores.as_mut_ptr();
            for r0 in (0..rows).step_by(ROW_LANES) {
                for pass in 0..passes {
                    let j0 = pass * KEYS;
                    let k: [*const f32; KEYS] = std::array::from_fn(|i| key_row(j0 + i));
                    let mut acc = [[_mm256_setzero_ps(); 2]; KEYS];
                    for x in 0..d {
                        let q0 = _mm256_loadu_ps(q.add(x * rows + r0));
                        let q1 = _mm256_loadu_ps(q.add(x * rows + r0 + 8));
                        for i in 0..KEYS {
                            let kx = _mm256_broadcast_ss(&*k[i].add(x));
                            acc[i][0] = _mm256_fmadd_ps(kx, q0, acc[i][0]);
                            acc[i][1] = _mm256_fmadd_ps(kx, q1, acc[i][1]);
                        }
                    }
                    for (i, acc) in acc.iter().enumerate() {
                        if j0 + i < KEY_BLOCK {
                            _mm256_storeu_ps(s.add((j0 + i) * rows + r0), acc[0]);
                            _mm256_storeu_ps(s.add((j0 + i) * rows + r0 + 8), acc[1]);
                        }
                    }
                }
            }

            // The online softmax, eight rows a register. Rows come in order of position, so a
            // register's first row has the least: when it sees the block's last key, every row
            // of the register sees the whole block and nothing needs hiding.
            let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
            let zero = _mm256_setzero_ps();
            for r in (0..rows).step_by(8) {
                let position = _mm256_loadu_ps(st.positions.as_ptr().add(r));
                let visible = |j: usize| {
                    _mm256_cmp_ps::<_CMP_LE_OQ>(_mm256_set1_ps((first + j) as f32), position)
                };
                let whole = (first + n - 1) as f32 <= st.positions[r];
                let mut block_max = neg_inf;
                for j in 0..n {
                    let at = s.add(j * rows + r);
                    let score = if whole {
                        _mm256_loadu_ps(at)
                    } else {
                        let masked = _mm256_blendv_ps(neg_inf, _mm256_loadu_ps(at), visible(j));
                        _mm256_storeu_ps(at, masked);
                        masked
                    };
                    block_max = _mm256_max_ps(block_max, score);
                }
                let old_max = _mm256_loadu_ps(st.max.as_ptr().add(r));
                let new_max = _mm256_max_ps(old_max, block_max);
                let alpha = exp2(_mm256_sub_ps(old_max, new_max));
                let mut block_sum = zero;
                for j in 0..n {
                    let at = s.add(j * rows + r);
                    let mut p = exp2(_mm256_sub_ps(_mm256_loadu_ps(at), new_max));
                    if !whole {
                        p = _mm256_blendv_ps(zero, p, visible(j));
                    }
                    _mm256_storeu_ps(at, p);
                    block_sum = _mm256_add_ps(block_sum, p);
                }
                let sum = _mm256_loadu_ps(st.sum.as_ptr().add(r));
                _mm256_storeu_ps(
                    st.sum.as_mut_ptr().add(r),
                    _mm256_fmadd_ps(sum, alpha, block_sum),
                );
                _mm256_storeu_ps(st.max.as_mut_ptr().add(r), new_max);
                for x in 0..d {
                    let at = st.out.as_mut_ptr().add(x * rows + r);
                    _mm256_storeu_ps(at, _mm256_mul_ps(_mm256_loadu_ps(at), alpha));
                }
            }

            // Σ_j probability · value into the output, eight dimensions × sixteen rows a pass.
            let o = st.out.as_mut_ptr();
            for r0 in (0..rows).step_by(ROW_LANES) {
                for x0 in (0..d).step_by(DIMS) {
                    let mut acc: [[__m256; 2]; DIMS] = std::array::from_fn(|i| {
                        [
                            _mm256_loadu_ps(o.add((x0 + i) * rows + r0)),
                            _mm256_loadu_ps(o.add((x0 + i) * rows + r0 + 8)),
                        ]
                    });
                    for j in 0..n {
                        let p0 = _mm256_loadu_ps(s.add(j * rows + r0));
                        let p1 = _mm256_loadu_ps(s.add(j * rows + r0 + 8));
                        let v = values.as_ptr().add(j * d + x0);
                        for (i, acc) in acc.iter_mut().enumerate() {
                            let vx = _mm256_broadcast_ss(&*v.add(i));
                            acc[0] = _mm256_fmadd_ps(vx, p0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(vx, p1, acc[1]);
                        }
                    }
                    for (i, acc) in acc.iter().enumerate() {
                        _mm256_storeu_ps(o.add((x0 + i) * rows + r0), acc[0]);
                        _mm256_storeu_ps(o.add((x0 + i) * rows + r0 + 8), acc[1]);
                    }
                }
            }
        }
    }

    /// `2^x` lane by lane for `x ≤ 0`, to within 3 · 10⁻⁷ relative: `x = n + f` with `n` the
    /// nearest integer (so `|f| ≤ ½`, exactly), the degree-6 Taylor polynomial of `2^f`
    /// (truncation ≤ 1.2 · 10⁻⁷), `2^n` built in the exponent bits. `2^0` is exactly 1; inputs
    /// below −126 give `2^−126` (callers zero what they hide themselves).
    #[inline(always)]
    pub unsafe fn exp2(x: __m256) -> __m256 {
        // SAFETY: register arithmetic only; the caller has AVX2 and FMA.
        unsafe {
            let x = _mm256_max_ps(x, _mm256_set1_ps(-126.0));
            let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
            let f = _mm256_sub_ps(x, n);
            let mut y = _mm256_set1_ps(super::EXP2_TAYLOR[6]);
            for c in super::EXP2_TAYLOR[..6].iter().rev() {
                y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(*c));
            }
            let two_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvtps_epi32(n),
                _mm256_set1_epi32(127),
            )));
            _mm256_mul_ps(y, two_n)
        }
    }
}

/// `(ln 2)^i / i!`: the Taylor coefficients of `2^f`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const EXP2_TAYLOR: [f32; 7] = [
    1.0,
    std::f32::consts::LN_2,
    0.240_226_5,
    0.055_504_11,
    0.009_618_129,
    0.001_333_355_8,
    0.000_154_035_3,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in about [-2, 2].
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                ((i.wrapping_mul(2_654_435_761).wrapping_add(seed * 977)) % 4001) as f32 / 1000.0
                    - 2.0
            })
            .collect()
    }

    /// Three blocks (the last partial, rows at staggered positions) through the SIMD steps and
    /// the portable ones: the same state to rounding.
    #[test]
    fn the_simd_steps_match_the_portable_ones() {
        if !simd() {
            return;
        }
        let (rows, d) = (2 * ROW_LANES, 32);
        let fresh = || {
            let mut st = RowState::new(rows, d);
            st.queries = values(rows * d, 1).iter().map(|x| x * 0.3).collect();
            st.positions = (0..rows).map(|r| (100 + 3 * r) as f32).collect();
            st
        };
        let (mut simd_state, mut portable) = (fresh(), fresh());
        for (b, n) in [(0usize, KEY_BLOCK), (1, KEY_BLOCK), (2, 40)] {
            let keys = values(n * d, 10 + b as u32);
            let vals = values(n * d, 20 + b as u32);
            simd_state.add_block(b * KEY_BLOCK, &keys, &vals);
            portable.add_block_portable(b * KEY_BLOCK, n, &keys, &vals);
        }
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                    "{what}: {x} vs {y}"
                );
            }
        };
        close(&simd_state.max, &portable.max, "max");
        close(&simd_state.sum, &portable.sum, "sum");
        close(&simd_state.out, &portable.out, "out");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exp2_is_close_and_exact_at_zero() {
        if !simd() {
            return;
        }
        use std::arch::x86_64::*;
        let xs: Vec<f32> = (-12600..=0).map(|i| i as f32 * 0.01).collect();
        for chunk in xs.chunks_exact(8) {
            let mut got = [0f32; 8];
            // SAFETY: AVX2 and FMA were detected.
            unsafe {
                _mm256_storeu_ps(
                    got.as_mut_ptr(),
                    avx2::exp2(_mm256_loadu_ps(chunk.as_ptr())),
                )
            };
            for (x, g) in chunk.iter().zip(got) {
                let want = (*x as f64).exp2();
                assert!(
                    ((g as f64 - want) / want).abs() < 3e-7,
                    "2^{x}: {g} vs {want}"
                );
            }
        }
        let mut one = [0f32; 8];
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(one.as_mut_ptr(), avx2::exp2(_mm256_setzero_ps())) };
        assert_eq!(one, [1.0; 8]);
    }
}
