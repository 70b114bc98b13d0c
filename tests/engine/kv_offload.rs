//! The KV offload tiers in the engine: a session's blocks evicted by another session come
//! back from the host or disk tier and give exactly the tokens (and, within float noise of a
//! different step shape, the logprobs) of a run that never evicted them; a restarted engine
//! finds its disk tier again (what was evicted, and the prefix cache it saved as it stopped); damaged or truncated files are detected, deleted and recomputed.

use std::path::{Path, PathBuf};

use crate::common::start_engine;
use tealight::engine::block_digest::BlockDigest;
use tealight::engine::kv_offload::KvOffloadConfig;
use tealight::engine::{EngineConfig, EngineHandle, Event, GenerationRequest, Usage};
use tealight::sampling::SamplingParams;

const BLOCK: usize = 16;

struct Turn {
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    usage: Usage,
}

fn turn(engine: &EngineHandle, prompt: &[u32]) -> Turn {
    let mut params = SamplingParams::greedy();
    params.logprobs = Some(3);
    let mut request = GenerationRequest::new(prompt.to_vec(), params);
    request.max_tokens = Some(8);
    request.ignore_eos = true;
    let mut stream = engine.submit(request).unwrap();
    let (mut tokens, mut logprobs) = (Vec::new(), Vec::new());
    loop {
        match stream.blocking_recv().expect("a finish") {
            Event::Delta {
                token_ids,
                logprobs: lp,
                ..
            } => {
                tokens.extend(token_ids);
                logprobs.extend(lp.iter().flat_map(|l| l.top.iter().map(|&(_, p)| p)));
            }
            Event::Finished { usage, .. } => {
                return Turn {
                    tokens,
                    logprobs,
                    usage,
                };
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Prompt tokens of a 300-token session a hit may cover: 18 full blocks (never the block of the
/// last token).
const REUSABLE: usize = 18 * BLOCK;

/// Two sessions of 300 tokens each; the pool (24 blocks) holds one.
fn sessions() -> (Vec<u32>, Vec<u32>) {
    let tok = tealight::tokenizer::Tokenizer::from_file(
        crate::common::tiny_model_dir().join("tokenizer.json"),
    )
    .unwrap();
    let a = "The archive keeps every letter the harbour master wrote. ".repeat(30);
    let b = "Rain fell on the orchard while the beekeeper counted hives. ".repeat(28);
    let mut a = tok.encode(&a, false).unwrap();
    let mut b = tok.encode(&b, false).unwrap();
    a.truncate(300);
    b.truncate(300);
    assert_eq!((a.len(), b.len()), (300, 300));
    (a, b)
}

fn small_pool(offload: KvOffloadConfig) -> impl FnOnce(&mut EngineConfig) {
    move |c| {
        c.num_blocks = 24;
        c.max_model_len = 24 * BLOCK;
        c.max_num_batched_tokens = 128;
        c.kv_offload = offload;
    }
}

fn disk(dir: &Path) -> KvOffloadConfig {
    KvOffloadConfig {
        host_bytes: 0,
        dir: Some(dir.to_path_buf()),
        dir_bytes: 1 << 30,
        model_identity: BlockDigest([7; 32]),
    }
}

fn tempdir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tealight-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The reference: session A on a pool that never evicts.
fn reference(a: &[u32]) -> Turn {
    let (engine, _) = start_engine(|_| {});
    turn(&engine, a)
}

fn assert_same(got: &Turn, want: &Turn, what: &str) {
    assert_eq!(got.tokens, want.tokens, "{what}: tokens");
    assert_eq!(got.logprobs.len(), want.logprobs.len(), "{what}: logprobs");
    let worst = got
        .logprobs
        .iter()
        .zip(&want.logprobs)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "{what}: logprobs differ by {worst}");
}

/// Every stored block file under the tier's directory.
fn block_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for namespace in std::fs::read_dir(dir).unwrap() {
        for file in std::fs::read_dir(namespace.unwrap().path()).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files.sort();
    files
}

#[test]
fn an_evicted_session_comes_back_from_disk_with_the_same_tokens() {
    let (a, b) = sessions();
    let want = reference(&a);
    let dir = tempdir("kv-disk-tier");
    {
        let (engine, _) = start_engine(small_pool(disk(&dir)));
        let metrics = engine.metrics();
        assert_same(&turn(&engine, &a), &want, "first turn");
        let _ = turn(&engine, &b); // evicts A's blocks: they go to disk
        let stored = metrics.kv_offload_stored.get();
        assert!(stored >= 15, "A's blocks were saved ({stored})");
        let back = turn(&engine, &a);
        // B took 14 of A's 18 blocks; the 4 left in the pool and the 14 restored are hits.
        let restored = metrics.kv_offload_restored.get() as usize;
        assert!(restored >= 10, "A's blocks were restored ({restored})");
        assert_eq!(back.usage.cached_tokens, REUSABLE, "{:?}", back.usage);
        assert_same(&back, &want, "restored turn");
        assert_eq!(metrics.kv_offload_rejected.get(), 0);
    }

    // A restarted engine (same model identity and layout) finds the blocks on disk.
    {
        let (engine, _) = start_engine(small_pool(disk(&dir)));
        let back = turn(&engine, &a);
        // The blocks B evicted, and those the pool still held when the engine stopped.
        assert_eq!(engine.metrics().kv_offload_restored.get(), 18);
        assert_eq!(back.usage.cached_tokens, REUSABLE, "{:?}", back.usage);
        assert_same(&back, &want, "after a restart");
    }

    // Another model identity never reads them.
    {
        let mut other = disk(&dir);
        other.model_identity = BlockDigest([8; 32]);
        let (engine, _) = start_engine(small_pool(other));
        let back = turn(&engine, &a);
        assert_eq!(engine.metrics().kv_offload_restored.get(), 0);
        assert_eq!(back.usage.cached_tokens, 0);
        assert_same(&back, &want, "another model");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Fills the disk tier with A's blocks (B evicts them) from a fresh engine.
fn fill_tier(dir: &Path, a: &[u32], b: &[u32]) -> Vec<PathBuf> {
    let (engine, _) = start_engine(small_pool(disk(dir)));
    let _ = turn(&engine, a);
    let _ = turn(&engine, b);
    drop(engine);
    let files = block_files(dir);
    assert!(
        files.len() >= 10,
        "A's blocks are on disk ({})",
        files.len()
    );
    files
}

#[test]
fn damaged_and_truncated_files_are_recomputed_never_read() {
    let (a, b) = sessions();
    let want = reference(&a);
    let dir = tempdir("kv-disk-damaged");

    // Every file damaged: a flipped payload byte or a flipped token, checksums left as they were.
    let files = fill_tier(&dir, &a, &b);
    for (i, file) in files.iter().enumerate() {
        let mut bytes = std::fs::read(file).unwrap();
        let at = if i % 2 == 0 { bytes.len() - 1 - i } else { 120 };
        bytes[at] ^= 0x40;
        std::fs::write(file, bytes).unwrap();
    }
    {
        let (engine, _) = start_engine(small_pool(disk(&dir)));
        let back = turn(&engine, &a);
        let metrics = engine.metrics();
        assert_same(&back, &want, "damaged files");
        assert_eq!(metrics.kv_offload_restored.get(), 0);
        assert_eq!(back.usage.cached_tokens, 0);
        // The first block asked for failed its checks and was deleted; the chain stops there.
        assert_eq!(metrics.kv_offload_rejected.get(), 1);
        assert_eq!(block_files(&dir).len(), files.len() - 1);
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // Every file cut short: dropped when the tier opens, never read.
    let files = fill_tier(&dir, &a, &b);
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        std::fs::write(file, &bytes[..bytes.len() - 7]).unwrap();
    }
    {
        let (engine, _) = start_engine(small_pool(disk(&dir)));
        assert!(block_files(&dir).is_empty());
        let back = turn(&engine, &a);
        assert_same(&back, &want, "truncated files");
        assert_eq!(engine.metrics().kv_offload_restored.get(), 0);
        assert_eq!(back.usage.cached_tokens, 0);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_host_tier_alone_restores_and_spills_nothing_to_disk() {
    let (a, b) = sessions();
    let want = reference(&a);
    let (engine, _) = start_engine(small_pool(KvOffloadConfig {
        host_bytes: 64 << 20,
        dir: None,
        dir_bytes: 0,
        model_identity: BlockDigest([7; 32]),
    }));
    let _ = turn(&engine, &a);
    let _ = turn(&engine, &b);
    let back = turn(&engine, &a);
    assert!(engine.metrics().kv_offload_restored.get() >= 10);
    assert_eq!(back.usage.cached_tokens, REUSABLE, "{:?}", back.usage);
    assert_same(&back, &want, "from host memory");
    // B was evicted by A's return in turn: it comes back too.
    let again = turn(&engine, &b);
    assert_eq!(again.usage.cached_tokens, REUSABLE, "{:?}", again.usage);
}
