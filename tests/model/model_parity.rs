//! The forward pass against HF transformers (f32) on the same synthetic checkpoints:
//! last-position logits, greedy continuations, and batching/chunking invariance.

use crate::common;

use common::*;
use tealight::model::loader::DtypeChoice;
use tealight::model::{AttentionBackend, BatchInput, SequenceChunk};

/// The dense shapes and the mixture-of-experts ones (`moe-tiny`: sparse layers between dense
/// ones, renormalized top-2 of 8; `moe-tiny-b`: all sparse, top-4 of 16, not renormalized).
const SHAPES: [&str; 4] = ["tiny", "tiny-untied", "moe-tiny", "moe-tiny-b"];
const LOGITS_TOLERANCE: f32 = 1e-3;

/// The embedded model's weights are made on first use: they must be the bytes the fixtures
/// were recorded with (scripts/fixtures/synthetic_qwen3.py writes the same file).
#[test]
fn generated_tiny_weights_are_the_recorded_ones() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let spec = tealight::weights::synthetic::SyntheticSpec::tiny();
    tealight::weights::synthetic::write_checkpoint(&spec, dir.path(), &tiny_model_dir()).unwrap();
    let rebuilt = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let digest: String = sha2::Sha256::digest(&rebuilt)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let recorded =
        std::fs::read_to_string(repo_path("models/qwen3-tiny/model.safetensors.sha256")).unwrap();
    assert_eq!(
        Some(digest.as_str()),
        recorded.split_whitespace().next(),
        "synthetic.rs no longer makes the weights the fixtures were recorded with"
    );
    let used = std::fs::read(tiny_model_dir().join("model.safetensors")).unwrap();
    assert!(
        used == rebuilt,
        "the embedded model's weights differ from the generator's"
    );
}

fn check_against_transformers(shape: &str, backend: AttentionBackend) {
    let loaded = load(shape, DtypeChoice::F32);
    for case in &model_fixtures(shape).cases {
        let n = case.prompt_ids.len() + case.greedy.len();
        let blocks = scattered_blocks(3, blocks_needed(n), 2);
        let cache = cache_for(&loaded, 3 + 2 * blocks.len());
        let (logits, greedy) = greedy_run(
            &loaded,
            &cache,
            &blocks,
            &case.prompt_ids,
            case.greedy.len(),
            512,
            backend,
        );
        let sample: Vec<f32> = logits.iter().step_by(case.logits_stride).copied().collect();
        let diff = max_abs_diff(&sample, &case.logits_sample);
        assert!(
            diff <= LOGITS_TOLERANCE,
            "{shape}/{}: logits differ by {diff}",
            case.name
        );
        for (id, want) in case.top_ids.iter().zip(&case.top_logits) {
            let got = logits[*id as usize];
            assert!(
                (got - want).abs() <= LOGITS_TOLERANCE,
                "{shape}/{}: top logit {id}: {got} vs {want}",
                case.name
            );
        }
        assert_eq!(
            greedy, case.greedy,
            "{shape}/{}: greedy tokens differ",
            case.name
        );
    }
}

#[test]
fn cpu_backend_matches_transformers() {
    for shape in SHAPES {
        check_against_transformers(shape, AttentionBackend::Cpu);
    }
}

#[test]
fn generic_backend_matches_transformers() {
    for shape in SHAPES {
        check_against_transformers(shape, AttentionBackend::Generic);
    }
}

/// Chunked prefill (prompt fed in pieces) gives the same logits and tokens as one-shot prefill.
#[test]
fn chunked_prefill_equals_one_shot() {
    for shape in SHAPES {
        let loaded = load(shape, DtypeChoice::F32);
        let case = model_fixtures(shape)
            .cases
            .iter()
            .max_by_key(|c| c.prompt_ids.len())
            .unwrap();
        let blocks = scattered_blocks(1, blocks_needed(case.prompt_ids.len() + 8), 3);
        let cache = cache_for(&loaded, 1 + 3 * blocks.len());
        for backend in [AttentionBackend::Cpu, AttentionBackend::Generic] {
            let (whole, whole_tokens) = greedy_run(
                &loaded,
                &cache,
                &blocks,
                &case.prompt_ids,
                8,
                usize::MAX,
                backend,
            );
            for chunk in [1, 7, 16, 100] {
                let (chunked, tokens) = greedy_run(
                    &loaded,
                    &cache,
                    &blocks,
                    &case.prompt_ids,
                    8,
                    chunk,
                    backend,
                );
                let diff = max_abs_diff(&whole, &chunked);
                assert!(
                    diff <= 1e-4,
                    "{shape} chunk {chunk} {backend:?}: logits differ by {diff}"
                );
                assert_eq!(tokens, whole_tokens, "{shape} chunk {chunk} {backend:?}");
            }
        }
    }
}

/// All prompts prefilled in one step, then decoded together, equal each run alone; the step
/// mixes a prefill of one sequence with decodes of others.
#[test]
fn batched_step_equals_each_sequence_alone() {
    for shape in SHAPES {
        let loaded = load(shape, DtypeChoice::F32);
        let cases = &model_fixtures(shape).cases;
        let steps = 6;
        let tables: Vec<Vec<u32>> = {
            let mut next = 0u32;
            cases
                .iter()
                .map(|c| {
                    let n = blocks_needed(c.prompt_ids.len() + steps);
                    let t: Vec<u32> = (0..n as u32)
                        .map(|i| next + i * cases.len() as u32)
                        .collect();
                    next += 1;
                    t
                })
                .collect()
        };
        let num_blocks = tables.iter().flatten().max().unwrap() + 1;
        for backend in [AttentionBackend::Cpu, AttentionBackend::Generic] {
            let cache = cache_for(&loaded, num_blocks as usize);
            // Step 1: every sequence but the last prefills; step 2: the last prefills while the
            // others decode; then all decode together.
            let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); cases.len()];
            let mut first_logits: Vec<Option<Vec<f32>>> = vec![None; cases.len()];
            let last = cases.len() - 1;
            for step in 0..steps + 1 {
                let mut batch = BatchInput::default();
                let mut order = Vec::new();
                for (i, c) in cases.iter().enumerate() {
                    let prefill_now = (i < last && step == 0) || (i == last && step == 1);
                    let (ids, ctx) = if prefill_now {
                        (c.prompt_ids.clone(), c.prompt_ids.len())
                    } else if let Some(&t) = outputs[i].last() {
                        if outputs[i].len() >= steps {
                            continue;
                        }
                        (vec![t], c.prompt_ids.len() + outputs[i].len())
                    } else {
                        continue;
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
                    .forward(&batch, &cache, backend)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                for (row, &i) in order.iter().enumerate() {
                    if first_logits[i].is_none() {
                        first_logits[i] = Some(logits[row].clone());
                    }
                    outputs[i].push(argmax(&logits[row]));
                }
            }
            for (i, c) in cases.iter().enumerate() {
                let blocks = scattered_blocks(0, blocks_needed(c.prompt_ids.len() + steps), 1);
                let solo_cache = cache_for(&loaded, blocks.len());
                let (solo_logits, solo) = greedy_run(
                    &loaded,
                    &solo_cache,
                    &blocks,
                    &c.prompt_ids,
                    steps,
                    512,
                    backend,
                );
                let diff = max_abs_diff(first_logits[i].as_ref().unwrap(), &solo_logits);
                assert!(
                    diff <= 1e-4,
                    "{shape}/{} {backend:?}: batched logits differ by {diff}",
                    c.name
                );
                assert_eq!(outputs[i], solo, "{shape}/{} {backend:?}", c.name);
            }
        }
    }
}

/// One decode step's logits for sequence 0 (`ctx` cached tokens, next token `next`), computed
/// with `others` sharing the step: `(prompt, cached)` pairs that each prefill `prompt` after
/// `cached` tokens already in their blocks.
fn decode_logits_with(
    loaded: &tealight::model::LoadedModel,
    cache: &tealight::model::KvCache,
    tables: &[Vec<u32>],
    seq0: (u32, usize),
    others: &[(&[u32], usize)],
    backend: AttentionBackend,
) -> Vec<f32> {
    let mut batch = BatchInput::default();
    batch.chunks.push(SequenceChunk {
        num_query_tokens: 1,
        context_len: seq0.1 + 1,
        block_table: tables[0].clone(),
        logits_tokens: 1,
    });
    batch.token_ids.push(seq0.0);
    for (i, &(ids, cached)) in others.iter().enumerate() {
        batch.chunks.push(SequenceChunk {
            num_query_tokens: ids.len(),
            context_len: cached + ids.len(),
            block_table: tables[i + 1].clone(),
            logits_tokens: 1,
        });
        batch.token_ids.extend_from_slice(ids);
    }
    let logits = loaded.model.forward(&batch, cache, backend).unwrap();
    logits.get(0).unwrap().to_vec1::<f32>().unwrap()
}

/// Bit for bit, not within a tolerance: a decoding sequence's logits do not depend on what else
/// is in the step (alone; with other decodes; with a prefill chunk), on the CPU's default
/// attention backend. Seeded sampling's batch invariance rests on this: a last-bit difference
/// is enough to move a draw on a flat distribution.
#[test]
fn decode_logits_are_bitwise_independent_of_the_batch() {
    // The MoE shape too: a token's experts are summed in one order whatever shares the step.
    for shape in ["tiny", "moe-tiny"] {
        decode_logits_bitwise(shape);
    }
}

fn decode_logits_bitwise(shape: &str) {
    let loaded = load(shape, DtypeChoice::F32);
    let cases = &model_fixtures(shape).cases;
    let prompt = &cases[0].prompt_ids;
    let tables: Vec<Vec<u32>> = (0..4)
        .map(|s| scattered_blocks(s * 64, blocks_needed(prompt.len() + 2), 1))
        .collect();
    let cache = cache_for(&loaded, 4 * 64);
    // Sequence 0 and the two decoding neighbours have the prompt cached.
    let mut batch = BatchInput::default();
    for table in &tables[..3] {
        batch.chunks.push(SequenceChunk {
            num_query_tokens: prompt.len(),
            context_len: prompt.len(),
            block_table: table.clone(),
            logits_tokens: 0,
        });
        batch.token_ids.extend_from_slice(prompt);
    }
    loaded
        .model
        .forward(&batch, &cache, AttentionBackend::Cpu)
        .unwrap();
    let next = cases[0].greedy[0];
    let seq0 = (next, prompt.len());
    let decode: &[u32] = &[7];
    let chunk: Vec<u32> = prompt[..prompt.len().min(40)].to_vec();
    let alone = decode_logits_with(&loaded, &cache, &tables, seq0, &[], AttentionBackend::Cpu);
    for (name, others) in [
        (
            "two decodes",
            vec![(decode, prompt.len()), (decode, prompt.len())],
        ),
        (
            "a prefill chunk",
            vec![
                (decode, prompt.len()),
                (decode, prompt.len()),
                (&chunk[..], 0),
            ],
        ),
    ] {
        let batched = decode_logits_with(
            &loaded,
            &cache,
            &tables,
            seq0,
            &others,
            AttentionBackend::Cpu,
        );
        let differing = alone
            .iter()
            .zip(&batched)
            .filter(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(differing.count(), 0, "with {name}");
    }
}
