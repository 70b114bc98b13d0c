//! Each kernel against its CPU twin on the same random inputs (`tealight debug kernels`, run by
//! scripts/gpu/check.sh; the timing of the model's attention backends is the CLI's:
//! `crate::cli::debug::backend_timing`).
//!
//! A case draws a batch (decode tokens, prefill chunks over a cached prefix, scattered block
//! tables), a cache and the step's q/k/v, then runs the KV writes and the attention op once on
//! the CPU (the twins) and once on `device` with the output poisoned (NaN) beforehand. It passes
//! when the caches are bit-identical, no output is NaN, and ‖device − twin‖ / ‖twin‖ is within
//! the dtype's tolerance. On the CPU device the check compares the twin with itself.

use super::kv_write::WriteKv;
use super::paged_attention::PagedAttention;
use super::plan::{AttentionPlan, HeadShape, PREFILL_MIN_QUERY};
use crate::batch::{BatchInput, SequenceChunk, slot_of};
use crate::error::Result;
use crate::model::kv_cache::{KvScales, LayerKv};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One kernel-check input: a step over a cache.
#[derive(Debug, Clone)]
pub struct KernelCase {
    pub name: String,
    /// The activations' dtype (q, out).
    pub dtype: DType,
    /// The cache's dtype (`--kv-cache-dtype`); fp8 caches get scales other than 1.
    pub cache_dtype: DType,
    pub shape: HeadShape,
    pub block_size: usize,
    pub num_blocks: usize,
    pub batch: BatchInput,
}

#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    pub tokens: usize,
    pub tiles: usize,
    pub partition_size: usize,
    pub max_partitions: usize,
    /// K and V caches equal bit for bit after the writes.
    pub cache_exact: bool,
    pub any_nan: bool,
    /// ‖device − twin‖ / ‖twin‖ of the attention output.
    pub rel_err: f64,
    pub tolerance: f64,
    pub passed: bool,
}

/// Relative-error bound of device against twin: the same algorithm, so only summation order and
/// the last rounding differ. `dtype`: the tensor cores' operand type ([`super::mma_dtype`]).
pub fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 2e-3,
        _ => 1e-2,
    }
}

fn shape(num_heads: usize, num_kv_heads: usize, head_dim: usize) -> HeadShape {
    HeadShape {
        num_heads,
        num_kv_heads,
        head_dim,
    }
}

/// A batch of the given (query tokens, context) chunks with scattered, shuffled block tables.
pub fn batch_of(
    rng: &mut ChaCha8Rng,
    specs: &[(usize, usize)],
    block_size: usize,
) -> (BatchInput, usize) {
    let total: usize = specs.iter().map(|&(_, c)| c.div_ceil(block_size) + 1).sum();
    let num_blocks = total + 3;
    let mut pool: Vec<u32> = (0..num_blocks as u32).collect();
    for i in (1..pool.len()).rev() {
        let j = rng.random_range(0..=i);
        pool.swap(i, j);
    }
    let mut batch = BatchInput::default();
    for &(query, context) in specs {
        let n = context.div_ceil(block_size) + rng.random_range(0..2);
        batch.chunks.push(SequenceChunk {
            num_query_tokens: query,
            context_len: context,
            block_table: pool.drain(..n).collect(),
            logits_tokens: 1,
        });
        batch
            .token_ids
            .extend((0..query).map(|_| rng.random_range(0..1000)));
    }
    (batch, num_blocks)
}

/// A random mix of decodes, short chunks and long chunks over cached prefixes.
pub fn random_specs(
    rng: &mut ChaCha8Rng,
    chunks: usize,
    max_context: usize,
) -> Vec<(usize, usize)> {
    (0..chunks)
        .map(|_| {
            let context = rng.random_range(1..=max_context);
            let query = match rng.random_range(0..3) {
                0 => 1,
                1 => rng.random_range(1..=context.min(PREFILL_MIN_QUERY)),
                _ => rng.random_range(1..=context),
            };
            (query, context)
        })
        .collect()
}

/// The (activations, cache) pairs the checks cover: each dtype over its own cache, then every
/// narrower cache the kernels read ([`super::kernel_name`]).
pub const PAIRS: [(DType, DType); 10] = [
    (DType::BF16, DType::BF16),
    (DType::F16, DType::F16),
    (DType::F32, DType::F32),
    (DType::BF16, DType::F8E4M3),
    (DType::BF16, DType::F16),
    (DType::F16, DType::F8E4M3),
    (DType::F16, DType::BF16),
    (DType::F32, DType::F8E4M3),
    (DType::F32, DType::F16),
    (DType::F32, DType::BF16),
];

/// A case's name: what it is, then its pair's kernel name (`bf16`, `bf16_kvfp8`).
fn case_name(name: &str, dtype: DType, cache_dtype: DType) -> String {
    let pair = super::kernel_name(dtype, cache_dtype).unwrap_or_else(|| "unbuilt".into());
    format!("{name} {pair}").to_lowercase()
}

/// The fixed list of cases: every shape for each dtype over its own cache, and the Qwen3-4B
/// shapes over the narrower caches a GPU deployment runs (fp8 beside bf16/f16, f16 beside bf16).
/// Each pair is a module the driver compiles at first use (seconds each), so the rest (f32
/// activations over a narrow cache, bf16 beside f16) are left to the small cases, which the
/// emulator runs on every pair.
pub fn cases(seed: u64) -> Vec<KernelCase> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let qwen4b = shape(32, 8, 128);
    let mut out = Vec::new();
    let gpu_pairs = PAIRS.into_iter().filter(|&(dtype, cache)| {
        dtype == cache
            || matches!(
                (dtype, cache),
                (DType::BF16 | DType::F16, DType::F8E4M3) | (DType::BF16, DType::F16)
            )
    });
    for (dtype, cache_dtype) in gpu_pairs {
        let same = dtype == cache_dtype;
        let mut add = |name: &str,
                       hs: HeadShape,
                       bs: usize,
                       specs: Vec<(usize, usize)>,
                       rng: &mut ChaCha8Rng| {
            let (batch, num_blocks) = batch_of(rng, &specs, bs);
            out.push(KernelCase {
                name: case_name(name, dtype, cache_dtype),
                dtype,
                cache_dtype,
                shape: hs,
                block_size: bs,
                num_blocks,
                batch,
            });
        };
        add(
            "4b decode b=1 ctx=1537",
            qwen4b,
            16,
            vec![(1, 1537)],
            &mut rng,
        );
        let specs = (0..64).map(|_| (1, rng.random_range(900..1100))).collect();
        add("4b decode b=64 ctx~1000", qwen4b, 16, specs, &mut rng);
        add(
            "4b prefill 300 after 200 cached",
            qwen4b,
            16,
            vec![(300, 500)],
            &mut rng,
        );
        let specs = random_specs(&mut rng, 12, 600);
        add("4b mixed 12 seqs", qwen4b, 16, specs, &mut rng);
        if !same {
            continue;
        }
        let specs = random_specs(&mut rng, 6, 300);
        add("tiny d32 g2 mixed", shape(4, 2, 32), 16, specs, &mut rng);
        let specs = random_specs(&mut rng, 6, 300);
        add(
            "tiny-untied d48 g4 mixed",
            shape(4, 1, 48),
            16,
            specs,
            &mut rng,
        );
        let specs = random_specs(&mut rng, 5, 300);
        add(
            "d64 g12 (two head chunks) mixed",
            shape(12, 1, 64),
            16,
            specs,
            &mut rng,
        );
        let specs = random_specs(&mut rng, 5, 300);
        add("d256 g1 mixed", shape(4, 4, 256), 16, specs, &mut rng);
        let specs = random_specs(&mut rng, 8, 400);
        add("4b block 32 mixed", qwen4b, 32, specs, &mut rng);
    }
    out
}

/// Small cases for the CPU emulation of the kernels (kernels/emu/), where every CUDA thread is an
/// OS thread: a few CTAs each, but every path (split partitions and merge, single partition,
/// prefill tiles over a cached prefix with partial tiles, head chunks, every head_dim).
pub fn small_cases(seed: u64) -> Vec<KernelCase> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (dtype, cache_dtype) in PAIRS {
        let mut add = |name: &str, hs: HeadShape, bs: usize, specs: Vec<(usize, usize)>| {
            let (batch, num_blocks) = batch_of(&mut rng, &specs, bs);
            out.push(KernelCase {
                name: case_name(name, dtype, cache_dtype),
                dtype,
                cache_dtype,
                shape: hs,
                block_size: bs,
                num_blocks,
                batch,
            });
        };
        add(
            "d128 g4 decode, split",
            shape(8, 2, 128),
            16,
            vec![(1, 700), (1, 130)],
        );
        add(
            "d128 g4 prefill over prefix + decode",
            shape(8, 2, 128),
            16,
            vec![(40, 130), (1, 77), (3, 50), (17, 17)],
        );
        add(
            "d32 g2 mixed",
            shape(4, 2, 32),
            16,
            vec![(20, 90), (1, 33), (5, 5)],
        );
        add(
            "d48 g4 mixed",
            shape(4, 1, 48),
            32,
            vec![(18, 70), (1, 200)],
        );
        add(
            "d64 g12 mixed",
            shape(12, 1, 64),
            16,
            vec![(16, 40), (2, 66)],
        );
        add(
            "d256 g1 mixed",
            shape(2, 2, 256),
            16,
            vec![(20, 60), (1, 90)],
        );
    }
    out
}

pub fn random_tensor(
    rng: &mut ChaCha8Rng,
    dims: &[usize],
    amplitude: f32,
    dtype: DType,
) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| rng.random_range(-amplitude..amplitude))
        .collect();
    Ok(Tensor::from_vec(values, dims, &Device::Cpu)?.to_dtype(dtype)?)
}

/// Through f32, which holds every element type here exactly: candle 0.11's direct fp8 → f64
/// cast did not finish in minutes on a small cache.
fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?)
}

/// The scales a case's cache is read with: an fp8 cache's are other than 1, so that the
/// kernels' folding of them is checked too.
fn cache_scales(cache_dtype: DType) -> KvScales {
    if cache_dtype == DType::F8E4M3 {
        KvScales { k: 1.5, v: 0.25 }
    } else {
        KvScales::UNIT
    }
}

/// The random inputs of a case and its plan. The caches and the new K/V rows are in the cache's
/// dtype (stored values: what is read is them × the scales); q is in the activations'.
struct Inputs {
    plan: AttentionPlan,
    /// The softmax scale times the cache's k_scale.
    scale: f32,
    v_scale: f32,
    k_cache: Tensor,
    v_cache: Tensor,
    k_new: Tensor,
    v_new: Tensor,
    q: Tensor,
}

impl Inputs {
    fn new(case: &KernelCase, seed: u64) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let HeadShape {
            num_heads,
            num_kv_heads,
            head_dim,
        } = case.shape;
        let t = case.batch.num_tokens();
        let slots = case.num_blocks * case.block_size;
        let (dtype, cache) = (case.dtype, case.cache_dtype);
        let cache_dims = [slots, num_kv_heads, head_dim];
        let new_dims = [t, num_kv_heads, head_dim];
        let tensor_cores = super::prefill_supported(dtype, cache, head_dim);
        let layer = LayerKv {
            k: random_tensor(&mut rng, &cache_dims, 3.0, cache)?,
            v: random_tensor(&mut rng, &cache_dims, 1.0, cache)?,
            scales: cache_scales(cache),
        };
        // The new rows as the model's write stores them.
        let (k_new, v_new) = layer.as_stored(
            &random_tensor(&mut rng, &new_dims, 3.0, dtype)?,
            &random_tensor(&mut rng, &new_dims, 1.0, dtype)?,
        )?;
        Ok(Self {
            k_new,
            v_new,
            q: random_tensor(&mut rng, &[t, num_heads, head_dim], 1.0, dtype)?,
            scale: layer.scales.k / (head_dim as f32).sqrt(),
            v_scale: layer.scales.v,
            k_cache: layer.k,
            v_cache: layer.v,
            plan: AttentionPlan::new(&case.batch, case.block_size, case.shape, tensor_cores),
        })
    }

    /// KV writes then attention on `dev`: (k cache, v cache, output).
    fn run(&self, dev: &Device, poison: bool) -> Result<(Tensor, Tensor, Tensor)> {
        let plan = &self.plan;
        let meta = Tensor::new(plan.packed.as_slice(), dev)?;
        // `copy`: fresh storage, so the writes never touch the shared initial cache.
        let kc = self.k_cache.to_device(dev)?.copy()?;
        let vc = self.v_cache.to_device(dev)?.copy()?;
        let slots = plan.ranges.slots.clone();
        WriteKv::apply(&kc, &self.k_new.to_device(dev)?, &meta, slots.clone())?;
        WriteKv::apply(&vc, &self.v_new.to_device(dev)?, &meta, slots)?;
        let op = PagedAttention {
            plan,
            meta: &meta,
            scale: self.scale,
            v_scale: self.v_scale,
            poison,
        };
        let out = op.forward(&self.q.to_device(dev)?, &kc, &vc)?;
        dev.synchronize()?;
        Ok((kc, vc, out))
    }
}

/// Runs one case on the CPU (twins) and on `device`.
pub fn run_case(case: &KernelCase, device: &Device, seed: u64) -> Result<CaseReport> {
    let inputs = Inputs::new(case, seed)?;
    let plan = &inputs.plan;
    let dtype = case.dtype;
    let t = case.batch.num_tokens();
    let run = |dev: &Device, poison: bool| inputs.run(dev, poison);
    let (k_twin, v_twin, out_twin) = run(&Device::Cpu, false)?;
    let (k_dev, v_dev, out_dev) = run(device, true)?;

    let cache_exact = to_f64(&k_twin)? == to_f64(&k_dev)? && to_f64(&v_twin)? == to_f64(&v_dev)?;
    let (a, b) = (to_f64(&out_dev)?, to_f64(&out_twin)?);
    let any_nan = a.iter().any(|x| x.is_nan()) || b.iter().any(|x| x.is_nan());
    let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    let rel_err = (num / den).sqrt();
    let tol = tolerance(super::mma_dtype(dtype, case.cache_dtype));
    Ok(CaseReport {
        name: case.name.clone(),
        tokens: t,
        tiles: plan.num_tiles(),
        partition_size: plan.partition_size,
        max_partitions: plan.max_partitions,
        cache_exact,
        any_nan,
        rel_err,
        tolerance: tol,
        passed: cache_exact && !any_nan && rel_err <= tol,
    })
}

/// Raw little-endian bytes of a tensor's elements.
fn raw_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.to_device(&Device::Cpu)?.flatten_all()?;
    Ok(match t.dtype() {
        DType::F32 => t
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F16 => t
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect(),
        DType::BF16 => t
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect(),
        DType::F8E4M3 => t
            .to_vec1::<float8::F8E4M3>()?
            .iter()
            .map(|x| x.to_bits())
            .collect(),
        other => return Err(crate::Error::Internal(format!("no raw dump for {other:?}"))),
    })
}

/// Writes a case with its twin results for the kernel emulator (kernels/emu/run_case.cpp):
/// a u32 header (layout in run_case.cpp), the packed plan, then q, the caches before the writes,
/// the new K/V rows, the twin's caches after the writes and the twin's output, as raw elements.
pub fn dump_case(case: &KernelCase, seed: u64, path: &std::path::Path) -> Result<()> {
    let inputs = Inputs::new(case, seed)?;
    let plan = &inputs.plan;
    let (k_after, v_after, out) = inputs.run(&Device::Cpu, false)?;
    let (gx, gy, gz) = plan.paged_grid();
    let code = |dtype: DType| -> Result<u32> {
        Ok(match dtype {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::BF16 => 2,
            DType::F8E4M3 => 3,
            other => return Err(crate::Error::Internal(format!("no kernels for {other:?}"))),
        })
    };
    let r = &plan.ranges;
    let mut header: Vec<u32> = vec![
        0x3243_4c54, // "TLC2"
        code(case.dtype)?,
        case.shape.num_heads as u32,
        case.shape.num_kv_heads as u32,
        case.shape.head_dim as u32,
        case.block_size as u32,
        plan.num_tokens as u32,
        (case.num_blocks * case.block_size) as u32,
        plan.max_blocks as u32,
        plan.partition_size as u32,
        plan.max_partitions as u32,
        gx as u32,
        gy as u32,
        gz as u32,
        plan.paged_shared_bytes() as u32,
        plan.num_tiles() as u32,
        plan.packed.len() as u32,
    ];
    for range in [
        &r.slots,
        &r.block_tables,
        &r.token_seq,
        &r.token_visible,
        &r.work_tokens,
        &r.seq_q_start,
        &r.seq_q_len,
        &r.seq_ctx_len,
        &r.tile_seq,
        &r.tile_row0,
    ] {
        header.extend([range.start as u32, range.end as u32]);
    }
    header.extend([
        inputs.scale.to_bits(),
        code(case.cache_dtype)?,
        inputs.v_scale.to_bits(),
    ]);
    let mut bytes: Vec<u8> = header.iter().flat_map(|x| x.to_le_bytes()).collect();
    bytes.extend(plan.packed.iter().flat_map(|x| x.to_le_bytes()));
    for t in [
        &inputs.q,
        &inputs.k_cache,
        &inputs.v_cache,
        &inputs.k_new,
        &inputs.v_new,
        &k_after,
        &v_after,
        &out,
    ] {
        bytes.extend(raw_bytes(t)?);
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Causal attention of every token over its sequence's cache in f64, straight from the batch
/// (`batch::slot_of`), independent of the plan: the reference the twins are tested against.
pub fn reference(
    batch: &BatchInput,
    block_size: usize,
    hs: HeadShape,
    scale: f64,
    q: &[f32],
    k: &[f32],
    v: &[f32],
) -> Vec<f64> {
    let (h, kvh, d) = (hs.num_heads, hs.num_kv_heads, hs.head_dim);
    let group = hs.group();
    let positions = batch.positions();
    let offsets = batch.query_offsets();
    let mut out = vec![0f64; batch.num_tokens() * h * d];
    for (s, chunk) in batch.chunks.iter().enumerate() {
        for t in offsets[s]..offsets[s + 1] {
            let visible = positions[t] as usize + 1;
            let slots: Vec<usize> = (0..visible)
                .map(|p| slot_of(&chunk.block_table, p, block_size) as usize)
                .collect();
            for head in 0..h {
                let kv = head / group;
                let qr = &q[(t * h + head) * d..][..d];
                let scores: Vec<f64> = slots
                    .iter()
                    .map(|&sl| {
                        let kr = &k[(sl * kvh + kv) * d..][..d];
                        qr.iter()
                            .zip(kr)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let l: f64 = e.iter().sum();
                let o = &mut out[(t * h + head) * d..][..d];
                for (j, &sl) in slots.iter().enumerate() {
                    let vr = &v[(sl * kvh + kv) * d..][..d];
                    for (oo, x) in o.iter_mut().zip(vr) {
                        *oo += e[j] / l * *x as f64;
                    }
                }
            }
        }
    }
    out
}
