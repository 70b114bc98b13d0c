//! Writing a step's K/V into the paged cache with candle ops.
//!
//! candle's `scatter_set` runs one thread per element of the scattered row and loops over the
//! scattered dimension inside each thread. Scattering `[T, kv_heads · head_dim]` by slot is
//! therefore one pass of `T` dependent iterations over ~a thousand threads (a single CUDA block
//! for Qwen3's 8 × 128): fine for a decode step, slow for a prefill of thousands of tokens. A
//! prefill touches few blocks, so such steps rewrite whole blocks instead: each touched block's
//! current contents are gathered, the new rows laid over them (one `index_select` from
//! `[old rows; new rows]`), and the blocks scattered back with `block_size ×` wider rows and
//! `block_size ×` fewer iterations. Rows of a touched block that the step does not write are
//! written back with the values they had, so both paths leave the same cache.
//!
//! An fp8 cache is written by tealight's slot-mapped row copy instead ([`WriteKv`]: candle has
//! no fp8 scatter kernel on CUDA), on the CPU through that op's CPU twin, so the tests run the
//! same path.

use crate::batch::BatchInput;
use crate::error::Result;
use crate::kernels::kv_write::WriteKv;
use crate::model::kv_cache::LayerKv;
use candle_core::{DType, Device, Tensor};
use std::cell::OnceCell;
use std::collections::HashMap;

/// Whole blocks are rewritten when that cuts the scatter's serial loop at least this many times.
const BLOCKS_WIN: usize = 4;

pub struct KvWrite {
    scatter: Scatter,
    /// Each token's slot, for the fp8 write.
    slots: Vec<u32>,
    /// `slots` on the device: made at the first fp8 write, so other caches never copy it there.
    slot_rows: OnceCell<Tensor>,
}

/// How candle's `scatter_set` writes a 16- or 32-bit cache.
enum Scatter {
    /// `[T, kv_heads, head_dim]` u32: each token's slot, repeated along its row.
    Slots(Tensor),
    Blocks(BlockWrite),
}

pub struct BlockWrite {
    block_size: usize,
    /// `[U]` u32: the distinct blocks the step writes into.
    blocks: Tensor,
    /// `[U · block_size]` u32: for each row of the touched blocks, its source in
    /// `[old rows of the touched blocks; the step's rows]`.
    pick: Tensor,
    /// `[U, block_size · kv_heads · head_dim]` u32: `blocks`, repeated along each block.
    scatter_index: Tensor,
}

impl KvWrite {
    pub fn new(
        batch: &BatchInput,
        block_size: usize,
        kv_shape: (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        let slots = batch.slot_mapping(block_size);
        let scatter = Self::scatter(&slots, block_size, kv_shape, device)?;
        Ok(Self {
            scatter,
            slots,
            slot_rows: OnceCell::new(),
        })
    }

    fn scatter(
        slots: &[u32],
        block_size: usize,
        (kv_heads, head_dim): (usize, usize),
        device: &Device,
    ) -> Result<Scatter> {
        let t = slots.len();
        let mut touched: Vec<u32> = Vec::new();
        let mut index_of: HashMap<u32, usize> = HashMap::new();
        for &slot in slots {
            let block = slot / block_size as u32;
            index_of.entry(block).or_insert_with(|| {
                touched.push(block);
                touched.len() - 1
            });
        }
        if touched.len() * BLOCKS_WIN > t {
            let slots = Tensor::new(slots, device)?
                .reshape((t, 1, 1))?
                .broadcast_as((t, kv_heads, head_dim))?
                .contiguous()?;
            return Ok(Scatter::Slots(slots));
        }
        let u = touched.len();
        let mut pick: Vec<u32> = (0..(u * block_size) as u32).collect();
        for (i, &slot) in slots.iter().enumerate() {
            let block = slot as usize / block_size;
            let row = index_of[&(block as u32)] * block_size + slot as usize % block_size;
            pick[row] = (u * block_size + i) as u32;
        }
        let row = block_size * kv_heads * head_dim;
        let blocks = Tensor::new(touched, device)?;
        let scatter_index = blocks
            .reshape((u, 1))?
            .broadcast_as((u, row))?
            .contiguous()?;
        Ok(Scatter::Blocks(BlockWrite {
            block_size,
            blocks,
            pick: Tensor::new(pick, device)?,
            scatter_index,
        }))
    }

    /// Writes `k`, `v` (`[T, kv_heads, head_dim]`) into their slots of `cache`, in the cache's
    /// dtype (`--kv-cache-dtype` may store 16 or 8 bits beside f32 activations).
    pub fn apply(&self, k: &Tensor, v: &Tensor, cache: &LayerKv) -> Result<()> {
        let (k, v) = &cache.as_stored(k, v)?;
        if cache.k.dtype() == DType::F8E4M3 {
            let slot_rows = match self.slot_rows.get() {
                Some(rows) => rows,
                None => {
                    let rows = Tensor::new(self.slots.as_slice(), cache.k.device())?;
                    self.slot_rows.get_or_init(|| rows)
                }
            };
            let rows = 0..self.slots.len();
            WriteKv::apply(&cache.k, k, slot_rows, rows.clone())?;
            WriteKv::apply(&cache.v, v, slot_rows, rows)?;
            return Ok(());
        }
        match &self.scatter {
            Scatter::Slots(index) => {
                cache.k.scatter_set(index, k, 0)?;
                cache.v.scatter_set(index, v, 0)?;
            }
            Scatter::Blocks(b) => {
                b.apply(&cache.k, k)?;
                b.apply(&cache.v, v)?;
            }
        }
        Ok(())
    }
}

impl BlockWrite {
    fn apply(&self, cache: &Tensor, new: &Tensor) -> Result<()> {
        let (slots, kv_heads, head_dim) = cache.dims3()?;
        let row = kv_heads * head_dim;
        let by_block = cache.reshape((slots / self.block_size, self.block_size * row))?;
        let content = {
            let old = by_block.index_select(&self.blocks, 0)?.reshape(((), row))?;
            let new = new.reshape(((), row))?;
            Tensor::cat(&[&old, &new], 0)?.index_select(&self.pick, 0)?
        }
        .reshape(self.scatter_index.shape())?;
        by_block.scatter_set(&self.scatter_index, &content, 0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::SequenceChunk;

    fn cache(slots: usize, device: &Device) -> LayerKv {
        let k = Tensor::arange(0f32, (slots * 6) as f32, device)
            .unwrap()
            .reshape((slots, 2, 3))
            .unwrap();
        LayerKv {
            v: (&k * -1.0).unwrap(),
            k,
            scales: Default::default(),
        }
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Both paths give the cache a plain per-slot copy would: prefill chunks over scattered and
    /// shared-start blocks, with decodes beside them.
    #[test]
    fn block_rewrite_equals_slot_scatter() {
        let device = Device::Cpu;
        let bs = 8;
        let batch = BatchInput {
            token_ids: vec![0; 30 + 1 + 1],
            chunks: vec![
                SequenceChunk {
                    num_query_tokens: 30,
                    context_len: 32, // positions 2..32: blocks 7 (from row 2), 2, 5, 4
                    block_table: vec![7, 2, 5, 4],
                    logits_tokens: 1,
                },
                SequenceChunk {
                    num_query_tokens: 1,
                    context_len: 6,
                    block_table: vec![0, 3],
                    logits_tokens: 1,
                },
                SequenceChunk {
                    num_query_tokens: 1,
                    context_len: 1,
                    block_table: vec![1],
                    logits_tokens: 1,
                },
            ],
        };
        let t = batch.num_tokens();
        let k = Tensor::arange(1000f32, 1000.0 + (t * 6) as f32, &device)
            .unwrap()
            .reshape((t, 2, 3))
            .unwrap();
        let v = (&k + 0.5).unwrap();

        let mut want_k = values(&cache(64, &device).k);
        let mut want_v = values(&cache(64, &device).v);
        for (i, slot) in batch.slot_mapping(bs).into_iter().enumerate() {
            let s = slot as usize;
            want_k[s * 6..][..6].copy_from_slice(&values(&k.get(i).unwrap()));
            want_v[s * 6..][..6].copy_from_slice(&values(&v.get(i).unwrap()));
        }
        let blocks = KvWrite::new(&batch, bs, (2, 3), &device).unwrap();
        assert!(matches!(blocks.scatter, Scatter::Blocks(_)));
        let c = cache(64, &device);
        blocks.apply(&k, &v, &c).unwrap();
        assert_eq!(values(&c.k), want_k);
        assert_eq!(values(&c.v), want_v);

        // An fp8 cache takes the slot copy whatever the plan: the same rows, rounded to e4m3.
        let fp8 = |t: &Tensor| t.to_dtype(DType::F8E4M3).unwrap();
        let wide = |t: &Tensor| values(&t.to_dtype(DType::F32).unwrap());
        let (k8, v8) = ((&k / 8.0).unwrap(), (&v / -8.0).unwrap());
        let c = LayerKv {
            k: fp8(&cache(64, &device).k),
            v: fp8(&cache(64, &device).v),
            scales: Default::default(),
        };
        blocks.apply(&k8, &v8, &c).unwrap();
        let mut want = wide(&fp8(&cache(64, &device).k));
        for (i, slot) in batch.slot_mapping(bs).into_iter().enumerate() {
            want[slot as usize * 6..][..6].copy_from_slice(&wide(&fp8(&k8.get(i).unwrap())));
        }
        assert_eq!(wide(&c.k), want);
        assert_eq!(c.k.dtype(), DType::F8E4M3);

        // A decode-only step takes the slot path, with the same result.
        let decodes = BatchInput {
            token_ids: vec![0, 0],
            chunks: batch.chunks[1..].to_vec(),
        };
        let write = KvWrite::new(&decodes, bs, (2, 3), &device).unwrap();
        assert!(matches!(write.scatter, Scatter::Slots(_)));
        let c = cache(64, &device);
        let (k2, v2) = (k.narrow(0, 30, 2).unwrap(), v.narrow(0, 30, 2).unwrap());
        write.apply(&k2, &v2, &c).unwrap();
        let mut want = values(&cache(64, &device).k);
        for (i, slot) in decodes.slot_mapping(bs).into_iter().enumerate() {
            want[slot as usize * 6..][..6].copy_from_slice(&values(&k2.get(i).unwrap()));
        }
        assert_eq!(values(&c.k), want);
        assert_eq!(c.k.dtype(), DType::F32);
    }
}
