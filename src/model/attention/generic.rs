//! Device-generic paged attention: gathers each sequence's cached K/V through its block table into
//! a padded `[batch, max_context]` layout, masks padding and the future, and runs matmul + softmax
//! (in f32). Only candle ops that exist on every backend are used.

use crate::batch::{BatchInput, slot_of};
use crate::error::Result;
use crate::model::kv_cache::LayerKv;
use candle_core::{DType, Device, Tensor};

/// The generic backend: scatter-writes the step's K/V by slot, then [`GenericAttend`].
pub struct GenericMetadata {
    /// `[T, kv_heads, head_dim]` u32: the slot of each token, repeated along the row.
    write_index: Tensor,
    attend: GenericAttend,
}

impl GenericMetadata {
    pub fn new(
        batch: &BatchInput,
        block_size: usize,
        kv_shape: (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        let (kv_heads, head_dim) = kv_shape;
        let slots = Tensor::new(batch.slot_mapping(block_size), device)?;
        let t = batch.num_tokens();
        let write_index = slots
            .reshape((t, 1, 1))?
            .broadcast_as((t, kv_heads, head_dim))?
            .contiguous()?;
        Ok(Self {
            write_index,
            attend: GenericAttend::new(batch, block_size, device)?,
        })
    }

    pub fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &LayerKv,
        scale: f64,
    ) -> Result<Tensor> {
        cache.k.scatter_set(&self.write_index, k, 0)?;
        cache.v.scatter_set(&self.write_index, v, 0)?;
        self.attend.forward(q, cache, scale)
    }
}

/// Attention of a batch's queries over KV already in the cache, with matmuls: one padded
/// `[batch, max_query, max_context]` problem.
pub struct GenericAttend {
    batch: usize,
    max_query: usize,
    max_context: usize,
    /// `[batch * max_context]` slots to gather (padding points at slot 0 and is masked).
    gather_slots: Tensor,
    /// `[batch * max_query]` rows of the flat query to place in the padded layout; `None` when
    /// the layout needs no padding (one chunk, or all decodes).
    pad_rows: Option<Tensor>,
    /// `[T]` rows of the padded output that hold real tokens (`None` as above).
    unpad_rows: Option<Tensor>,
    /// `[batch, 1, 1, max_query, max_context]` additive f32 mask (0 or -inf).
    mask: Tensor,
    /// Run the matmuls in f32 whatever the model dtype (the CPU has no fast half-precision
    /// gemm, and f32 keeps its scores as exact as the paged kernel's).
    compute_f32: bool,
}

impl GenericAttend {
    pub fn new(batch: &BatchInput, block_size: usize, device: &Device) -> Result<Self> {
        let n = batch.chunks.len();
        let max_query = batch
            .chunks
            .iter()
            .map(|c| c.num_query_tokens)
            .max()
            .unwrap_or(1);
        let max_context = batch
            .chunks
            .iter()
            .map(|c| c.context_len)
            .max()
            .unwrap_or(1);
        let offsets = batch.query_offsets();
        let dense = batch.chunks.iter().all(|c| c.num_query_tokens == max_query);

        let mut gather = vec![0u32; n * max_context];
        let mut pad_rows = vec![0u32; n * max_query];
        let mut unpad_rows = Vec::with_capacity(batch.num_tokens());
        let mut mask = vec![f32::NEG_INFINITY; n * max_query * max_context];
        for (s, chunk) in batch.chunks.iter().enumerate() {
            for pos in 0..chunk.context_len {
                gather[s * max_context + pos] = slot_of(&chunk.block_table, pos, block_size);
            }
            let first = chunk.first_position();
            for i in 0..max_query {
                let row = &mut mask[(s * max_query + i) * max_context..][..max_context];
                if i < chunk.num_query_tokens {
                    pad_rows[s * max_query + i] = (offsets[s] + i) as u32;
                    unpad_rows.push((s * max_query + i) as u32);
                    row[..=first + i].fill(0.0);
                } else {
                    // Padding rows attend to one key so their softmax stays finite; they are dropped.
                    row[0] = 0.0;
                }
            }
        }
        Ok(Self {
            batch: n,
            max_query,
            max_context,
            gather_slots: Tensor::new(gather, device)?,
            pad_rows: if dense {
                None
            } else {
                Some(Tensor::new(pad_rows, device)?)
            },
            unpad_rows: if dense {
                None
            } else {
                Some(Tensor::new(unpad_rows, device)?)
            },
            mask: Tensor::from_vec(mask, (n, 1, 1, max_query, max_context), device)?,
            compute_f32: false,
        })
    }

    /// The same problem, computed in f32 (see `compute_f32`).
    pub fn in_f32(mut self) -> Self {
        self.compute_f32 = true;
        self
    }

    /// `q`: `[T, heads, head_dim]` → `[T, heads * head_dim]`.
    pub fn forward(&self, q: &Tensor, cache: &LayerKv, scale: f64) -> Result<Tensor> {
        let (_, heads, head_dim) = q.dims3()?;
        let (_, kv_heads, _) = cache.k.dims3()?;
        let group = heads / kv_heads;
        let (b, mq, mk) = (self.batch, self.max_query, self.max_context);
        let dtype = q.dtype();
        let work = if self.compute_f32 { DType::F32 } else { dtype };

        // [b, mq, heads, d] -> [b, kv_heads, group * mq, d]: query heads sharing a KV head are
        // stacked so one batched matmul serves the whole group (no K/V repetition).
        let q = match &self.pad_rows {
            Some(rows) => q.index_select(rows, 0)?,
            None => q.clone(),
        }
        .to_dtype(work)?;
        let q = q
            .reshape((b, mq, kv_heads, group, head_dim))?
            .permute((0, 2, 3, 1, 4))?
            .reshape((b, kv_heads, group * mq, head_dim))?;
        let gather = |cache: &Tensor| -> Result<Tensor> {
            Ok(cache
                .index_select(&self.gather_slots, 0)?
                .reshape((b, mk, kv_heads, head_dim))?
                .transpose(1, 2)?
                .to_dtype(work)?
                .contiguous()?)
        };
        let k = gather(&cache.k)?;
        let v = gather(&cache.v)?;

        let scores = (q.contiguous()?.matmul(&k.t()?)? * scale)?
            .to_dtype(DType::F32)?
            .reshape((b, kv_heads, group, mq, mk))?
            .broadcast_add(&self.mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?
            .to_dtype(work)?
            .reshape((b, kv_heads, group * mq, mk))?;
        let out = probs.matmul(&v)?; // [b, kv_heads, group * mq, d]
        let out = out
            .reshape((b, kv_heads, group, mq, head_dim))?
            .permute((0, 3, 1, 2, 4))?
            .reshape((b * mq, heads * head_dim))?;
        let out = match &self.unpad_rows {
            Some(rows) => out.index_select(rows, 0)?,
            None => out,
        };
        Ok(out.to_dtype(dtype)?)
    }
}
