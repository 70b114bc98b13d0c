//! Launches of the kernels in `kernels/*.cu` (feature `cuda`). The PTX comes from build.rs and is
//! loaded once per device through candle's module cache (`get_or_load_custom_func`); the driver
//! JIT-compiles it for the GPU at first use (and keeps it in its compute cache).

use super::plan::{AttentionPlan, HeadShape, MAX_GROUP};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, WrapErr};
use candle_core::{DType, Layout, Result, Storage, bail};
use half::{bf16, f16};
use std::ops::Range;

const KV_CACHE_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kv_cache.ptx"));

/// The attention units build.rs compiles, by [`super::kernel_name`]: (module name, PTX).
macro_rules! attention_units {
    ($($name:literal),*) => {
        &[$(($name, concat!("tealight_attention_", $name), include_str!(concat!(
            env!("OUT_DIR"),
            "/attention_",
            $name,
            ".ptx"
        )))),*]
    };
}
const ATTENTION_UNITS: &[(&str, &str, &str)] = attention_units!(
    "f32",
    "f32_kvf16",
    "f32_kvbf16",
    "f32_kvfp8",
    "f16",
    "f16_kvbf16",
    "f16_kvfp8",
    "bf16",
    "bf16_kvf16",
    "bf16_kvfp8"
);

const KV_CACHE_MODULE: &str = "tealight_kv_cache";
const THREADS: u32 = 128;

/// (module name, PTX) of the attention kernels named `name` ([`super::kernel_name`]).
fn attention_module(name: &str) -> Result<(&'static str, &'static str)> {
    match ATTENTION_UNITS.iter().find(|(unit, _, _)| *unit == name) {
        Some(&(_, module, ptx)) => Ok((module, ptx)),
        None => bail!("tealight attention kernels: no unit {name}"),
    }
}

/// Fills `n16` 16-bit words of `dst` with NaN bits (0xffff).
fn poison<T>(dev: &CudaDevice, dst: &mut CudaSlice<T>, n16: usize) -> Result<()> {
    let func = dev.get_or_load_custom_func("tl_fill_u16", KV_CACHE_MODULE, KV_CACHE_PTX)?;
    let (value, n) = (0xffffu32, n16 as u64);
    let blocks = n16.div_ceil(256).clamp(1, 4096) as u32;
    let mut b = func.builder();
    b.arg(dst);
    b.arg(&value);
    b.arg(&n);
    // SAFETY: `dst` holds at least `n16` 16-bit words; the kernel writes only those.
    unsafe { b.launch(LaunchConfig::for_num_elems(blocks * 256)) }.w()?;
    Ok(())
}

/// The u32 plan on the device, with a view per range.
struct Plan<'a> {
    all: &'a CudaSlice<u32>,
    base: usize,
}

impl<'a> Plan<'a> {
    fn view(&self, r: &Range<usize>) -> CudaView<'a, u32> {
        self.all.slice(self.base + r.start..self.base + r.end)
    }
}

/// What a KV write launches with: the rows to write, the elements per row (the op checked
/// both), and where the slots are in the plan tensor.
pub(super) struct KvWriteLaunch<'a> {
    pub rows: usize,
    pub row: usize,
    pub slots: &'a Range<usize>,
}

/// What an attention launch reads besides q and the caches.
pub(super) struct AttentionLaunch<'a> {
    pub plan: &'a AttentionPlan,
    /// The plan's packed arrays on the device (`plan.packed`, u32).
    pub meta: &'a candle_core::Tensor,
    /// The softmax scale times the cache's k_scale.
    pub scale: f32,
    /// The cache's v_scale (multiplies the output).
    pub v_scale: f32,
    /// Fill the output with NaN before the kernels run.
    pub poison: bool,
}

pub(super) fn write_kv(
    op: KvWriteLaunch<'_>,
    dst: &mut CudaStorage,
    dst_l: &Layout,
    src: &CudaStorage,
    src_l: &Layout,
    meta: &CudaStorage,
    meta_l: &Layout,
) -> Result<()> {
    let KvWriteLaunch { rows, row, .. } = op;
    let dtype = dst.dtype();
    if src.dtype() != dtype {
        bail!(
            "write-kv: cache is {dtype:?} but the source is {:?}",
            src.dtype()
        )
    }
    if rows == 0 {
        return Ok(());
    }
    let size = dtype.size_in_bytes();
    let row_bytes = row * size;
    let (d_off, s_off) = (dst_l.start_offset() * size, src_l.start_offset() * size);
    let Some(word) = [16usize, 8, 4, 2]
        .into_iter()
        .find(|w| row_bytes % w == 0 && d_off % w == 0 && s_off % w == 0)
    else {
        bail!("write-kv: rows of {row_bytes} bytes cannot be copied in 16-bit words")
    };
    let dev = dst.device().clone();
    let func = dev
        .get_or_load_custom_func(
            &format!("tl_write_kv_w{word}"),
            KV_CACHE_MODULE,
            KV_CACHE_PTX,
        )?
        .into_cuda_function();
    let stream = dev.cuda_stream();
    let plan = Plan {
        all: meta.as_cuda_slice::<u32>()?,
        base: meta_l.start_offset(),
    };
    let slots = plan.view(op.slots);
    let row_words = (row_bytes / word) as u32;
    let rows = rows as u32;
    let cfg = LaunchConfig {
        grid_dim: (rows, 1, 1),
        block_dim: (row_words.div_ceil(32).min(8) * 32, 1, 1),
        shared_mem_bytes: 0,
    };

    #[allow(clippy::too_many_arguments)]
    fn launch<T: CudaDType + DeviceRepr>(
        stream: &CudaStream,
        func: &CudaFunction,
        dst: &mut CudaStorage,
        d0: usize,
        src: &CudaStorage,
        s0: usize,
        slots: &CudaView<u32>,
        row_words: u32,
        rows: u32,
        cfg: LaunchConfig,
    ) -> Result<()> {
        let src = src.as_cuda_slice::<T>()?.slice(s0..);
        let mut dst = dst.as_cuda_slice_mut::<T>()?.slice_mut(d0..);
        let mut b = stream.launch_builder(func);
        b.arg(&mut dst);
        b.arg(&src);
        b.arg(slots);
        b.arg(&row_words);
        b.arg(&rows);
        // SAFETY: every slot is inside the cache (`BatchInput::validate` checked the block
        // tables against the pool); each source row has `row_words` words.
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    }
    let (d0, s0) = (dst_l.start_offset(), src_l.start_offset());
    match dtype {
        DType::F32 => launch::<f32>(
            &stream, &func, dst, d0, src, s0, &slots, row_words, rows, cfg,
        ),
        DType::F16 => launch::<f16>(
            &stream, &func, dst, d0, src, s0, &slots, row_words, rows, cfg,
        ),
        DType::BF16 => launch::<bf16>(
            &stream, &func, dst, d0, src, s0, &slots, row_words, rows, cfg,
        ),
        // An fp8 cache (the `generic` backend's write, an offload tier's restore): bytes.
        DType::F8E4M3 => launch::<float8::F8E4M3>(
            &stream, &func, dst, d0, src, s0, &slots, row_words, rows, cfg,
        ),
        other => bail!("write-kv: unsupported dtype {other:?}"),
    }
}

pub(super) fn paged_attention(
    op: &AttentionLaunch<'_>,
    q: &CudaStorage,
    q_l: &Layout,
    k: &CudaStorage,
    k_l: &Layout,
    v: &CudaStorage,
    v_l: &Layout,
) -> Result<CudaStorage> {
    use float8::F8E4M3 as Fp8;
    if k.dtype() != v.dtype() {
        bail!("paged-attention: the K and V caches must share one dtype")
    }
    let args = (op, q, q_l, k, k_l, v, v_l);
    // The pairs build.rs compiles (`super::kernel_name`).
    match (q.dtype(), k.dtype()) {
        (DType::F32, DType::F32) => run::<f32, f32>(args),
        (DType::F32, DType::F16) => run::<f32, f16>(args),
        (DType::F32, DType::BF16) => run::<f32, bf16>(args),
        (DType::F32, DType::F8E4M3) => run::<f32, Fp8>(args),
        (DType::F16, DType::F16) => run::<f16, f16>(args),
        (DType::F16, DType::BF16) => run::<f16, bf16>(args),
        (DType::F16, DType::F8E4M3) => run::<f16, Fp8>(args),
        (DType::BF16, DType::BF16) => run::<bf16, bf16>(args),
        (DType::BF16, DType::F16) => run::<bf16, f16>(args),
        (DType::BF16, DType::F8E4M3) => run::<bf16, Fp8>(args),
        (a, c) => bail!("paged-attention: no kernels for {a:?} activations over a {c:?} cache"),
    }
}

type Args<'a> = (
    &'a AttentionLaunch<'a>,
    &'a CudaStorage,
    &'a Layout,
    &'a CudaStorage,
    &'a Layout,
    &'a CudaStorage,
    &'a Layout,
);

/// T: the activations (q, out); C: the cache.
fn run<T: CudaDType + DeviceRepr, C: CudaDType + DeviceRepr>(args: Args) -> Result<CudaStorage> {
    let (op, q, q_l, k, k_l, v, v_l) = args;
    let plan = op.plan;
    let HeadShape {
        num_heads,
        num_kv_heads,
        head_dim,
    } = plan.shape;
    let (dtype, cache) = (q.dtype(), k.dtype());
    let suffix = super::kernel_name(dtype, cache).expect("checked pair");
    if !super::attention_supported(dtype, cache, head_dim) {
        bail!("paged-attention: no kernel for {suffix} with head_dim {head_dim}")
    }
    let size = dtype.size_in_bytes();
    for (name, l, bytes) in [
        ("q", q_l, size),
        ("k cache", k_l, cache.size_in_bytes()),
        ("v cache", v_l, cache.size_in_bytes()),
    ] {
        if (l.start_offset() * bytes) % 16 != 0 {
            bail!("paged-attention: {name} does not start on a 16-byte boundary")
        }
    }
    let dev = q.device().clone();
    let (module, ptx) = attention_module(&suffix)?;
    let q = q.as_cuda_slice::<T>()?.slice(q_l.start_offset()..);
    let k = k.as_cuda_slice::<C>()?.slice(k_l.start_offset()..);
    let v = v.as_cuda_slice::<C>()?.slice(v_l.start_offset()..);
    let (meta_storage, meta_l) = op.meta.storage_and_layout();
    let Storage::Cuda(meta) = &*meta_storage else {
        bail!("paged-attention: the plan is not on the GPU")
    };
    let meta = Plan {
        all: meta.as_cuda_slice::<u32>()?,
        base: meta_l.start_offset(),
    };
    let r = &plan.ranges;

    let n_out = plan.num_tokens * num_heads * head_dim;
    // SAFETY: every element is written below (the plan gives each token to exactly one kernel);
    // with `poison` a NaN fill comes first so that an unwritten row would show.
    let mut out = unsafe { dev.alloc::<T>(n_out) }?;
    if op.poison {
        poison(&dev, &mut out, n_out * size / 2)?;
    }

    let (max_blocks, block_size) = (plan.max_blocks as u32, plan.block_size as u32);
    let (heads, kv_heads, hd) = (num_heads as u32, num_kv_heads as u32, head_dim as u32);
    let (gx, gy, gz) = plan.paged_grid();
    if gx > 0 {
        let func = dev.get_or_load_custom_func(
            &format!("tl_paged_attention_{suffix}_d{head_dim}"),
            module,
            ptx,
        )?;
        let split = plan.max_partitions > 1;
        let items = gx * gy * gz;
        // SAFETY: written by the partition CTAs before the reduce kernel reads them (same
        // stream); a CTA past its token's partitions writes nothing and nothing reads its slot.
        let part_acc = if split {
            Some(unsafe { dev.alloc::<f32>(items * MAX_GROUP * head_dim) }?)
        } else {
            None
        };
        let part_ml = if split {
            Some(unsafe { dev.alloc::<f32>(items * MAX_GROUP * 2) }?)
        } else {
            None
        };
        let null = 0u64;
        let (work, token_seq, visible, tables) = (
            meta.view(&r.work_tokens),
            meta.view(&r.token_seq),
            meta.view(&r.token_visible),
            meta.view(&r.block_tables),
        );
        let (psize, pmax) = (plan.partition_size as u32, plan.max_partitions as u32);
        let (scale, v_scale) = (op.scale, op.v_scale);
        {
            let mut b = func.builder();
            b.arg(&mut out);
            match (&part_acc, &part_ml) {
                (Some(acc), Some(ml)) => {
                    b.arg(acc);
                    b.arg(ml);
                }
                _ => {
                    b.arg(&null);
                    b.arg(&null);
                }
            }
            b.arg(&q);
            b.arg(&k);
            b.arg(&v);
            b.arg(&work);
            b.arg(&token_seq);
            b.arg(&visible);
            b.arg(&tables);
            b.arg(&max_blocks);
            b.arg(&block_size);
            b.arg(&heads);
            b.arg(&kv_heads);
            b.arg(&psize);
            b.arg(&pmax);
            b.arg(&scale);
            b.arg(&v_scale);
            let cfg = LaunchConfig {
                grid_dim: (gx as u32, gy as u32, gz as u32),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: plan.paged_shared_bytes() as u32,
            };
            // SAFETY: the arguments match `tl_paged_attention_*` in kernels/attention.cu; all
            // indices come from the plan, which `BatchInput::validate` bounded by the pool.
            unsafe { b.launch(cfg) }.w()?;
        }
        if let (Some(acc), Some(ml)) = (&part_acc, &part_ml) {
            let reduce =
                dev.get_or_load_custom_func(&format!("tl_paged_reduce_{suffix}"), module, ptx)?;
            let mut b = reduce.builder();
            b.arg(&mut out);
            b.arg(acc);
            b.arg(ml);
            b.arg(&work);
            b.arg(&visible);
            b.arg(&heads);
            b.arg(&kv_heads);
            b.arg(&hd);
            b.arg(&psize);
            b.arg(&pmax);
            b.arg(&v_scale);
            let cfg = LaunchConfig {
                grid_dim: (gx as u32, gy as u32, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: as above; the grid matches the partition kernel's first two dimensions.
            unsafe { b.launch(cfg) }.w()?;
        }
    }

    let tiles = plan.num_tiles();
    if tiles > 0 {
        if !super::prefill_supported(dtype, cache, head_dim) {
            bail!("paged-attention: the plan has prefill tiles but no prefill kernel applies")
        }
        let func = dev.get_or_load_custom_func(
            &format!("tl_prefill_attention_{suffix}_d{head_dim}"),
            module,
            ptx,
        )?;
        let (tile_seq, tile_row0, q_start, q_len, ctx_len, tables) = (
            meta.view(&r.tile_seq),
            meta.view(&r.tile_row0),
            meta.view(&r.seq_q_start),
            meta.view(&r.seq_q_len),
            meta.view(&r.seq_ctx_len),
            meta.view(&r.block_tables),
        );
        let scale_log2 = op.scale * std::f32::consts::LOG2_E;
        let mut b = func.builder();
        b.arg(&mut out);
        b.arg(&q);
        b.arg(&k);
        b.arg(&v);
        b.arg(&tile_seq);
        b.arg(&tile_row0);
        b.arg(&q_start);
        b.arg(&q_len);
        b.arg(&ctx_len);
        b.arg(&tables);
        b.arg(&max_blocks);
        b.arg(&block_size);
        b.arg(&heads);
        b.arg(&kv_heads);
        b.arg(&scale_log2);
        b.arg(&op.v_scale);
        let cfg = LaunchConfig {
            grid_dim: (tiles as u32, kv_heads, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the arguments match `tl_prefill_attention_*`; indices come from the plan.
        unsafe { b.launch(cfg) }.w()?;
    }
    drop(meta_storage);
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}
