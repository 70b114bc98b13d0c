//! `tealight debug …` (hidden): entry points for the GPU checks in scripts/gpu/, which run on a
//! machine with no Rust toolchain, so they live in the one binary that is carried there.
//!
//! - `debug logits`: teacher-forced logits of token-id prompts (prefill in chunks over the
//!   growing cache, then one decode step per position), written as `.npy` for
//!   scripts/gpu/compare_logits.py.
//! - `debug kernels`: each own CUDA kernel against its CPU twin ([`crate::kernels::check`]), optionally
//!   timing the attention backends.
//! - `debug streams`: N concurrent greedy streams through the engine, each compared with its
//!   solo run.
//! - `debug preflight`: a few seconds of candle's kernels on a fresh GPU ([`preflight`]).

use crate::device::{DeviceChoice, select_device};
use crate::engine::{EngineConfig, EngineHandle, Event, GenerationRequest};
use crate::error::{Error, Result};
pub mod backend_timing;
mod gguf;
mod npy;
mod preflight;

use crate::kernels::check;
use crate::model::loader::{DtypeChoice, load_source};
use crate::model::{AttentionBackend, BatchInput, KvCache, SequenceChunk};
use crate::sampling::SamplingParams;
use crate::weights::ModelSource;
use crate::weights::Quantization;
use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Args)]
pub struct DebugArgs {
    #[command(subcommand)]
    pub command: DebugCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DebugCommand {
    /// Teacher-forced logits of token-id prompts, as .npy.
    Logits(LogitsArgs),
    /// Own CUDA kernels against their CPU twins (and, with --bench, attention timings).
    Kernels(KernelsArgs),
    /// Concurrent greedy streams through the engine against their solo runs.
    Streams(StreamsArgs),
    /// Writes a checkpoint directory as one GGUF file (tests, fixtures, benchmarks).
    Gguf(gguf::GgufArgs),
    /// Opens the device and runs each kind of kernel once against the CPU; fails fast.
    Preflight(preflight::PreflightArgs),
}

/// Model, device and backend flags shared by the subcommands that load a model.
#[derive(Debug, Clone, Args)]
pub struct ModelFlags {
    /// Checkpoint directory or GGUF file.
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    #[arg(long, value_enum, default_value = "auto")]
    pub dtype: DtypeChoice,
    /// Quantize a dense checkpoint's projection weights as they load, as `serve` does.
    #[arg(long, value_enum, value_name = "q8_0|q4_k|fp8")]
    pub quantization: Option<Quantization>,
    #[arg(long, value_enum, default_value = "auto")]
    pub attention_backend: AttentionBackend,
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
}

#[derive(Debug, Clone, Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelFlags,
    /// JSON file: a list of prompts, each a list of token ids. All run together, one batch per step.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Tokens of each prompt fed as prefill chunks; the rest are fed one per decode step.
    #[arg(long, default_value_t = 64)]
    pub prefill: usize,
    /// Prefill chunk size.
    #[arg(long, default_value_t = 32)]
    pub chunk: usize,
    /// Output prefix: PREFIX.npy (f32 [rows, vocab]) and PREFIX.json ({"rows": [[prompt, position]]}).
    #[arg(long)]
    pub out: PathBuf,
    /// The KV cache's dtype, as `serve --kv-cache-dtype` (here unchecked: a backend that cannot
    /// read it fails at the first step).
    #[arg(
        long,
        default_value = "auto",
        value_name = "auto|float32|bfloat16|float16|fp8"
    )]
    pub kv_cache_dtype: crate::cli::serve::KvCacheDtype,
}

#[derive(Debug, Clone, Args)]
pub struct KernelsArgs {
    #[arg(long, default_value = "cuda")]
    pub device: DeviceChoice,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also time one layer's attention of Qwen3-4B-shaped bf16 steps: generic, cuda, and cuda over an fp8 KV cache.
    #[arg(long)]
    pub bench: bool,
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// The small cases (a few CTAs each) instead of the full list.
    #[arg(long)]
    pub small: bool,
    /// Only cases whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Write each case with its twin results to DIR/case-NN.bin (for kernels/emu) instead of
    /// running it.
    #[arg(long, value_name = "DIR")]
    pub dump: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StreamsArgs {
    #[command(flatten)]
    pub model: ModelFlags,
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 16)]
    pub min_prompt: usize,
    #[arg(long, default_value_t = 300)]
    pub max_prompt: usize,
    #[arg(long, default_value_t = 2048)]
    pub max_num_batched_tokens: usize,
    /// Streams allowed to differ from their solo run before the check fails.
    #[arg(long, default_value_t = 0)]
    pub allow_mismatch: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(args: DebugArgs) -> Result<()> {
    match args.command {
        DebugCommand::Logits(a) => logits(a),
        DebugCommand::Kernels(a) => kernels(a),
        DebugCommand::Streams(a) => streams(a),
        DebugCommand::Gguf(a) => gguf::run(a),
        DebugCommand::Preflight(a) => preflight::run(a),
    }
}

struct Loaded {
    model: crate::model::Qwen3Model,
    source: ModelSource,
    backend: AttentionBackend,
}

fn load(flags: &ModelFlags) -> Result<Loaded> {
    let device = select_device(flags.device)?;
    let source = ModelSource::resolve(&flags.model)?;
    let model = load_source(&source, &device, flags.dtype, flags.quantization)?;
    let backend = flags.attention_backend.resolve(&device)?;
    eprintln!(
        "debug: {} on {:?}, {:?}, attention {:?}",
        flags.model,
        device.location(),
        model.dtype(),
        backend
    );
    Ok(Loaded {
        model,
        source,
        backend,
    })
}

fn logits(args: LogitsArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.prompts)?;
    let prompts: Vec<Vec<u32>> = serde_json::from_str(&text)
        .map_err(|e| Error::config(format!("--prompts {}: {e}", args.prompts.display())))?;
    if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) || args.chunk == 0 {
        return Err(Error::config(
            "need non-empty prompts and a positive --chunk",
        ));
    }
    let Loaded { model, backend, .. } = load(&args.model)?;
    let bs = args.model.block_size;
    // Block j of prompt i is j * n + i: every table is scattered across the pool.
    let n = prompts.len();
    let per = prompts.iter().map(|p| p.len().div_ceil(bs)).max().unwrap();
    let kv_dtype = args.kv_cache_dtype.dtype().unwrap_or(model.dtype());
    let cache = KvCache::new(model.config(), per * n, bs, kv_dtype, model.device())?;
    let tables: Vec<Vec<u32>> = (0..n)
        .map(|i| (0..per).map(|j| (j * n + i) as u32).collect())
        .collect();
    let mut fed = vec![0usize; n];
    let mut rows: Vec<(usize, usize)> = Vec::new();
    let mut values: Vec<f32> = Vec::new();
    let vocab = model.config().vocab_size;
    let started = Instant::now();
    let mut steps = 0;
    loop {
        let mut batch = BatchInput::default();
        let mut order = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            if fed[i] >= p.len() {
                continue;
            }
            let take = if fed[i] < args.prefill {
                args.chunk.min(args.prefill - fed[i]).min(p.len() - fed[i])
            } else {
                1
            };
            batch.chunks.push(SequenceChunk {
                num_query_tokens: take,
                context_len: fed[i] + take,
                block_table: tables[i].clone(),
                logits_tokens: 1,
            });
            batch.token_ids.extend_from_slice(&p[fed[i]..fed[i] + take]);
            order.push((i, take));
        }
        if order.is_empty() {
            break;
        }
        let logits = model.forward(&batch, &cache, backend)?.to_vec2::<f32>()?;
        steps += 1;
        for ((i, take), row) in order.into_iter().zip(logits) {
            fed[i] += take;
            rows.push((i, fed[i] - 1));
            values.extend_from_slice(&row);
        }
    }
    eprintln!(
        "debug logits: {} rows in {steps} steps, {:.2} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    let npy = args.out.with_extension("npy");
    npy::write_f32_matrix(&npy, rows.len(), vocab, &values)?;
    let index =
        serde_json::json!({ "rows": rows, "backend": format!("{backend:?}").to_lowercase() });
    std::fs::write(args.out.with_extension("json"), index.to_string())?;
    eprintln!("debug logits: wrote {}", npy.display());
    Ok(())
}

fn kernels(args: KernelsArgs) -> Result<()> {
    let cases: Vec<check::KernelCase> = if args.small {
        check::small_cases(args.seed)
    } else {
        check::cases(args.seed)
    }
    .into_iter()
    .filter(|c| {
        args.only
            .as_ref()
            .is_none_or(|o| c.name.contains(o.as_str()))
    })
    .collect();
    if let Some(dir) = &args.dump {
        std::fs::create_dir_all(dir)?;
        for (i, case) in cases.iter().enumerate() {
            let path = dir.join(format!("case-{i:02}.bin"));
            check::dump_case(case, args.seed * 1000 + i as u64, &path)?;
            println!("{}\t{}", path.display(), case.name);
        }
        return Ok(());
    }
    let device = select_device(args.device)?;
    println!(
        "{:<44} {:>6} {:>5} {:>9} {:>6} {:>10} {:>8}  result",
        "case", "tokens", "tiles", "partition", "cache", "rel_err", "tol"
    );
    let mut failed = 0;
    for (i, case) in cases.iter().enumerate() {
        let report = check::run_case(case, &device, args.seed * 1000 + i as u64)?;
        println!(
            "{:<44} {:>6} {:>5} {:>5}x{:<3} {:>6} {:>10.2e} {:>8.0e}  {}",
            report.name,
            report.tokens,
            report.tiles,
            report.partition_size,
            report.max_partitions,
            if report.cache_exact { "exact" } else { "DIFF" },
            report.rel_err,
            report.tolerance,
            if report.passed {
                "ok"
            } else if report.any_nan {
                "FAIL (NaN: unwritten output)"
            } else {
                "FAIL"
            }
        );
        failed += usize::from(!report.passed);
    }
    if args.bench {
        let timings = backend_timing::time_backends(
            &device,
            &[
                (AttentionBackend::Generic, candle_core::DType::BF16),
                (AttentionBackend::Cuda, candle_core::DType::BF16),
                (AttentionBackend::Cuda, candle_core::DType::F8E4M3),
            ],
            args.iters,
        )?;
        println!("\none layer's attention (KV write + attention), Qwen3-4B shape, bf16:");
        println!(
            "{:<24} {:>8} {:>6} {:>12} {:>10}",
            "step", "backend", "kv", "median_us", "KV_GB/s"
        );
        for t in timings {
            println!(
                "{:<24} {:>8} {:>6} {:>12.1} {:>10.1}",
                t.name,
                format!("{:?}", t.backend).to_lowercase(),
                format!("{:?}", t.kv_dtype).to_lowercase(),
                t.median_us,
                t.kv_gbps
            );
        }
    }
    if failed > 0 {
        return Err(Error::Internal(format!(
            "{failed} kernel case(s) differ from their CPU twins"
        )));
    }
    println!("all kernel cases match their CPU twins");
    Ok(())
}

/// Greedy tokens of one request.
fn collect(mut stream: crate::engine::EventStream) -> Result<Vec<u32>> {
    let mut tokens = Vec::new();
    loop {
        match stream.blocking_recv() {
            Some(Event::Delta { token_ids, .. }) => tokens.extend(token_ids),
            Some(Event::Finished { .. }) => return Ok(tokens),
            Some(Event::Error(e)) => return Err(Error::Internal(format!("engine: {e}"))),
            Some(Event::Pooled(_)) => return Err(Error::Internal("a pooled result".into())),
            None => return Err(Error::Internal("engine stopped".into())),
        }
    }
}

fn streams(args: StreamsArgs) -> Result<()> {
    let Loaded {
        model,
        source,
        backend,
    } = load(&args.model)?;
    let tokenizer = Arc::new(source.tokenizer()?);
    let cfg = model.config().clone();
    let dtype_size = model.dtype().size_in_bytes();
    let bs = args.model.block_size;
    let per_seq = (args.max_prompt + args.max_tokens).div_ceil(bs) + 1;
    let num_blocks = per_seq * args.streams + 16;
    let mut config = EngineConfig::for_model(
        &cfg,
        num_blocks * bs * cfg.kv_bytes_per_token(dtype_size),
        dtype_size,
    );
    config.block_size = bs;
    config.num_blocks = num_blocks;
    config.max_model_len = (args.max_prompt + args.max_tokens).min(cfg.max_position_embeddings);
    config.max_num_seqs = args.streams.max(1);
    config.max_num_batched_tokens = args.max_num_batched_tokens;
    config.max_waiting = args.streams * 2;
    // Shared prefixes would let concurrent runs reuse cached blocks the solo runs computed.
    config.enable_prefix_caching = false;
    config.attention_backend = backend;
    let dtype = model.dtype();
    let engine = EngineHandle::start(model, tokenizer, Vec::new(), config)?;

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let requests: Vec<GenerationRequest> = (0..args.streams)
        .map(|_| {
            let len = rng.random_range(args.min_prompt..=args.max_prompt);
            let ids: Vec<u32> = (0..len).map(|_| rng.random_range(0..150_000)).collect();
            let mut r = GenerationRequest::new(ids, SamplingParams::greedy());
            r.max_tokens = Some(args.max_tokens);
            r.ignore_eos = true;
            r
        })
        .collect();

    let started = Instant::now();
    let solo: Vec<Vec<u32>> = requests
        .iter()
        .map(|r| collect(engine.submit(r.clone())?))
        .collect::<Result<_>>()?;
    let solo_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let handles: Vec<_> = requests
        .iter()
        .map(|r| engine.submit(r.clone()))
        .collect::<Result<_>>()?;
    let together: Vec<Vec<u32>> = handles.into_iter().map(collect).collect::<Result<_>>()?;
    let together_s = started.elapsed().as_secs_f64();
    engine.shutdown(Duration::from_secs(5));

    let mut mismatches = 0;
    for (i, (a, b)) in solo.iter().zip(&together).enumerate() {
        if a != b {
            mismatches += 1;
            let at = a
                .iter()
                .zip(b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            println!(
                "stream {i}: differs from its solo run at token {at} of {} (prompt {} tokens)",
                a.len(),
                requests[i].prompt_ids.len()
            );
        }
    }
    let tokens: usize = together.iter().map(Vec::len).sum();
    println!(
        "streams: {} concurrent greedy streams ({dtype:?}, attention {backend:?}): {} identical to \
         their solo runs, {mismatches} differ; solo {solo_s:.1} s, concurrent {together_s:.1} s \
         ({:.0} tok/s)",
        args.streams,
        args.streams - mismatches,
        tokens as f64 / together_s
    );
    if mismatches > args.allow_mismatch {
        return Err(Error::Internal(format!(
            "{mismatches} of {} streams differ from their solo runs (allowed {})",
            args.streams, args.allow_mismatch
        )));
    }
    Ok(())
}
