//! Device-generic paged attention: only candle ops that exist on every backend, so the CPU tests
//! exercise exactly what runs on CUDA.
//!
//! A step is cut into dense problems ([`tiling`]): the decode tokens in groups of sequences, each
//! prefill chunk alone in tiles of query rows. Each problem gathers its sequences' K/V through
//! the block tables and runs matmul + masked softmax ([`GenericAttend`]). The temporaries of a
//! layer are those of its largest problem, which the [`TileBudget`] bounds whatever the number
//! of sequences in the step; nothing of size `sequences × longest chunk × longest context`
//! is ever built. The step's K/V go into the cache first ([`kv_write`]).

mod attend;
pub mod kv_write;
pub mod tiling;

pub use attend::GenericAttend;
pub use tiling::{Problem, TileBudget};

use crate::batch::BatchInput;
use crate::error::Result;
use crate::model::kv_cache::LayerKv;
use candle_core::{Device, Tensor};
use kv_write::KvWrite;
use std::cell::OnceCell;

/// The generic backend's per-step state, shared by every layer.
pub struct GenericMetadata {
    batch: BatchInput,
    block_size: usize,
    device: Device,
    budget: TileBudget,
    write: KvWrite,
    /// Made at the first layer, once the number of query heads is known.
    problems: OnceCell<Problems>,
}

struct Problems {
    list: Vec<(QueryRows, GenericAttend)>,
    /// Maps the problems' output rows (in problem order) back to token order; `None` if equal.
    order: Option<Tensor>,
}

/// Where a problem's query rows are in the step's flat query.
enum QueryRows {
    Range { start: usize, len: usize },
    Rows(Tensor),
}

impl GenericMetadata {
    pub fn new(
        batch: &BatchInput,
        block_size: usize,
        kv_shape: (usize, usize),
        device: &Device,
    ) -> Result<Self> {
        Self::with_budget(batch, block_size, kv_shape, device, TileBudget::default())
    }

    pub fn with_budget(
        batch: &BatchInput,
        block_size: usize,
        kv_shape: (usize, usize),
        device: &Device,
        budget: TileBudget,
    ) -> Result<Self> {
        Ok(Self {
            batch: batch.clone(),
            block_size,
            device: device.clone(),
            budget,
            write: KvWrite::new(batch, block_size, kv_shape, device)?,
            problems: OnceCell::new(),
        })
    }

    fn problems(&self, heads: usize, kv_row: usize) -> Result<&Problems> {
        if let Some(p) = self.problems.get() {
            return Ok(p);
        }
        let batch = &self.batch;
        let offsets = batch.query_offsets();
        let mut list = Vec::new();
        let mut produced: Vec<u32> = Vec::with_capacity(batch.num_tokens());
        for problem in tiling::problems(batch, heads, kv_row, self.budget) {
            match problem {
                Problem::Decodes(members) => {
                    let rows: Vec<u32> = members.iter().map(|&s| offsets[s] as u32).collect();
                    produced.extend(&rows);
                    let chunks: Vec<_> = members.iter().map(|&s| &batch.chunks[s]).collect();
                    list.push((
                        QueryRows::Rows(Tensor::new(rows, &self.device)?),
                        GenericAttend::decodes(&chunks, self.block_size, &self.device)?,
                    ));
                }
                Problem::Tile { chunk, start, len } => {
                    let first = offsets[chunk] + start;
                    produced.extend((first..first + len).map(|r| r as u32));
                    list.push((
                        QueryRows::Range { start: first, len },
                        GenericAttend::tile(
                            &batch.chunks[chunk],
                            start,
                            len,
                            self.block_size,
                            &self.device,
                        )?,
                    ));
                }
            }
        }
        let order = super::token_order(&produced, &self.device)?;
        Ok(self.problems.get_or_init(|| Problems { list, order }))
    }

    /// Writes `k`, `v` (`[T, kv_heads, head_dim]`) into the cache, then attends `q`
    /// (`[T, heads, head_dim]`). Returns `[T, heads * head_dim]`.
    pub fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &LayerKv,
        scale: f64,
    ) -> Result<Tensor> {
        self.write.apply(k, v, cache)?;
        let (_, heads, _) = q.dims3()?;
        let (_, kv_heads, head_dim) = cache.k.dims3()?;
        let problems = self.problems(heads, kv_heads * head_dim)?;
        let mut pieces = Vec::with_capacity(problems.list.len());
        for (rows, attend) in &problems.list {
            let q = match rows {
                QueryRows::Range { start, len } => q.narrow(0, *start, *len)?,
                QueryRows::Rows(rows) => q.index_select(rows, 0)?,
            };
            pieces.push(attend.forward(&q, cache, scale)?);
        }
        super::in_token_order(pieces, problems.order.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::SequenceChunk;
    use crate::model::attention::cpu::CpuMetadata;

    const HEADS: usize = 6;
    const KV_HEADS: usize = 2;
    const HEAD_DIM: usize = 8;
    const BLOCK: usize = 4;

    /// Decodes at several contexts, a prefill chunk over a cached prefix, and a fresh one;
    /// block tables interleaved over the pool.
    fn step() -> BatchInput {
        let shapes: [(usize, usize); 7] =
            [(1, 9), (30, 37), (1, 3), (1, 14), (12, 12), (1, 1), (1, 22)];
        let mut next = 0u32;
        let mut chunks = Vec::new();
        for (q, ctx) in shapes {
            let blocks = ctx.div_ceil(BLOCK) as u32;
            chunks.push(SequenceChunk {
                num_query_tokens: q,
                context_len: ctx,
                block_table: (0..blocks).map(|i| next + 2 * i).rev().collect(),
                logits_tokens: 1,
            });
            next += 2 * blocks + 1;
        }
        let tokens = chunks.iter().map(|c| c.num_query_tokens).sum();
        BatchInput {
            token_ids: vec![0; tokens],
            chunks,
        }
    }

    fn run(meta: impl Fn(&BatchInput) -> AttentionOut, batch: &BatchInput) -> (Vec<f32>, Vec<f32>) {
        let device = Device::Cpu;
        let t = batch.num_tokens();
        let slots = 80 * BLOCK;
        // The same pseudo-random values for every run.
        let seeded = |seed: u64, shape: (usize, usize, usize)| {
            let n = shape.0 * shape.1 * shape.2;
            let data: Vec<f32> = (0..n)
                .map(|i| (((i as u64 + seed * 7_777) * 2_654_435_761 % 1_000) as f32) / 500.0 - 1.0)
                .collect();
            Tensor::from_vec(data, shape, &device).unwrap()
        };
        let cache = LayerKv {
            k: seeded(1, (slots, KV_HEADS, HEAD_DIM)),
            v: seeded(2, (slots, KV_HEADS, HEAD_DIM)),
            scales: Default::default(),
        };
        let q = seeded(3, (t, HEADS, HEAD_DIM));
        let k = seeded(4, (t, KV_HEADS, HEAD_DIM));
        let v = seeded(5, (t, KV_HEADS, HEAD_DIM));
        let out = meta(batch)(&q, &k, &v, &cache);
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (flat(&out), flat(&cache.k))
    }

    type AttentionOut = Box<dyn Fn(&Tensor, &Tensor, &Tensor, &LayerKv) -> Tensor>;

    fn generic(budget: TileBudget) -> impl Fn(&BatchInput) -> AttentionOut {
        move |batch| {
            let m = GenericMetadata::with_budget(
                batch,
                BLOCK,
                (KV_HEADS, HEAD_DIM),
                &Device::Cpu,
                budget,
            )
            .unwrap();
            Box::new(move |q, k, v, cache| m.forward(q, k, v, cache, 0.3).unwrap())
        }
    }

    /// Cut into many small problems (several decode groups, many tiles) or one per kind, the
    /// generic backend gives the paged CPU backend's output, and writes the same cache.
    #[test]
    fn tiling_does_not_change_the_result() {
        let batch = step();
        let plans = [
            tiling::problems(&batch, HEADS, KV_HEADS * HEAD_DIM, TileBudget::default()),
            tiling::problems(&batch, HEADS, KV_HEADS * HEAD_DIM, small()),
        ];
        assert_eq!(plans[0].len(), 3, "{:?}", plans[0]);
        assert!(plans[1].len() > 12, "{:?}", plans[1]);
        assert!(
            plans[1]
                .iter()
                .filter(|p| matches!(p, Problem::Decodes(_)))
                .count()
                >= 3
        );

        let cpu = |batch: &BatchInput| -> AttentionOut {
            let m = CpuMetadata::new(batch, BLOCK).unwrap();
            Box::new(move |q, k, v, cache| m.forward(q, k, v, cache, 0.3).unwrap())
        };
        let (want, want_cache) = run(cpu, &batch);
        for budget in [TileBudget::default(), small()] {
            let (got, got_cache) = run(generic(budget), &batch);
            assert_eq!(got_cache, want_cache, "{budget:?}");
            let diff = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-5, "{budget:?}: differs by {diff}");
        }
    }

    fn small() -> TileBudget {
        TileBudget {
            scores: HEADS * 40 * 3,
            gathered: KV_HEADS * HEAD_DIM * 40,
        }
    }
}
