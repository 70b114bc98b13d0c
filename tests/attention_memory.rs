//! Peak temporary memory of the generic attention backend in a large mixed step, measured by a
//! counting global allocator (this file is its own test binary, with one test, so nothing else
//! allocates meanwhile).
//!
//! The step is what `tealight bench` at concurrency 64 with 1024-token prompts produces: 63
//! decodes at ~1.1k context and one 1024-token prefill chunk at 1.1k context, at the Qwen3-0.6B
//! shape (16 query heads, 8 KV heads, head_dim 128, block size 16), f32 as on the CPU. One layer
//! is measured: every layer makes the same call and frees its temporaries before the next, and
//! the step's metadata (built once for all layers) is made inside the measurement.
//!
//! The bound, derived from the code (w = 4 bytes, T tokens, U touched KV blocks, b block size,
//! H·d = query row, R = kv_heads · head_dim = KV row):
//! - one problem of the step's plan at a time (`generic::tiling`, within `TileBudget::default()`):
//!   its gathered K or V (`sequences × keys × R` elements, w each), two f32 score matrices
//!   (`sequences × H × query rows × keys` each) and a u8 mask as large as one; the bound takes
//!   the largest problem of the plan;
//! - terms linear in the step, each at most a few copies: the query rows and the outputs (the
//!   pieces, their concatenation, the reordering: ≤ 8 · T · H·d · w), the KV write (index,
//!   old blocks, the concatenation with the new rows, the new blocks: ≤ 8 · (U·b + T) · R · w),
//!   and the gather indices of the problems (≤ 2 · (Σ keys) · (R/d + 1) · 4).
//!
//! Nothing in it grows with the number of sequences beyond the tokens they bring. The
//! implementation before this bound padded the step to `sequences × longest chunk × longest
//! context`: 4.6 GB of f32 scores for this step alone (and 288 MB of host mask), so the
//! allocator refuses anything past a hard ceiling and the test aborts there instead of taking
//! the machine's memory.

use candle_core::{DType, Device, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use tealight::model::attention::generic::tiling::problems;
use tealight::model::attention::generic::{Problem, TileBudget};
use tealight::model::attention::{AttentionBackend, AttentionMetadata};
use tealight::model::kv_cache::LayerKv;
use tealight::model::{BatchInput, SequenceChunk};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static CEILING: AtomicUsize = AtomicUsize::new(usize::MAX);

impl Counting {
    /// Accounts for `size` more bytes; false (and nothing accounted) past the ceiling.
    fn take(size: usize) -> bool {
        let live = LIVE.fetch_add(size, SeqCst) + size;
        if live > CEILING.load(SeqCst) {
            LIVE.fetch_sub(size, SeqCst);
            let mut line = [0u8; 160];
            let mut cursor = std::io::Cursor::new(&mut line[..]);
            let _ = writeln!(
                cursor,
                "attention_memory: refused {size} bytes with {} live: past the ceiling",
                live - size
            );
            let n = cursor.position() as usize;
            let _ = std::io::stderr().write_all(&line[..n]);
            return false;
        }
        PEAK.fetch_max(live, SeqCst);
        true
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::take(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), SeqCst);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::take(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Self::take(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                LIVE.fetch_sub(new_size - old, SeqCst);
            }
        } else if new_size < old {
            LIVE.fetch_sub(old - new_size, SeqCst);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const HEADS: usize = 16;
const KV_HEADS: usize = 8;
const HEAD_DIM: usize = 128;
const BLOCK: usize = 16;
const CHUNK: usize = 1024;
const CHUNK_CONTEXT: usize = 1100;
const CACHE_BLOCKS: usize = 4_900;
/// Far above the bound, far below what the padded implementation asks for.
const CEILING_BYTES: usize = 3 << 30;

/// `decodes` sequences decoding at contexts spread around `context`, then one prefill chunk of
/// `CHUNK` tokens ending at `CHUNK_CONTEXT`; each block table a reversed run of the pool.
fn step(decodes: usize, context: usize) -> BatchInput {
    let mut contexts: Vec<(usize, usize)> = (0..decodes)
        .map(|i| (1, context - 50 + (i * 37) % 100))
        .collect();
    contexts.push((CHUNK, CHUNK_CONTEXT));
    let mut next = 0u32;
    let mut chunks = Vec::new();
    for (q, ctx) in contexts {
        let blocks = ctx.div_ceil(BLOCK) as u32;
        // Reversed runs: neighbouring positions sit in non-adjacent blocks.
        chunks.push(SequenceChunk {
            num_query_tokens: q,
            context_len: ctx,
            block_table: (next..next + blocks).rev().collect(),
            logits_tokens: 1,
        });
        next += blocks;
    }
    assert!(next as usize <= CACHE_BLOCKS, "pool too small: {next}");
    let tokens = chunks.iter().map(|c| c.num_query_tokens).sum();
    BatchInput {
        token_ids: vec![0; tokens],
        chunks,
    }
}

/// The documented bound for `batch` (see the file's header).
fn bound(batch: &BatchInput) -> usize {
    let w = DType::F32.size_in_bytes();
    let t = batch.num_tokens();
    let query_row = HEADS * HEAD_DIM;
    let kv_row = KV_HEADS * HEAD_DIM;
    let largest_problem = problems(batch, HEADS, kv_row, TileBudget::default())
        .iter()
        .map(|p| {
            let (sequences, rows, keys) = match p {
                Problem::Decodes(members) => {
                    let keys = members.iter().map(|&s| batch.chunks[s].context_len);
                    (members.len(), 1, keys.max().unwrap_or(0))
                }
                Problem::Tile { chunk, start, len } => {
                    let c = &batch.chunks[*chunk];
                    (1, *len, c.first_position() + start + len)
                }
            };
            sequences * keys * kv_row * w + sequences * HEADS * rows * keys * (2 * 4 + 1)
        })
        .max()
        .unwrap_or(0);
    let touched: std::collections::HashSet<u32> = batch
        .slot_mapping(BLOCK)
        .iter()
        .map(|s| s / BLOCK as u32)
        .collect();
    let keys: usize = batch.chunks.iter().map(|c| c.context_len).sum();
    let linear = 8 * t * query_row * w
        + 8 * (touched.len() * BLOCK + t) * kv_row * w
        + 2 * keys * (KV_HEADS + 1) * 4;
    largest_problem + linear
}

fn peak_of_one_layer(batch: &BatchInput, cache: &LayerKv) -> usize {
    let t = batch.num_tokens();
    let device = Device::Cpu;
    let q = Tensor::randn(0f32, 1.0, (t, HEADS, HEAD_DIM), &device).unwrap();
    let k = Tensor::randn(0f32, 1.0, (t, KV_HEADS, HEAD_DIM), &device).unwrap();
    let v = Tensor::randn(0f32, 1.0, (t, KV_HEADS, HEAD_DIM), &device).unwrap();
    let before = LIVE.load(SeqCst);
    PEAK.store(before, SeqCst);
    CEILING.store(before + CEILING_BYTES, SeqCst);
    let meta = AttentionMetadata::new(
        AttentionBackend::Generic,
        batch,
        BLOCK,
        (KV_HEADS, HEAD_DIM),
        &device,
    )
    .unwrap();
    let out = meta
        .forward(&q, &k, &v, cache, 1.0 / (HEAD_DIM as f64).sqrt())
        .unwrap();
    assert_eq!(out.dims(), &[t, HEADS * HEAD_DIM]);
    assert!(
        out.sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .is_finite(),
        "attention output is not finite"
    );
    CEILING.store(usize::MAX, SeqCst);
    PEAK.load(SeqCst) - before
}

#[test]
fn a_step_of_many_sequences_stays_within_the_tile_bound() {
    let device = Device::Cpu;
    let slots = CACHE_BLOCKS * BLOCK;
    let cache = LayerKv {
        k: Tensor::randn(0f32, 1.0, (slots, KV_HEADS, HEAD_DIM), &device).unwrap(),
        v: Tensor::randn(0f32, 1.0, (slots, KV_HEADS, HEAD_DIM), &device).unwrap(),
        scales: Default::default(),
    };
    const MIB: usize = 1 << 20;
    for (decodes, context) in [(63, 1100), (126, 550)] {
        let batch = step(decodes, context);
        let peak = peak_of_one_layer(&batch, &cache);
        let bound = bound(&batch);
        println!(
            "{decodes} decodes at ~{context} + one {CHUNK}-token chunk: peak {} MiB, bound {} MiB",
            peak / MIB,
            bound / MIB
        );
        assert!(
            peak <= bound,
            "{decodes} decodes: peak {} MiB over the bound {} MiB",
            peak / MIB,
            bound / MIB
        );
    }
}
