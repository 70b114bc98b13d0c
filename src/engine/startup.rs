//! What runs once before the server answers `/health` with 200: a profiling step that measures
//! the activation memory of the largest step the limits allow (so the KV pool can be sized from
//! what is left), and a warm-up step on the engine's own thread that proves the device — kernel
//! loading, cuBLAS set-up and any fault happen here, not on the first user request.
//!
//! Both run the real forward and the real sampler on dummy batches. Their block tables point at
//! a few blocks over and over (the contents are garbage and never read back), so a step of any
//! context length fits a pool of a handful of blocks.

use candle_core::DType;

use crate::batch::{BatchInput, SequenceChunk};
use crate::device::PeakMemory;
use crate::error::Result;
use crate::model::{AttentionBackend, KvCache, Qwen3Config, Qwen3Model};
use crate::sampling::{Sampler, SamplingParams, SequenceSampler};

/// Blocks of the scratch pool the profiling step attends over.
const SCRATCH_BLOCKS: usize = 8;

/// The largest step the scheduler can build: `tokens` fed in all, `rows` sequences, each
/// attending over `context` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepShape {
    pub tokens: usize,
    pub rows: usize,
    pub context: usize,
}

/// The profiling step's result, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivationProfile {
    /// The device allocator's high-water mark above what was in use before the step (`None`
    /// where the device cannot tell: the CPU, or a GPU without stream-ordered allocation).
    pub measured: Option<usize>,
    /// [`estimate_activation_bytes`] for the same step: the floor the measurement must clear.
    pub estimate: usize,
}

impl ActivationProfile {
    /// What the KV budget sets aside for activations.
    pub fn peak(&self) -> usize {
        self.measured.unwrap_or(0).max(self.estimate)
    }
}

/// A dummy batch of `shape`: `rows - 1` single-token decodes and one chunk with the remaining
/// tokens, every row asking for logits (the sampler's `[rows, vocab]` temporaries are part of
/// the peak), every block table cycling over `blocks` scratch blocks.
pub fn dummy_batch(shape: StepShape, block_size: usize, blocks: usize, vocab: usize) -> BatchInput {
    let rows = shape.rows.clamp(1, shape.tokens.max(1));
    let chunk_tokens = shape.tokens.max(rows) - (rows - 1);
    let context = shape.context.max(chunk_tokens);
    let table: Vec<u32> = (0..context.div_ceil(block_size))
        .map(|i| (i % blocks.max(1)) as u32)
        .collect();
    let mut batch = BatchInput::default();
    for row in 0..rows {
        let fed = if row + 1 == rows { chunk_tokens } else { 1 };
        batch
            .token_ids
            .extend((0..fed).map(|i| ((row * 31 + i * 7) % vocab.max(1)) as u32));
        batch.chunks.push(SequenceChunk {
            num_query_tokens: fed,
            context_len: context,
            block_table: table.clone(),
            needs_logits: true,
        });
    }
    batch
}

/// Runs the largest step on a scratch pool and the sampler on its logits, and reports the
/// activation memory it took. Call before the real KV pool exists.
pub fn profile_activations(
    model: &Qwen3Model,
    backend: AttentionBackend,
    sampler: &Sampler,
    shape: StepShape,
    block_size: usize,
) -> Result<ActivationProfile> {
    let cfg = model.config();
    let estimate = estimate_activation_bytes(cfg, model.dtype(), shape);
    let device = model.device();
    let peak = PeakMemory::start(device);
    {
        let scratch = KvCache::new(cfg, SCRATCH_BLOCKS, block_size, model.dtype(), device)?;
        let batch = dummy_batch(shape, block_size, SCRATCH_BLOCKS, cfg.vocab_size);
        let logits = model.forward(&batch, &scratch, backend)?;
        sample_like_a_busy_server(sampler, &logits, batch.chunks.len())?;
        device.synchronize()?;
    }
    let measured = peak.finish(device);
    Ok(ActivationProfile { measured, estimate })
}

/// A warm-up step on `cache`: one short prefill chunk and one decode, sampled greedily and with
/// Qwen3's default truncation. Call on the thread that will run the engine.
pub fn warm_up(
    model: &Qwen3Model,
    cache: &KvCache,
    backend: AttentionBackend,
    sampler: &Sampler,
) -> Result<()> {
    let shape = StepShape {
        tokens: 5,
        rows: 2,
        context: 4,
    };
    let blocks = cache.num_blocks().min(SCRATCH_BLOCKS);
    let batch = dummy_batch(shape, cache.block_size(), blocks, model.config().vocab_size);
    let logits = model.forward(&batch, cache, backend)?;
    sample_like_a_busy_server(sampler, &logits, batch.chunks.len())?;
    model.device().synchronize()?;
    Ok(())
}

/// The sampler on every row with the costliest common settings: Qwen3's defaults (top-k 20,
/// top-p 0.95) with 20 logprobs, and one greedy row.
fn sample_like_a_busy_server(
    sampler: &Sampler,
    logits: &candle_core::Tensor,
    rows: usize,
) -> Result<()> {
    let mut seqs: Vec<SequenceSampler> = (0..rows)
        .map(|i| {
            let params = if i == 0 {
                SamplingParams::greedy()
            } else {
                SamplingParams {
                    temperature: 0.6,
                    top_k: 20,
                    top_p: 0.95,
                    seed: Some(i as u64),
                    logprobs: Some(20),
                    ..SamplingParams::default()
                }
            };
            SequenceSampler::new(params, &[])
        })
        .collect();
    let mut refs: Vec<&mut SequenceSampler> = seqs.iter_mut().collect();
    sampler.sample(logits, &mut refs)?;
    Ok(())
}

/// A lower bound on the activation memory of a step of `shape`, from the tensors every layer
/// and the sampler keep alive at once: the residual stream and its normed copy, q|k|v, the
/// attention output, gate|up and the SwiGLU product, the logits (and the sampler's f32 copies:
/// raw, processed, and one working row set), and attention scores of one 64-row query tile
/// over the context per head. Used where the device cannot measure, and as a floor where it can.
pub fn estimate_activation_bytes(cfg: &Qwen3Config, dtype: DType, shape: StepShape) -> usize {
    let e = dtype.size_in_bytes();
    let t = shape.tokens;
    let heads = cfg.num_attention_heads;
    let kv = cfg.num_key_value_heads;
    let d = cfg.head_dim;
    let per_token =
        3 * cfg.hidden_size + (heads + 2 * kv) * d + heads * d + 3 * cfg.intermediate_size;
    let layer = t * per_token * e;
    let scores = heads * 64.min(t) * shape.context * 4;
    let logits = shape.rows * cfg.vocab_size * (e + 3 * 4);
    layer + scores + logits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_batches_have_the_shape_asked_for_and_validate() {
        let shape = StepShape {
            tokens: 100,
            rows: 10,
            context: 300,
        };
        let batch = dummy_batch(shape, 16, 8, 1000);
        assert_eq!(batch.num_tokens(), 100);
        assert_eq!(batch.chunks.len(), 10);
        assert!(batch.chunks.iter().all(|c| c.needs_logits));
        assert_eq!(batch.chunks[9].num_query_tokens, 91);
        batch.validate(16, 8).unwrap();
        // More rows than tokens: one token each.
        let batch = dummy_batch(
            StepShape {
                tokens: 4,
                rows: 9,
                context: 4,
            },
            16,
            8,
            1000,
        );
        assert_eq!((batch.num_tokens(), batch.chunks.len()), (4, 4));
        batch.validate(16, 8).unwrap();
    }

    #[test]
    fn the_estimate_grows_with_every_dimension() {
        let cfg = Qwen3Config::from_json(
            r#"{"architectures":["Qwen3ForCausalLM"],"vocab_size":151936,"hidden_size":2560,
            "intermediate_size":9728,"num_hidden_layers":36,"num_attention_heads":32,
            "num_key_value_heads":8,"head_dim":128,"max_position_embeddings":40960,
            "rms_norm_eps":1e-6}"#,
        )
        .unwrap();
        let base = StepShape {
            tokens: 8192,
            rows: 256,
            context: 8192,
        };
        let bytes = estimate_activation_bytes(&cfg, DType::BF16, base);
        // Qwen3-4B at vLLM's default step: a few GB, far below the card.
        assert!(bytes > 1 << 30 && bytes < 8 << 30, "{bytes}");
        for bigger in [
            StepShape {
                tokens: 16384,
                ..base
            },
            StepShape { rows: 512, ..base },
            StepShape {
                context: 40960,
                ..base
            },
        ] {
            assert!(estimate_activation_bytes(&cfg, DType::BF16, bigger) > bytes);
        }
    }
}
