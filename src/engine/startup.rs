//! What runs once before the server answers `/health` with 200: a profiling step that measures
//! the activation memory of the largest step the limits allow (so the KV pool can be sized from
//! what is left), and a warm-up step on the engine's own thread that proves the device — kernel
//! loading, cuBLAS set-up and any fault happen here, not on the first user request.
//!
//! Both run the real forward and the real sampler on dummy batches. Their block tables point at
//! a few blocks over and over (the contents are garbage and never read back), so a step of any
//! context length fits a pool of a handful of blocks.
//!
//! With the generic attention backend the profiling step runs at a shorter context than the
//! limit ([`ProfilePlan`]): its problems' scores are capped by the tile budget, not by the
//! context, so a context at which the largest problem already fills the budget has nearly the
//! same peak at a fraction of the work (Qwen3-0.6B in bf16, 8,192 tokens × 256 sequences at
//! context 40,960: 163 problems a layer; at the context chosen, 8,704: 34). What does grow with the
//! context — one prefill tile's gathered K/V, and the index tensors a step keeps alive — is
//! added to the measurement by arithmetic ([`footprint`]).

use candle_core::DType;

use crate::batch::{BatchInput, SequenceChunk};
use crate::device::PeakMemory;
use crate::error::Result;
use crate::model::attention::generic::TileBudget;
use crate::model::attention::generic::tiling::footprint;
use crate::model::{AttentionBackend, KvCache, Qwen3Model};
use crate::sampling::{Sampler, SamplingParams, SequenceSampler};
use crate::weights::Qwen3Config;

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
    /// The context the step ran at ([`ProfilePlan`]).
    pub profiled_context: usize,
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
    let (_, _, context) = layout(shape);
    let table: Vec<u32> = (0..context.div_ceil(block_size))
        .map(|i| (i % blocks.max(1)) as u32)
        .collect();
    batch_of(shape, table, vocab)
}

/// The dummy batch's rows, its last chunk's tokens and every row's context.
fn layout(shape: StepShape) -> (usize, usize, usize) {
    let rows = shape.rows.clamp(1, shape.tokens.max(1));
    let chunk_tokens = shape.tokens.max(rows) - (rows - 1);
    (rows, chunk_tokens, shape.context.max(chunk_tokens))
}

fn batch_of(shape: StepShape, table: Vec<u32>, vocab: usize) -> BatchInput {
    let (rows, chunk_tokens, context) = layout(shape);
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
            logits_tokens: 1,
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
    let plan = ProfilePlan::new(cfg, backend, model.dtype().size_in_bytes(), shape);
    let device = model.device();
    let peak = PeakMemory::start(device);
    {
        let scratch = KvCache::new(cfg, SCRATCH_BLOCKS, block_size, model.dtype(), device)?;
        let batch = dummy_batch(plan.run, block_size, SCRATCH_BLOCKS, cfg.vocab_size);
        let logits = model.forward(&batch, &scratch, backend)?;
        sample_like_a_busy_server(sampler, &logits, batch.chunks.len())?;
        device.synchronize()?;
    }
    let measured = peak.finish(device).map(|m| m + plan.extra);
    Ok(ActivationProfile {
        measured,
        estimate,
        profiled_context: plan.run.context,
    })
}

/// The step the profiling runs, and what must be added to its measurement to stand for `shape`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfilePlan {
    pub run: StepShape,
    /// Bytes `shape`'s step holds beyond `run`'s: the growth of its largest attention problem
    /// and of the index tensors kept for the step.
    pub extra: usize,
}

impl ProfilePlan {
    /// Candidate contexts are tried in steps of this many tokens.
    const STEP: usize = 256;

    /// For the generic backend, the shortest context (from the chunk's length up, in steps of
    /// [`Self::STEP`]) whose largest attention problem holds at least 7/8 of the temporaries of
    /// the largest at `shape.context` under the default tile budget (the measured part stays
    /// the bulk; the rest is added). Other backends run `shape`.
    pub fn new(
        cfg: &Qwen3Config,
        backend: AttentionBackend,
        dtype_size: usize,
        shape: StepShape,
    ) -> Self {
        let full = Self {
            run: shape,
            extra: 0,
        };
        if backend != AttentionBackend::Generic {
            return full;
        }
        let dims = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let at = |context: usize| {
            let shape = StepShape { context, ..shape };
            let batch = batch_of(shape, Vec::new(), 1);
            footprint(&batch, dims, dtype_size, TileBudget::default())
        };
        let (_, chunk_tokens, limit) = layout(shape);
        let want = at(limit);
        let first = chunk_tokens.div_ceil(Self::STEP) * Self::STEP;
        for context in (first..limit).step_by(Self::STEP) {
            let got = at(context);
            if got.largest_problem * 8 >= want.largest_problem * 7 {
                return Self {
                    run: StepShape { context, ..shape },
                    extra: want.largest_problem.saturating_sub(got.largest_problem)
                        + want.index.saturating_sub(got.index),
                };
            }
        }
        full
    }
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
    let per_token = 3 * cfg.hidden_size + (heads + 2 * kv) * d + heads * d + mlp_width(cfg);
    let layer = t * per_token * e;
    let scores = heads * 64.min(t) * shape.context * 4;
    let logits = shape.rows * cfg.vocab_size * (e + 3 * 4);
    layer + scores + logits
}

/// Activations a token keeps alive in the widest feed-forward block: gate|up and the SwiGLU
/// product of a dense MLP; in a sparse block, for each of its `k` experts its gathered input,
/// gate|up, product, output and weighted output, plus the router's logits and probabilities.
fn mlp_width(cfg: &Qwen3Config) -> usize {
    let dense = 3 * cfg.intermediate_size;
    let Some(moe) = &cfg.moe else {
        return dense;
    };
    let sparse = moe.num_experts_per_tok * (3 * cfg.hidden_size + 3 * moe.moe_intermediate_size)
        + 2 * moe.num_experts;
    dense.max(sparse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_block_counts_its_experts_activations() {
        let dense = qwen3(2048, 6144, 4, 32);
        let mut moe = dense.clone();
        moe.moe = crate::weights::synthetic::SyntheticSpec::qwen3_30b_a3b(4).moe;
        // 8 × (3 × 2048 + 3 × 768) + 256 = 67,840 > 3 × 6144.
        assert_eq!(mlp_width(&moe), 67_840);
        assert_eq!(mlp_width(&dense), 18_432);
    }

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
        assert!(batch.chunks.iter().all(|c| c.needs_logits()));
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

    fn qwen3(hidden: usize, inter: usize, layers: usize, heads: usize) -> Qwen3Config {
        Qwen3Config::from_json(&format!(
            r#"{{"architectures":["Qwen3ForCausalLM"],"vocab_size":151936,"hidden_size":{hidden},
            "intermediate_size":{inter},"num_hidden_layers":{layers},"num_attention_heads":{heads},
            "num_key_value_heads":8,"head_dim":128,"max_position_embeddings":40960,
            "rms_norm_eps":1e-6}}"#
        ))
        .unwrap()
    }

    /// The GPU defaults' largest step: 8,192 tokens, 256 sequences, the full context.
    const GPU_STEP: StepShape = StepShape {
        tokens: 8192,
        rows: 256,
        context: 40960,
    };

    /// At the Qwen3 shapes the generic backend's profile runs at a fraction of the context, with
    /// a largest problem at least as large as the full context's, and the difference in index
    /// tensors added; other backends profile the step as it is.
    #[test]
    fn the_profile_runs_a_shorter_context_and_adds_what_grows_with_it() {
        for cfg in [qwen3(1024, 3072, 28, 16), qwen3(2560, 9728, 36, 32)] {
            let dims = (
                cfg.num_attention_heads,
                cfg.num_key_value_heads,
                cfg.head_dim,
            );
            let plan = ProfilePlan::new(&cfg, AttentionBackend::Generic, 2, GPU_STEP);
            let at = |context| {
                let shape = StepShape {
                    context,
                    ..GPU_STEP
                };
                let batch = dummy_batch(shape, 16, 8, 1000);
                footprint(&batch, dims, 2, TileBudget::default())
            };
            let (full, run) = (at(40960), at(plan.run.context));
            assert!(plan.run.context <= 40960 / 4, "{plan:?}");
            assert_eq!((plan.run.tokens, plan.run.rows), (8192, 256));
            // Most of the largest problem is measured; with what is added, the profile stands
            // for at least the full step's largest problem and index tensors.
            assert!(
                run.largest_problem * 8 >= full.largest_problem * 7,
                "{run:?} {full:?}"
            );
            assert_eq!(
                run.largest_problem + run.index + plan.extra,
                full.largest_problem.max(run.largest_problem) + full.index
            );
            assert!(plan.extra > 100 << 20, "{plan:?}");
            // The work: attention problems over their keys, a fifth or less of the full step's.
            let work = |context| {
                let shape = StepShape {
                    context,
                    ..GPU_STEP
                };
                let batch = dummy_batch(shape, 16, 8, 1000);
                crate::model::attention::generic::tiling::problems(
                    &batch,
                    dims.0,
                    1024,
                    TileBudget::default(),
                )
                .len()
            };
            assert!(work(plan.run.context) * 4 < work(40960), "{plan:?}");
            for backend in [AttentionBackend::Cuda, AttentionBackend::Cpu] {
                let plan = ProfilePlan::new(&cfg, backend, 2, GPU_STEP);
                assert_eq!((plan.run, plan.extra), (GPU_STEP, 0));
            }
        }
        // A short limit: nothing shorter to run.
        let cfg = qwen3(1024, 3072, 28, 16);
        let short = StepShape {
            context: 8192,
            ..GPU_STEP
        };
        let plan = ProfilePlan::new(&cfg, AttentionBackend::Generic, 2, short);
        assert_eq!(plan.run, short);
    }

    /// The cost of the profiling step's attention on the CPU: one layer of the Qwen3-0.6B shape
    /// at the GPU defaults' largest step, the generic backend, the context the GPU (bf16) plan
    /// picks, or `PROFILE_CONTEXT`; computed in f32 (the CPU has no fast bf16 matmul). Every
    /// decode group and every `PROFILE_SAMPLE`-th tile (default 8) run for real; the layer's
    /// cost is their time scaled to all problems:
    /// `cargo test --lib profiling_attention_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement: minutes on two cores"]
    fn profiling_attention_cost() {
        use crate::model::attention::generic::GenericAttend;
        use crate::model::attention::generic::tiling::{Problem, problems as plan_of};
        use crate::model::kv_cache::LayerKv;
        use candle_core::{Device, Tensor};
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
        };
        let cfg = qwen3(1024, 3072, 28, 16);
        let plan = ProfilePlan::new(&cfg, AttentionBackend::Generic, 2, GPU_STEP);
        let context = env("PROFILE_CONTEXT").unwrap_or(plan.run.context);
        let sample = env("PROFILE_SAMPLE").unwrap_or(8).max(1);
        let shape = StepShape {
            context,
            ..GPU_STEP
        };
        let device = Device::Cpu;
        let batch = dummy_batch(shape, 16, SCRATCH_BLOCKS, 1000);
        let (heads, kv_heads, d) = (16, 8, 128);
        let rand = |shape: (usize, usize, usize)| Tensor::randn(0f32, 1.0, shape, &device).unwrap();
        let slots = SCRATCH_BLOCKS * 16;
        let cache = LayerKv {
            k: rand((slots, kv_heads, d)),
            v: rand((slots, kv_heads, d)),
            scales: Default::default(),
        };
        let problems = plan_of(&batch, heads, kv_heads * d, TileBudget::default());
        let tiles = problems
            .iter()
            .filter(|p| matches!(p, Problem::Tile { .. }))
            .count();
        let groups = problems.len() - tiles;
        // Seconds and count of the problems run, per kind (0: decode groups, 1: tiles).
        let (mut spent, mut run) = ([0.0f64; 2], [0usize; 2]);
        let mut seen = [0usize; 2];
        for problem in &problems {
            let kind = usize::from(matches!(problem, Problem::Tile { .. }));
            seen[kind] += 1;
            if (seen[kind] - 1) % sample != 0 {
                continue;
            }
            let started = std::time::Instant::now();
            match problem {
                Problem::Decodes(members) => {
                    let chunks: Vec<_> = members.iter().map(|&i| &batch.chunks[i]).collect();
                    let attend = GenericAttend::decodes(&chunks, 16, &device).unwrap();
                    attend
                        .forward(&rand((members.len(), heads, d)), &cache, 0.088)
                        .unwrap();
                }
                Problem::Tile { chunk, start, len } => {
                    let chunk = &batch.chunks[*chunk];
                    let attend = GenericAttend::tile(chunk, *start, *len, 16, &device).unwrap();
                    attend
                        .forward(&rand((*len, heads, d)), &cache, 0.088)
                        .unwrap();
                }
            }
            spent[kind] += started.elapsed().as_secs_f64();
            run[kind] += 1;
        }
        let scaled = |kind: usize, all: usize| spent[kind] * all as f64 / run[kind].max(1) as f64;
        let (decode_s, tile_s) = (scaled(0, groups), scaled(1, tiles));
        let layer = decode_s + tile_s;
        let at = footprint(&batch, (heads, kv_heads, d), 2, TileBudget::default());
        println!(
            "profiling attention at context {context}: {} problems a layer ({groups} decode \
             groups: {decode_s:.1} s from {} run; {tiles} tiles: {tile_s:.1} s from {} run): \
             {layer:.1} s a layer, {:.0} s for 28 layers; bf16 model: largest problem {:.1} MiB, \
             index tensors {:.1} MiB{}",
            problems.len(),
            run[0],
            run[1],
            28.0 * layer,
            at.largest_problem as f64 / 1048576.0,
            at.index as f64 / 1048576.0,
            if context == plan.run.context {
                format!(", {:.1} MiB added", plan.extra as f64 / 1048576.0)
            } else {
                String::new()
            }
        );
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
