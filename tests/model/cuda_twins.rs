//! The CUDA kernels' CPU twins and their shared index math, tested on the CPU: the plan against
//! `batch.rs`, the twins against a plain f64 softmax, the constants against kernels/*.cu, and the
//! `cuda` backend (twins on the CPU device) against transformers and the other backends.

use crate::common;

use candle_core::{DType, Device, Tensor};
use common::*;
use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tealight::batch::slot_of;
use tealight::kernels::check::{batch_of, random_specs, reference};
use tealight::kernels::kv_write::WriteKv;
use tealight::kernels::paged_attention::{PagedAttention, twin};
use tealight::kernels::plan::{
    AttentionPlan, HeadShape, MAX_GROUP, PARTITION_SIZES, PREFILL_MIN_QUERY, PREFILL_TILE_KEYS,
    PREFILL_TILE_ROWS, paged_shared_bytes,
};
use tealight::kernels::{Element, PAGED_HEAD_DIMS, PREFILL_HEAD_DIMS, attention_supported};
use tealight::model::attention::{AttentionMetadata, cuda as cuda_backend};
use tealight::model::loader::DtypeChoice;
use tealight::model::{AttentionBackend, BatchInput, SequenceChunk};

// ---- random batches ---------------------------------------------------------------------------

/// A batch of `chunks` sequences: decode tokens and prefill chunks over cached prefixes, with
/// scattered, shuffled block tables (shared with `tealight debug kernels`).
fn random_batch(
    rng: &mut ChaCha8Rng,
    chunks: usize,
    block_size: usize,
    max_context: usize,
) -> (BatchInput, usize) {
    let specs = random_specs(rng, chunks, max_context);
    batch_of(rng, &specs, block_size)
}

fn shape(heads: usize, kv_heads: usize, head_dim: usize) -> HeadShape {
    HeadShape {
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
    }
}

// ---- the plan ---------------------------------------------------------------------------------

#[test]
fn plan_follows_the_batch_index_math() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for case in 0..200 {
        let block_size = [1, 4, 16, 32][case % 4];
        let (batch, num_blocks) = random_batch(&mut rng, 1 + case % 9, block_size, 300);
        batch.validate(block_size, num_blocks).unwrap();
        let hs = [shape(4, 2, 32), shape(12, 1, 48), shape(32, 8, 128)][case % 3];
        let tensor_cores = case % 2 == 0;
        let plan = AttentionPlan::new(&batch, block_size, hs, tensor_cores);

        assert_eq!(plan.slots(), batch.slot_mapping(block_size).as_slice());
        let positions = batch.positions();
        let offsets = batch.query_offsets();
        assert_eq!(plan.num_tokens, batch.num_tokens());
        for (t, &pos) in positions.iter().enumerate() {
            assert_eq!(plan.token_visible()[t], pos + 1);
            let s = plan.token_seq()[t] as usize;
            assert!(offsets[s] <= t && t < offsets[s + 1]);
        }
        for (s, chunk) in batch.chunks.iter().enumerate() {
            assert_eq!(plan.seq_q_start()[s] as usize, offsets[s]);
            assert_eq!(plan.seq_q_len()[s] as usize, chunk.num_query_tokens);
            assert_eq!(plan.seq_ctx_len()[s] as usize, chunk.context_len);
            for pos in 0..chunk.context_len {
                assert_eq!(
                    plan.slot(s, pos) as u32,
                    slot_of(&chunk.block_table, pos, block_size)
                );
            }
        }

        // Every token is computed exactly once: by the paged kernel or by one prefill tile row
        // per query head.
        let group = hs.group();
        let mut seen = vec![0usize; batch.num_tokens()];
        for &t in plan.work_tokens() {
            seen[t as usize] += group;
        }
        for tile in 0..plan.num_tiles() {
            let s = plan.tile_seq()[tile] as usize;
            let chunk = &batch.chunks[s];
            assert!(tensor_cores && chunk.num_query_tokens >= PREFILL_MIN_QUERY);
            let row0 = plan.tile_row0()[tile] as usize;
            assert_eq!(row0 % PREFILL_TILE_ROWS, 0);
            let rows = chunk.num_query_tokens * group;
            for r in row0..(row0 + PREFILL_TILE_ROWS).min(rows) {
                seen[offsets[s] + r / group] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == group), "case {case}: {seen:?}");

        // Partitions: the largest size that gives the target CTA count, enough of them.
        assert!(PARTITION_SIZES.contains(&plan.partition_size));
        let max_visible = plan
            .work_tokens()
            .iter()
            .map(|&t| plan.token_visible()[t as usize] as usize)
            .max()
            .unwrap_or(0);
        assert_eq!(
            plan.max_partitions,
            max_visible.div_ceil(plan.partition_size).max(1)
        );
        assert!(plan.paged_shared_bytes() <= 48 * 1024);
        assert_eq!(
            plan.paged_grid().1,
            hs.num_kv_heads * group.div_ceil(MAX_GROUP)
        );
    }
}

#[test]
fn shared_memory_fits_the_default_limit_for_every_built_shape() {
    for &d in &PAGED_HEAD_DIMS {
        for &p in &PARTITION_SIZES {
            assert!(paged_shared_bytes(p, d) <= 48 * 1024, "P {p}, D {d}");
        }
    }
}

/// The constants the host and the kernels must agree on, read from the CUDA sources.
#[test]
fn host_constants_match_the_kernel_sources() {
    let src = std::fs::read_to_string(repo_path("kernels/attention.cu")).unwrap();
    let constant = |name: &str| -> usize {
        let line = src
            .lines()
            .find(|l| l.contains(&format!("constexpr int {name} =")))
            .unwrap_or_else(|| panic!("{name} not in attention.cu"));
        let value = line.split('=').nth(1).unwrap();
        value.split(';').next().unwrap().trim().parse().unwrap()
    };
    assert_eq!(constant("kMaxGroup"), MAX_GROUP);
    assert_eq!(constant("kTileRows"), PREFILL_TILE_ROWS);
    assert_eq!(constant("kTileKeys"), PREFILL_TILE_KEYS);
    assert_eq!(
        constant("kPagedWarps"),
        4,
        "paged_shared_bytes assumes 4 warps"
    );
    let dims = |macro_name: &str| -> Vec<usize> {
        let start = src
            .find(&format!("#define {macro_name}(NAME, T, C)"))
            .unwrap();
        src[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.trim_start().starts_with("TL_"))
            .filter(|l| !l.trim_start().starts_with("TL_REDUCE"))
            .map(|l| {
                let d = l.split(',').nth(3).unwrap();
                d.trim()
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(dims("TL_PAGED_ALL"), PAGED_HEAD_DIMS.to_vec());
    assert_eq!(dims("TL_PREFILL_ALL"), PREFILL_HEAD_DIMS.to_vec());
}

/// Every (activations, cache) pair the checks cover has its unit: compiled by build.rs, guarded
/// in attention.cu, embedded by the launcher, and picked by the emulator; and no unit is unnamed.
#[test]
fn every_dtype_pair_has_its_kernel_unit() {
    let read = |p: &str| std::fs::read_to_string(repo_path(p)).unwrap();
    let (build, cu, launch, emu) = (
        read("build.rs"),
        read("kernels/attention.cu"),
        read("src/kernels/cuda.rs"),
        read("kernels/emu/run_case.cpp"),
    );
    let pairs = tealight::kernels::check::PAIRS;
    for (dtype, cache) in pairs {
        let name = tealight::kernels::kernel_name(dtype, cache).unwrap();
        assert!(
            build.contains(&format!("\"-DTL_UNIT_{name}\"")),
            "build.rs: {name}"
        );
        assert!(
            cu.contains(&format!("defined(TL_UNIT_{name})")),
            "attention.cu: {name}"
        );
        assert!(
            launch.contains(&format!("\"{name}\",")) || launch.contains(&format!("\"{name}\"\n")),
            "cuda.rs: {name}"
        );
        assert!(
            emu.contains(&format!("#define TL_UNIT_{name} 1")),
            "run_case.cpp: {name}"
        );
        assert!(
            emu.contains(&format!("TL_PICK({name},")),
            "run_case.cpp: {name}"
        );
    }
    assert_eq!(build.matches("-DTL_UNIT_").count(), pairs.len());
    assert_eq!(cu.matches("defined(TL_UNIT_").count(), pairs.len());
}

// ---- the twins against a plain softmax --------------------------------------------------------

fn random_values(rng: &mut ChaCha8Rng, n: usize, amplitude: f32) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-amplitude..amplitude))
        .collect()
}

/// Rounds through `T` so the reference sees exactly the operands the twin sees.
fn through<T: Element>(x: &[f32]) -> (Vec<T>, Vec<f32>) {
    let t: Vec<T> = x.iter().map(|&v| T::narrow(v)).collect();
    let back = t.iter().map(|v| v.widen()).collect();
    (t, back)
}

/// ‖out − ref‖ / ‖ref‖ and whether any output is NaN.
fn relative_error<T: Element>(out: &[T], reference: &[f64]) -> (f64, bool) {
    let mut num = 0f64;
    let mut den = 0f64;
    let mut nan = false;
    for (o, r) in out.iter().zip(reference) {
        let o = o.widen() as f64;
        nan |= o.is_nan();
        num += (o - r) * (o - r);
        den += r * r;
    }
    ((num / den).sqrt(), nan)
}

/// The twins of activations `T` over a cache of `C`, read with `kv_scales` (k, v), against the
/// f64 softmax of exactly the values they read.
#[allow(clippy::too_many_arguments)]
fn check_twin<T: Element, C: Element>(
    rng: &mut ChaCha8Rng,
    hs: HeadShape,
    block_size: usize,
    chunks: usize,
    max_context: usize,
    tensor_cores: bool,
    tolerance: f64,
    kv_scales: (f32, f32),
) -> AttentionPlan {
    let (batch, num_blocks) = random_batch(rng, chunks, block_size, max_context);
    let d = hs.head_dim;
    let slots = num_blocks * block_size;
    let (q, qf) = through::<T>(&random_values(
        rng,
        batch.num_tokens() * hs.num_heads * d,
        1.0,
    ));
    // Keys large enough that the softmax is far from uniform; what is read is stored × scale.
    let (k_scale, v_scale) = kv_scales;
    let (k, kf) = through::<C>(&random_values(rng, slots * hs.num_kv_heads * d, 3.0));
    let (v, vf) = through::<C>(&random_values(rng, slots * hs.num_kv_heads * d, 1.0));
    let read = |x: Vec<f32>, scale: f32| -> Vec<f32> { x.iter().map(|v| v * scale).collect() };
    let (kf, vf) = (read(kf, k_scale), read(vf, v_scale));
    let scale = 1.0 / (d as f64).sqrt();
    let plan = AttentionPlan::new(&batch, block_size, hs, tensor_cores);
    let out = twin(&plan, scale as f32 * k_scale, v_scale, &q, &k, &v);
    let want = reference(&batch, block_size, hs, scale, &qf, &kf, &vf);
    let (err, nan) = relative_error(&out, &want);
    assert!(!nan, "{hs:?}: an output row was never written");
    assert!(
        err <= tolerance,
        "{hs:?} bs {block_size} tc {tensor_cores}: relative error {err:e} > {tolerance:e} \
         (partition {}, max partitions {}, tiles {})",
        plan.partition_size,
        plan.max_partitions,
        plan.num_tiles()
    );
    plan
}

#[test]
fn twins_equal_a_plain_softmax_in_every_dtype() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let shapes = [
        shape(4, 2, 32),   // tiny
        shape(4, 1, 48),   // tiny-untied
        shape(32, 8, 128), // Qwen3-4B (group 4)
        shape(16, 8, 64),  // group 2
        shape(12, 1, 64),  // group 12: two head chunks
        shape(3, 3, 256),  // no GQA, paged only (no prefill kernel for 256)
    ];
    let mut saw_split = false;
    let mut saw_direct = false;
    let mut saw_tiles = false;
    for (i, &hs) in shapes.iter().enumerate() {
        for block_size in [16, 32] {
            let tc = PREFILL_HEAD_DIMS.contains(&hs.head_dim);
            let chunks = 1 + (i + block_size) % 5;
            let p =
                check_twin::<f32, f32>(&mut rng, hs, block_size, chunks, 400, false, 1e-5, UNIT);
            saw_split |= p.max_partitions > 1;
            saw_direct |= p.max_partitions == 1 && !p.work_tokens().is_empty();
            let p = check_twin::<f16, f16>(&mut rng, hs, block_size, chunks, 400, tc, 3e-3, UNIT);
            saw_tiles |= p.num_tiles() > 0;
            check_twin::<bf16, bf16>(&mut rng, hs, block_size, chunks, 400, tc, 2e-2, UNIT);
        }
    }
    // Many short decodes: one partition each, no merge step.
    for _ in 0..3 {
        let p = check_twin::<bf16, bf16>(&mut rng, shape(32, 8, 128), 16, 40, 60, true, 2e-2, UNIT);
        saw_direct |= p.max_partitions == 1 && !p.work_tokens().is_empty();
    }
    assert!(saw_split && saw_direct && saw_tiles);
}

/// Scales of 1: a cache that stores the values as they are.
const UNIT: (f32, f32) = (1.0, 1.0);

/// A cache narrower than the activations (`--kv-cache-dtype`): 16-bit beside f32 and the other
/// 16-bit type, fp8 beside all three with scales other than 1 (what is read is stored × scale).
/// The reference reads exactly the cached values, so the bounds are the activations' and the
/// tensor cores' operand rounding, as for a cache of the model's own dtype.
#[test]
fn twins_read_a_narrower_cache() {
    use float8::F8E4M3;
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let fp8 = (1.5, 0.25);
    for (i, hs) in [shape(32, 8, 128), shape(4, 1, 48), shape(12, 1, 64)]
        .into_iter()
        .enumerate()
    {
        let tc = PREFILL_HEAD_DIMS.contains(&hs.head_dim);
        for block_size in [16, 32] {
            let c = 1 + (i + block_size) % 4;
            let r = &mut rng;
            check_twin::<f32, f16>(r, hs, block_size, c, 300, false, 1e-5, UNIT);
            check_twin::<f32, bf16>(r, hs, block_size, c, 300, false, 1e-5, UNIT);
            check_twin::<f32, F8E4M3>(r, hs, block_size, c, 300, false, 1e-5, fp8);
            // Tensor-core operands: q rounded to the cache's 16-bit type, or (fp8) K/V widened
            // exactly to the activations'.
            let p = check_twin::<bf16, f16>(r, hs, block_size, c, 300, tc, 2e-2, UNIT);
            assert_eq!(
                p.num_tiles() > 0,
                tc && p.num_tokens > p.work_tokens().len()
            );
            check_twin::<f16, bf16>(r, hs, block_size, c, 300, tc, 2e-2, UNIT);
            check_twin::<bf16, F8E4M3>(r, hs, block_size, c, 300, tc, 2e-2, fp8);
            check_twin::<f16, F8E4M3>(r, hs, block_size, c, 300, tc, 3e-3, fp8);
        }
    }
}

/// A single long decode: the work is split over many partitions and merged.
#[test]
fn long_context_decode_is_split_and_merged() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let hs = shape(32, 8, 128);
    let context = 3000;
    let batch = BatchInput {
        token_ids: vec![1],
        chunks: vec![SequenceChunk {
            num_query_tokens: 1,
            context_len: context,
            block_table: (0..context.div_ceil(16) as u32).rev().collect(),
            logits_tokens: 1,
        }],
    };
    let plan = AttentionPlan::new(&batch, 16, hs, true);
    assert_eq!(
        plan.partition_size, 64,
        "one token × 8 kv heads needs small partitions"
    );
    assert_eq!(plan.max_partitions, context.div_ceil(64));
    let slots = context.div_ceil(16) * 16;
    let q = random_values(&mut rng, 32 * 128, 1.0);
    let k = random_values(&mut rng, slots * 8 * 128, 3.0);
    let v = random_values(&mut rng, slots * 8 * 128, 1.0);
    let scale = 1.0 / (128f64).sqrt();
    let out = twin(&plan, scale as f32, 1.0, &q, &k, &v);
    let want = reference(&batch, 16, hs, scale, &q, &k, &v);
    let (err, nan) = relative_error(&out, &want);
    assert!(!nan && err < 1e-5, "{err:e}");
}

// ---- the ops through candle ------------------------------------------------------------------

#[test]
fn write_kv_op_copies_rows_to_their_slots() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let (batch, num_blocks) = random_batch(&mut rng, 5, 16, 100);
        let hs = shape(4, 2, 48);
        let plan = AttentionPlan::new(&batch, 16, hs, false);
        let meta = Tensor::new(plan.packed.as_slice(), &Device::Cpu).unwrap();
        let slots = num_blocks * 16;
        let cache = Tensor::zeros((slots, 2, 48), dtype, &Device::Cpu).unwrap();
        let t = batch.num_tokens();
        let src = Tensor::new(random_values(&mut rng, t * 2 * 48, 1.0), &Device::Cpu)
            .unwrap()
            .reshape((t, 2, 48))
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        WriteKv::apply(&cache, &src, &meta, plan.ranges.slots.clone()).unwrap();
        let cache_rows = cache
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        let src_rows = src.to_dtype(DType::F32).unwrap().to_vec3::<f32>().unwrap();
        let written: std::collections::HashSet<usize> =
            plan.slots().iter().map(|&s| s as usize).collect();
        for (i, &slot) in plan.slots().iter().enumerate() {
            assert_eq!(cache_rows[slot as usize], src_rows[i]);
        }
        for (slot, row) in cache_rows.iter().enumerate() {
            if !written.contains(&slot) {
                assert!(row.iter().flatten().all(|&x| x == 0.0));
            }
        }
        // A wrong row count is refused.
        let short = src.narrow(0, 0, t - 1).unwrap();
        assert!(WriteKv::apply(&cache, &short, &meta, plan.ranges.slots.clone()).is_err());
    }
}

#[test]
fn attention_op_on_cpu_is_the_twin() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (batch, num_blocks) = random_batch(&mut rng, 6, 16, 200);
    let hs = shape(8, 2, 64);
    let plan = AttentionPlan::new(&batch, 16, hs, true);
    let meta = Tensor::new(plan.packed.as_slice(), &Device::Cpu).unwrap();
    let t = batch.num_tokens();
    let slots = num_blocks * 16;
    let (q, _) = through::<bf16>(&random_values(&mut rng, t * 8 * 64, 1.0));
    let (k, _) = through::<bf16>(&random_values(&mut rng, slots * 2 * 64, 2.0));
    let (v, _) = through::<bf16>(&random_values(&mut rng, slots * 2 * 64, 1.0));
    let qt = Tensor::from_vec(q.clone(), (t, 8, 64), &Device::Cpu).unwrap();
    let kt = Tensor::from_vec(k.clone(), (slots, 2, 64), &Device::Cpu).unwrap();
    let vt = Tensor::from_vec(v.clone(), (slots, 2, 64), &Device::Cpu).unwrap();
    let op = PagedAttention {
        plan: &plan,
        meta: &meta,
        scale: 0.125,
        v_scale: 1.0,
        poison: true,
    };
    let out = op.forward(&qt, &kt, &vt).unwrap();
    assert_eq!(out.dims(), &[t, 8, 64]);
    let got: Vec<bf16> = out.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got, twin(&plan, 0.125, 1.0, &q, &k, &v));
    // A query that does not match the plan is refused.
    let wrong = qt.narrow(1, 0, 4).unwrap();
    assert!(op.forward(&wrong, &kt, &vt).is_err());
}

// ---- the backend ------------------------------------------------------------------------------

#[test]
fn backend_resolution() {
    assert!(AttentionBackend::Cuda.resolve(&Device::Cpu).is_err());
    assert_eq!(
        AttentionBackend::Auto.resolve(&Device::Cpu).unwrap(),
        AttentionBackend::Cpu
    );
    assert!(attention_supported(DType::BF16, DType::BF16, 128));
    assert!(!attention_supported(DType::BF16, DType::BF16, 40));
    // Narrower caches beside any float model; never a wider one, nor fp8 activations.
    assert!(attention_supported(DType::BF16, DType::F8E4M3, 128));
    assert!(attention_supported(DType::F32, DType::F16, 128));
    assert!(attention_supported(DType::F16, DType::BF16, 64));
    assert!(!attention_supported(DType::BF16, DType::F32, 128));
    assert!(!attention_supported(DType::F8E4M3, DType::F8E4M3, 128));
    assert_eq!(
        tealight::kernels::kernel_name(DType::BF16, DType::F8E4M3).as_deref(),
        Some("bf16_kvfp8")
    );
}

#[test]
fn unsupported_head_dim_falls_back_to_generic() {
    let batch = BatchInput {
        token_ids: vec![1, 2],
        chunks: vec![SequenceChunk {
            num_query_tokens: 2,
            context_len: 2,
            block_table: vec![0],
            logits_tokens: 1,
        }],
    };
    let m = cuda_backend::metadata(&batch, 16, (2, 40), &Device::Cpu).unwrap();
    assert!(matches!(m, AttentionMetadata::Generic(_)));
    let m = cuda_backend::metadata(&batch, 16, (2, 128), &Device::Cpu).unwrap();
    assert!(matches!(m, AttentionMetadata::Cuda(_)));
}

const SHAPES: [&str; 2] = ["tiny", "tiny-untied"];

/// The `cuda` backend (its twins, on the CPU device) reproduces transformers' f32 logits and
/// greedy tokens, with prefill in chunks over a cached prefix and paged decode.
#[test]
fn cuda_backend_matches_transformers() {
    for shape in SHAPES {
        let loaded = load(shape, DtypeChoice::F32);
        for case in &model_fixtures(shape).cases {
            let n = case.prompt_ids.len() + case.greedy.len();
            let blocks = scattered_blocks(3, blocks_needed(n), 2);
            let cache = cache_for(&loaded, 3 + 2 * blocks.len());
            for chunk in [512, 7] {
                let (logits, greedy) = greedy_run(
                    &loaded,
                    &cache,
                    &blocks,
                    &case.prompt_ids,
                    case.greedy.len(),
                    chunk,
                    AttentionBackend::Cuda,
                );
                let sample: Vec<f32> = logits.iter().step_by(case.logits_stride).copied().collect();
                let diff = max_abs_diff(&sample, &case.logits_sample);
                assert!(
                    diff <= 1e-3,
                    "{shape}/{}: logits differ by {diff}",
                    case.name
                );
                assert_eq!(greedy, case.greedy, "{shape}/{} chunk {chunk}", case.name);
            }
        }
    }
}

/// In f16 and bf16 the prefill chunks take the tensor-core path (tiles); its twin stays close
/// to the `cpu` backend at the same dtype, and the greedy tokens agree.
#[test]
fn cuda_backend_in_half_precision_is_close_to_the_cpu_backend() {
    for (shape, dtype, tolerance) in [
        ("tiny", DtypeChoice::Bf16, 0.1f32),
        ("tiny-untied", DtypeChoice::F16, 0.02),
    ] {
        let loaded = load(shape, dtype);
        let case = model_fixtures(shape)
            .cases
            .iter()
            .max_by_key(|c| c.prompt_ids.len())
            .unwrap();
        assert!(case.prompt_ids.len() >= PREFILL_MIN_QUERY);
        let blocks = scattered_blocks(1, blocks_needed(case.prompt_ids.len() + 8), 3);
        let cache = cache_for(&loaded, 1 + 3 * blocks.len());
        let run = |backend| {
            greedy_run(
                &loaded,
                &cache,
                &blocks,
                &case.prompt_ids,
                8,
                usize::MAX,
                backend,
            )
        };
        let (cpu_logits, cpu_tokens) = run(AttentionBackend::Cpu);
        let (cuda_logits, cuda_tokens) = run(AttentionBackend::Cuda);
        let diff = max_abs_diff(&cpu_logits, &cuda_logits);
        assert!(
            diff <= tolerance,
            "{shape} {dtype:?}: logits differ by {diff}"
        );
        assert_eq!(cpu_tokens, cuda_tokens, "{shape} {dtype:?}");
    }
}

/// A step mixing a long prefill (tiles), short chunks and decodes (paged) equals each sequence
/// run alone through the `cuda` backend.
#[test]
fn cuda_backend_batched_step_equals_each_sequence_alone() {
    let loaded = load("tiny", DtypeChoice::F32);
    let cases = &model_fixtures("tiny").cases;
    let steps = 4;
    let per = cases
        .iter()
        .map(|c| blocks_needed(c.prompt_ids.len() + steps))
        .max()
        .unwrap();
    let tables: Vec<Vec<u32>> = (0..cases.len())
        .map(|i| scattered_blocks(i as u32, per, cases.len() as u32))
        .collect();
    let cache = cache_for(&loaded, per * cases.len());
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); cases.len()];
    for step in 0..=steps {
        let mut batch = BatchInput::default();
        let mut order = Vec::new();
        for (i, c) in cases.iter().enumerate() {
            // Odd sequences prefill one step late, so prefills and decodes share steps.
            let start = i % 2;
            if step < start || outputs[i].len() >= steps {
                continue;
            }
            let (ids, ctx) = if step == start {
                (c.prompt_ids.clone(), c.prompt_ids.len())
            } else {
                (
                    vec![*outputs[i].last().unwrap()],
                    c.prompt_ids.len() + outputs[i].len(),
                )
            };
            batch.chunks.push(SequenceChunk {
                num_query_tokens: ids.len(),
                context_len: ctx,
                block_table: tables[i].clone(),
                logits_tokens: 1,
            });
            batch.token_ids.extend(ids);
            order.push(i);
        }
        if order.is_empty() {
            break;
        }
        let logits = loaded
            .model
            .forward(&batch, &cache, AttentionBackend::Cuda)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (row, &i) in order.iter().enumerate() {
            outputs[i].push(argmax(&logits[row]));
        }
    }
    for (i, c) in cases.iter().enumerate() {
        let blocks = scattered_blocks(0, per, 1);
        let solo_cache = cache_for(&loaded, per);
        let (_, solo) = greedy_run(
            &loaded,
            &solo_cache,
            &blocks,
            &c.prompt_ids,
            steps,
            512,
            AttentionBackend::Cpu,
        );
        assert_eq!(outputs[i], solo, "{}", c.name);
    }
}

// ---- the CUDA sources themselves, emulated on the CPU -------------------------------------------

/// Compiles kernels/*.cu as host C++ against kernels/emu/emu.h (one OS thread per CUDA thread;
/// warp shuffles, barriers and the mma.sync fragment layouts modelled) and runs the small cases
/// of bf16 over its own cache and over an fp8 one: the kernels' own index math, fragments,
/// widening, scales and merges must reproduce the twins. Skipped where no g++ with C++20 is
/// installed. Every pair of dtypes: kernels/emu/run.sh.
#[test]
fn emulated_cuda_kernels_equal_their_twins() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("run_case");
    let compiled = std::process::Command::new("g++")
        .args([
            "-std=c++20",
            "-O1",
            "-pthread",
            "-fno-strict-aliasing",
            "-I",
        ])
        .arg(repo_path("kernels"))
        .arg(repo_path("kernels/emu/run_case.cpp"))
        .arg("-o")
        .arg(&exe)
        .output();
    match compiled {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "kernels/emu/run_case.cpp does not compile:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            eprintln!("skipped: no g++ ({e})");
            return;
        }
    }
    let mut files = Vec::new();
    for (i, case) in tealight::kernels::check::small_cases(1)
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.dtype == DType::BF16 && matches!(c.cache_dtype, DType::BF16 | DType::F8E4M3)
        })
    {
        let path = dir.path().join(format!("case-{i:02}.bin"));
        tealight::kernels::check::dump_case(case, 1000 + i as u64, &path).unwrap();
        files.push(path);
    }
    let out = std::process::Command::new(&exe)
        .args(&files)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "emulated kernels differ from the twins:\n{report}"
    );
    assert_eq!(report.matches(" ok").count(), files.len(), "{report}");
}
