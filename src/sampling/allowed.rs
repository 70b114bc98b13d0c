//! Allowed-token masks (structured outputs): per sequence, the set of tokens the next draw may
//! pick; every other logit becomes `-inf` before anything else looks at the row.
//!
//! A grammar typically allows a small part of a 152k vocabulary, or nearly all of it inside a
//! string, so neither a sparse list nor the penalties' gather/scatter fits. The set is kept as
//! the bitmask grammar engines produce (bit `i % 32` of word `i / 32`), expanded to a `u8` row
//! only for the constrained rows of a batch and applied with `where_cond`, which copies allowed
//! logits exactly. Rows without a mask are copied untouched, so constraining one request never
//! changes another's tokens, and the same ops run on the CPU and on accelerators.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};

/// A set of token ids below `len`, one bit per id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMask {
    words: Vec<u32>,
    len: usize,
}

impl TokenMask {
    /// A mask from bitmask words (bit `i % 32` of word `i / 32` is token `i`). Bits at or past
    /// `len` are ignored; missing words count as zeros.
    pub fn from_words(mut words: Vec<u32>, len: usize) -> Self {
        words.resize(len.div_ceil(32), 0);
        if !len.is_multiple_of(32)
            && let Some(last) = words.last_mut()
        {
            *last &= (1u32 << (len % 32)) - 1;
        }
        TokenMask { words, len }
    }

    /// A mask allowing exactly `ids` (ids at or past `len` are dropped).
    pub fn from_ids(ids: &[u32], len: usize) -> Self {
        let mut m = TokenMask {
            words: vec![0; len.div_ceil(32)],
            len,
        };
        for &id in ids {
            m.insert(id);
        }
        m
    }

    /// Number of ids the mask covers (the vocabulary size it was built for).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mask covers no ids at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn allows(&self, id: u32) -> bool {
        let i = id as usize;
        i < self.len && self.words[i / 32] >> (i % 32) & 1 == 1
    }

    pub fn insert(&mut self, id: u32) {
        let i = id as usize;
        if i < self.len {
            self.words[i / 32] |= 1 << (i % 32);
        }
    }

    pub fn remove(&mut self, id: u32) {
        let i = id as usize;
        if i < self.len {
            self.words[i / 32] &= !(1 << (i % 32));
        }
    }

    /// Number of allowed ids.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The allowed ids, ascending.
    pub fn ids(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (k, &w) in self.words.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                let bit = w.trailing_zeros();
                out.push(k as u32 * 32 + bit);
                w &= w - 1;
            }
        }
        out
    }

    /// Writes `1` for allowed and `0` for other ids into `out` (one entry per vocabulary id;
    /// ids past the mask's length are not allowed).
    fn write_row(&self, out: &mut [u8]) {
        out.fill(0);
        for (chunk, &w) in out.chunks_mut(32).zip(&self.words) {
            if w == 0 {
                continue;
            }
            for (j, v) in chunk.iter_mut().enumerate() {
                *v = (w >> j & 1) as u8;
            }
        }
    }
}

/// `logits` (`[B, vocab]`, f32) with every token outside row `r`'s mask set to `-inf`, for the
/// rows that have one. Rows without a mask are copied bit for bit; with no mask at all the
/// input comes back as it is (no copy).
pub fn apply_allowed(logits: &Tensor, masks: &[Option<&TokenMask>]) -> Result<Tensor> {
    let (b, vocab) = logits.dims2()?;
    if masks.len() != b {
        return Err(Error::Internal(format!(
            "allowed tokens: {} masks for {b} logits rows",
            masks.len()
        )));
    }
    let rows: Vec<usize> = (0..b).filter(|&r| masks[r].is_some()).collect();
    if rows.is_empty() {
        return Ok(logits.clone());
    }
    let dev = logits.device();
    let mut bits = vec![0u8; rows.len() * vocab];
    for (&r, out) in rows.iter().zip(bits.chunks_mut(vocab)) {
        if let Some(m) = masks[r] {
            m.write_row(out);
        }
    }
    let keep = Tensor::from_vec(bits, (rows.len(), vocab), dev)?;
    let logits = logits.to_dtype(DType::F32)?;
    let picked = if rows.len() == b {
        logits.clone()
    } else {
        let idx = Tensor::from_vec(
            rows.iter().map(|&r| r as u32).collect::<Vec<u32>>(),
            rows.len(),
            dev,
        )?;
        logits.index_select(&idx, 0)?
    };
    let neg_inf = Tensor::new(&[[f32::NEG_INFINITY]], dev)?.broadcast_as((rows.len(), vocab))?;
    let masked = keep.where_cond(&picked, &neg_inf)?;
    if rows.len() == b {
        return Ok(masked);
    }
    // Reassemble in row order: runs of untouched rows are sliced out of the input whole.
    let mut pieces: Vec<Tensor> = Vec::new();
    let mut next = 0;
    for (k, &r) in rows.iter().enumerate() {
        if r > next {
            pieces.push(logits.narrow(0, next, r - next)?);
        }
        pieces.push(masked.narrow(0, k, 1)?);
        next = r + 1;
    }
    if next < b {
        pieces.push(logits.narrow(0, next, b - next)?);
    }
    Ok(Tensor::cat(&pieces, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn bits_ids_and_counts() {
        let mut m = TokenMask::from_ids(&[0, 5, 31, 32, 69, 70], 70);
        assert_eq!(m.ids(), vec![0, 5, 31, 32, 69]);
        assert_eq!(m.count(), 5);
        assert!(m.allows(69) && !m.allows(70) && !m.allows(4));
        m.remove(5);
        m.insert(6);
        assert_eq!(m.ids(), vec![0, 6, 31, 32, 69]);
        // Stray bits past the length are cleared.
        let w = TokenMask::from_words(vec![u32::MAX, u32::MAX], 40);
        assert_eq!(w.count(), 40);
        let mut row = vec![9u8; 45];
        w.write_row(&mut row);
        assert_eq!(row.iter().filter(|&&v| v == 1).count(), 40);
        assert!(row[40..].iter().all(|&v| v == 0));
    }

    #[test]
    fn masks_only_their_rows_and_keeps_others_exact() {
        let data: Vec<f32> = (0..5 * 7).map(|i| (i as f32 * 0.37).sin()).collect();
        let logits = Tensor::from_vec(data.clone(), (5, 7), &Device::Cpu).unwrap();
        let a = TokenMask::from_ids(&[1, 4], 7);
        let c = TokenMask::from_ids(&[6], 7);
        let masks = [None, Some(&a), None, None, Some(&c)];
        let out = apply_allowed(&logits, &masks)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (r, row) in out.iter().enumerate() {
            for (t, &v) in row.iter().enumerate() {
                let want = data[r * 7 + t];
                let allowed = match masks[r] {
                    None => true,
                    Some(m) => m.allows(t as u32),
                };
                if allowed {
                    assert_eq!(v.to_bits(), want.to_bits(), "row {r} token {t}");
                } else {
                    assert_eq!(v, f32::NEG_INFINITY, "row {r} token {t}");
                }
            }
        }
        // No masks: the very same tensor.
        let same = apply_allowed(&logits, &[None, None, None, None, None]).unwrap();
        assert_eq!(same.id(), logits.id());
    }

    #[test]
    fn every_row_masked() {
        let logits = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let a = TokenMask::from_ids(&[0], 2);
        let b = TokenMask::from_ids(&[1], 2);
        let out = apply_allowed(&logits, &[Some(&a), Some(&b)])
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(
            out,
            vec![vec![1.0, f32::NEG_INFINITY], vec![f32::NEG_INFINITY, 4.0]]
        );
    }
}
