//! Shared helpers for the integration tests: reference fixtures, synthetic checkpoints, and a
//! minimal single-sequence driver over the batched forward.
#![allow(dead_code)]

use candle_core::{DType, Device};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tealight::model::loader::{DtypeChoice, LoadedModel, load_model};
use tealight::model::{AttentionBackend, BatchInput, KvCache, SequenceChunk};
use tealight::weights::checkpoint::CheckpointFiles;

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The embedded tiny model, its weights made on first use.
pub fn tiny_model_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        tealight::weights::embedded::ensure_weights(&repo_path("models/qwen3-tiny"))
            .expect("embedded model weights")
    })
    .clone()
}

#[derive(Debug, Deserialize)]
pub struct Fixtures {
    pub models: Vec<ModelFixtures>,
}

#[derive(Debug, Deserialize)]
pub struct ModelFixtures {
    pub shape: String,
    /// SHA-256 of each safetensors file the reference ran on (recorded for the MoE shapes).
    #[serde(default)]
    pub weights_sha256: std::collections::BTreeMap<String, String>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub messages: serde_json::Value,
    pub tools: Option<serde_json::Value>,
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub logits_stride: usize,
    pub logits_sample: Vec<f32>,
    pub top_ids: Vec<u32>,
    pub top_logits: Vec<f32>,
    pub greedy: Vec<u32>,
}

/// The transformers references of every shape: the dense ones (reference.json) and the
/// mixture-of-experts ones (reference-moe.json).
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let read = |file: &str| -> Fixtures {
            let text = std::fs::read_to_string(repo_path(&format!("tests/fixtures/{file}")))
                .expect("fixtures");
            serde_json::from_str(&text).expect("fixture JSON")
        };
        let mut all = read("reference.json");
        all.models.extend(read("reference-moe.json").models);
        all
    })
}

pub fn model_fixtures(shape: &str) -> &'static ModelFixtures {
    fixtures()
        .models
        .iter()
        .find(|m| m.shape == shape)
        .expect("shape in fixtures")
}

/// A fresh directory for files a test process makes once and shares between its tests:
/// `target/tmp/<test binary>/<name>`, emptied when first asked for. Not a temp dir held in a
/// static: statics are never dropped, so those stayed behind in /tmp after every run.
pub fn process_scratch_dir(name: &str) -> PathBuf {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        // `gguf-<hash>` → `gguf`: a rebuilt binary reuses (and empties) the same directory.
        .map(|stem| {
            stem.rsplit_once('-')
                .map_or(stem.clone(), |(name, _)| name.to_owned())
        })
        .unwrap_or_else(|| "tests".to_owned());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(binary)
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Directory of a synthetic checkpoint: the committed tiny model, or one rebuilt once per test
/// process.
pub fn checkpoint_dir(shape: &str) -> PathBuf {
    if shape == "tiny" {
        return tiny_model_dir();
    }
    static DIRS: OnceLock<std::sync::Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let dirs = DIRS.get_or_init(Default::default);
    let mut dirs = dirs.lock().unwrap();
    if let Some((_, d)) = dirs.iter().find(|(s, _)| s == shape) {
        return d.clone();
    }
    let dir = process_scratch_dir(&format!("checkpoint-{shape}"));
    let spec = tealight::weights::synthetic::SyntheticSpec::by_name(shape).expect("known shape");
    tealight::weights::synthetic::write_checkpoint(&spec, &dir, &tiny_model_dir()).unwrap();
    dirs.push((shape.to_owned(), dir.clone()));
    dir
}

pub fn load(shape: &str, dtype: DtypeChoice) -> LoadedModel {
    let files = CheckpointFiles::from_dir(&checkpoint_dir(shape)).unwrap();
    load_model(files, &Device::Cpu, dtype).unwrap()
}

pub const BLOCK_SIZE: usize = 16;

/// A sequence's blocks, deliberately non-contiguous and descending so paging is exercised.
pub fn scattered_blocks(first: u32, count: usize, stride: u32) -> Vec<u32> {
    (0..count as u32)
        .rev()
        .map(|i| first + i * stride)
        .collect()
}

pub fn cache_for(loaded: &LoadedModel, num_blocks: usize) -> KvCache {
    let m = &loaded.model;
    KvCache::new(m.config(), num_blocks, BLOCK_SIZE, m.dtype(), &Device::Cpu).unwrap()
}

/// Prefills `prompt` in chunks of `chunk` tokens, then decodes `steps` greedy tokens.
/// Returns the logits after the prompt and the greedy tokens.
pub fn greedy_run(
    loaded: &LoadedModel,
    cache: &KvCache,
    blocks: &[u32],
    prompt: &[u32],
    steps: usize,
    chunk: usize,
    backend: AttentionBackend,
) -> (Vec<f32>, Vec<u32>) {
    greedy_run_model(&loaded.model, cache, blocks, prompt, steps, chunk, backend)
}

/// Greedy decoding of `prompt` for `steps` tokens on a cache of its own (prefill in chunks of
/// 7, generic attention): the logits after the prompt and the tokens.
pub fn greedy_model(
    model: &tealight::model::Qwen3Model,
    prompt: &[u32],
    steps: usize,
) -> (Vec<f32>, Vec<u32>) {
    let n = blocks_needed(prompt.len() + steps);
    let cache = KvCache::new(model.config(), n, BLOCK_SIZE, model.dtype(), &Device::Cpu).unwrap();
    let blocks: Vec<u32> = (0..n as u32).collect();
    greedy_run_model(
        model,
        &cache,
        &blocks,
        prompt,
        steps,
        7,
        AttentionBackend::Generic,
    )
}

/// [`greedy_run`] on a model however it was loaded.
pub fn greedy_run_model(
    model: &tealight::model::Qwen3Model,
    cache: &KvCache,
    blocks: &[u32],
    prompt: &[u32],
    steps: usize,
    chunk: usize,
    backend: AttentionBackend,
) -> (Vec<f32>, Vec<u32>) {
    let mut fed = 0;
    let mut first_logits = None;
    while fed < prompt.len() {
        let n = chunk.min(prompt.len() - fed);
        let batch = BatchInput {
            token_ids: prompt[fed..fed + n].to_vec(),
            chunks: vec![SequenceChunk {
                num_query_tokens: n,
                context_len: fed + n,
                block_table: blocks.to_vec(),
                logits_tokens: usize::from(fed + n == prompt.len()),
            }],
        };
        let logits = model.forward(&batch, cache, backend).unwrap();
        fed += n;
        if fed == prompt.len() {
            first_logits = Some(logits.squeeze(0).unwrap().to_vec1::<f32>().unwrap());
        }
    }
    let first_logits = first_logits.unwrap();
    let mut tokens = vec![argmax(&first_logits)];
    while tokens.len() < steps {
        let batch = BatchInput {
            token_ids: vec![*tokens.last().unwrap()],
            chunks: vec![SequenceChunk {
                num_query_tokens: 1,
                context_len: prompt.len() + tokens.len(),
                block_table: blocks.to_vec(),
                logits_tokens: 1,
            }],
        };
        let logits = model.forward(&batch, cache, backend).unwrap();
        tokens.push(argmax(
            &logits.squeeze(0).unwrap().to_vec1::<f32>().unwrap(),
        ));
    }
    (first_logits, tokens)
}

pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn blocks_needed(tokens: usize) -> usize {
    tokens.div_ceil(BLOCK_SIZE)
}

pub fn dtype_of(loaded: &LoadedModel) -> DType {
    loaded.model.dtype()
}

/// Starts an engine on the tiny model with `tweak` applied to the default configuration.
pub fn start_engine(
    tweak: impl FnOnce(&mut tealight::engine::EngineConfig),
) -> (
    tealight::engine::EngineHandle,
    std::sync::Arc<tealight::tokenizer::Tokenizer>,
) {
    let loaded = load("tiny", DtypeChoice::Auto);
    let tokenizer = std::sync::Arc::new(
        tealight::tokenizer::Tokenizer::from_file(tiny_model_dir().join("tokenizer.json")).unwrap(),
    );
    let cfg = loaded.model.config().clone();
    let mut config = tealight::engine::EngineConfig::for_model(&cfg, 64 << 20, 4);
    config.max_model_len = 4096;
    tweak(&mut config);
    let engine = tealight::engine::EngineHandle::start(
        loaded.model,
        tokenizer.clone(),
        vec![151645, 151643],
        config,
    )
    .unwrap();
    (engine, tokenizer)
}

/// A finished stream: text, token ids, finish reason, usage.
pub type Collected = (
    String,
    Vec<u32>,
    tealight::engine::FinishReason,
    tealight::engine::Usage,
);

/// Drains a stream to its finish.
pub fn collect(mut stream: tealight::engine::EventStream) -> Collected {
    let mut text = String::new();
    let mut tokens = Vec::new();
    loop {
        match stream
            .blocking_recv()
            .expect("stream ended without a finish")
        {
            tealight::engine::Event::Delta {
                text: t, token_ids, ..
            } => {
                text.push_str(&t);
                tokens.extend(token_ids);
            }
            tealight::engine::Event::Finished { reason, usage, .. } => {
                return (text, tokens, reason, usage);
            }
            tealight::engine::Event::Error(e) => panic!("engine error: {e}"),
            tealight::engine::Event::Pooled(_) => {
                panic!("a generation request got a pooled result")
            }
        }
    }
}

/// Runs every request alone, one after another, then all of them at once: returns each
/// request's solo tokens beside its batched outcome (`collect`'s tuple).
pub fn solo_then_batched(
    engine: &tealight::engine::EngineHandle,
    requests: &[tealight::engine::GenerationRequest],
) -> Vec<(Vec<u32>, Collected)> {
    let solo: Vec<Vec<u32>> = requests
        .iter()
        .map(|r| collect(engine.submit(r.clone()).unwrap()).1)
        .collect();
    let streams: Vec<_> = requests
        .iter()
        .map(|r| engine.submit(r.clone()).unwrap())
        .collect();
    solo.into_iter()
        .zip(streams.into_iter().map(collect))
        .collect()
}
