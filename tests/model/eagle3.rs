//! EAGLE-3 heads: a head trained for the embedded tiny model, in the published layout
//! (tests/fixtures/eagle3-tiny, made by scripts/fixtures/eagle3_head.py), drafts what the
//! PyTorch reference of the head's forward drafts — through the served model's hidden states,
//! the head's catch-up and its further passes — whether it catches up in one pass or in pieces.

use crate::common;

use candle_core::{DType, Device, Tensor};
use common::*;
use serde::Deserialize;
use tealight::engine::speculative::eagle3::{CatchUp, Eagle3Drafter, EagleJob, EagleState};
use tealight::model::eagle3::{Eagle3Config, Eagle3Head};
use tealight::model::loader::DtypeChoice;
use tealight::model::{AttentionBackend, BatchInput, KvCache, Qwen3Model, SequenceChunk};
use tealight::weights::store::WeightStore;

#[derive(Deserialize)]
struct Reference {
    aux_layer_ids: Vec<usize>,
    k: usize,
    weights_sha256: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    tokens: Vec<u32>,
    draft: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(repo_path("tests/fixtures/eagle3-reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn head_dir() -> std::path::PathBuf {
    repo_path("tests/fixtures/eagle3-tiny")
}

fn target(layers: &[usize]) -> Qwen3Model {
    let mut model = load("tiny", DtypeChoice::F32).model;
    model.capture_hidden_states(layers.to_vec());
    model
}

fn load_head() -> Eagle3Head {
    load_head_from(&head_dir())
}

/// The head in `dir`, its files found as the server finds them.
fn load_head_from(dir: &std::path::Path) -> Eagle3Head {
    let (config, weights) =
        tealight::weights::checkpoint::resolve_head(dir.to_str().unwrap()).unwrap();
    let cfg = Eagle3Config::from_file(&config).unwrap();
    let store = WeightStore::open(&weights, &Device::Cpu, DType::F32, 0).unwrap();
    Eagle3Head::load(&store, &cfg).unwrap()
}

/// A head shipped as `pytorch_model.bin` (as many published ones are; this is the fixture head
/// saved by `torch.save`, its boolean `t2d` included) is read through a safetensors copy and is
/// the same head: the same logits, bit for bit (its drafts: `drafts_equal_the_pytorch_reference`).
#[test]
fn a_pytorch_bin_head_is_the_same_head() {
    let bin_dir = repo_path("tests/fixtures/eagle3-tiny-bin");
    let (_, files) =
        tealight::weights::checkpoint::resolve_head(bin_dir.to_str().unwrap()).unwrap();
    assert!(
        files[0].extension().is_some_and(|e| e == "safetensors"),
        "{files:?}"
    );
    let hidden = Tensor::randn(0f32, 1.0, (3, 128), &Device::Cpu).unwrap();
    let want = load_head().logits(&hidden).unwrap();
    let got = load_head_from(&bin_dir).logits(&hidden).unwrap();
    let diff = (want - got).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
}

/// The served model's hidden states for every token of `tokens` (one prefill pass).
fn aux_states(model: &Qwen3Model, tokens: &[u32], blocks: &[u32]) -> Tensor {
    let num_blocks = 2 * blocks.len() + 2;
    let cache = KvCache::new(
        model.config(),
        num_blocks,
        BLOCK_SIZE,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let batch = BatchInput {
        token_ids: tokens.to_vec(),
        chunks: vec![SequenceChunk {
            num_query_tokens: tokens.len(),
            context_len: tokens.len(),
            block_table: blocks.to_vec(),
            logits_tokens: 1,
        }],
    };
    model
        .forward_pooled(&batch, &cache, AttentionBackend::Generic, &[])
        .unwrap()
        .aux
        .expect("the model returns the hidden states the head reads")
}

#[test]
fn the_head_file_is_the_one_the_reference_ran_on() {
    use sha2::Digest;
    let bytes = std::fs::read(head_dir().join("model.safetensors")).unwrap();
    let got: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got, reference().weights_sha256);
}

/// The head's logits at the last caught-up position match the reference's, and its k drafts
/// (catch-up, then k - 1 passes fed back) are the reference's tokens.
#[test]
fn drafts_equal_the_pytorch_reference() {
    let r = reference();
    let model = target(&r.aux_layer_ids);
    let config = Eagle3Config::from_file(&head_dir().join("config.json")).unwrap();
    assert_eq!(
        config
            .aux_layer_ids(model.config().num_hidden_layers)
            .unwrap(),
        r.aux_layer_ids
    );
    let embed = |ids: &Tensor| model.embed(ids);
    for (n, case) in r.cases.iter().enumerate() {
        let len = case.tokens.len();
        let blocks: Vec<u32> = scattered_blocks(1, blocks_needed(len + r.k), 2);
        let aux = aux_states(&model, &case.tokens, &blocks);

        // The first draft's logits, straight from the head.
        let head = load_head();
        let cache = head
            .new_cache(2 * blocks.len() + 2, BLOCK_SIZE, DType::F32)
            .unwrap();
        let rows = Tensor::arange(0u32, (len - 1) as u32, &Device::Cpu).unwrap();
        let hidden = head.fuse(&aux.index_select(&rows, 0).unwrap()).unwrap();
        let next = Tensor::new(&case.tokens[1..], &Device::Cpu).unwrap();
        let batch = BatchInput {
            token_ids: case.tokens[1..].to_vec(),
            chunks: vec![SequenceChunk {
                num_query_tokens: len - 1,
                context_len: len - 1,
                block_table: blocks.clone(),
                logits_tokens: 1,
            }],
        };
        let out = head
            .forward(
                &batch,
                &model.embed(&next).unwrap(),
                &hidden,
                &cache,
                AttentionBackend::Generic,
            )
            .unwrap();
        let logits = head
            .logits(&out)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let diff = max_abs_diff(&logits, &case.logits[0]);
        assert!(diff < 2e-3, "case {n}: first draft logits differ by {diff}");

        // The whole proposal, caught up in one pass and in two pieces.
        // The head as published (safetensors) caught up in one pass and in two pieces, and as
        // a PyTorch checkpoint.
        let bin_dir = repo_path("tests/fixtures/eagle3-tiny-bin");
        for (dir, pieces) in [
            (head_dir(), vec![len - 1]),
            (head_dir(), vec![(len - 1) / 2, len - 1 - (len - 1) / 2]),
            (bin_dir, vec![len - 1]),
        ] {
            let head = load_head_from(&dir);
            let cache = head
                .new_cache(2 * blocks.len() + 2, BLOCK_SIZE, DType::F32)
                .unwrap();
            let drafter = Eagle3Drafter::new(head, cache, AttentionBackend::Generic);
            let mut state = EagleState::default();
            let mut start = 0;
            for rows in pieces.iter().copied().filter(|&r| r > 0) {
                state.push(start, aux.narrow(0, start, rows).unwrap());
                let mut job = [CatchUp {
                    tokens: &case.tokens,
                    block_table: &blocks,
                    state: &mut state,
                }];
                drafter.catch_up(&mut job, &embed).unwrap();
                start += rows;
            }
            let job = EagleJob {
                state: &state,
                len,
                block_table: &blocks,
                k: r.k,
            };
            let drafts = drafter.propose(&[job], &embed).unwrap();
            assert_eq!(
                drafts[0], case.draft,
                "case {n}, {dir:?}, catch-up in {pieces:?}"
            );
        }
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A draft layer with per-head q/k norms (Qwen3-style) is refused rather than run without them.
#[test]
fn a_head_with_qk_norms_is_refused() {
    let dir = process_scratch_dir("eagle3-qk-norm");
    // SAFETY: a fixture file, mapped read-only.
    let stored = unsafe {
        candle_core::safetensors::MmapedSafetensors::new(head_dir().join("model.safetensors"))
    }
    .unwrap();
    // Everything candle reads (not the boolean t2d, which nothing reads).
    let mut tensors: std::collections::HashMap<String, Tensor> = stored
        .tensors()
        .into_iter()
        .filter_map(|(name, _)| Some((name.clone(), stored.load(&name, &Device::Cpu).ok()?)))
        .collect();
    let norm = Tensor::ones(32, DType::BF16, &Device::Cpu).unwrap();
    tensors.insert("midlayer.self_attn.q_norm.weight".into(), norm.clone());
    tensors.insert("midlayer.self_attn.k_norm.weight".into(), norm);
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    std::fs::copy(head_dir().join("config.json"), dir.join("config.json")).unwrap();
    let (config, weights) =
        tealight::weights::checkpoint::resolve_head(dir.to_str().unwrap()).unwrap();
    let cfg = Eagle3Config::from_file(&config).unwrap();
    let store = WeightStore::open(&weights, &Device::Cpu, DType::F32, 0).unwrap();
    let err = Eagle3Head::load(&store, &cfg)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("q_norm"), "{err}");
}
