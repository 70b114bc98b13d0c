//! End-to-end checks of the sampling module: defaults, validation, truncation sets, penalties,
//! seeding, batch invariance, host/device agreement, empirical frequencies and logprobs.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tealight::Error;
use tealight::sampling::{
    Backend, GenerationDefaults, RowSpec, Sampler, SamplingOverrides, SamplingParams,
    SequenceSampler, process_logits, select_device, select_host,
};

const QWEN3_GENERATION_CONFIG: &str = r#"{
  "bos_token_id": 151643,
  "do_sample": true,
  "eos_token_id": [151645, 151643],
  "pad_token_id": 151643,
  "temperature": 0.6,
  "top_k": 20,
  "top_p": 0.95,
  "transformers_version": "4.51.0"
}"#;

const BACKENDS: [Backend; 2] = [Backend::Host, Backend::Device];

fn qwen3_defaults() -> GenerationDefaults {
    GenerationDefaults::from_json_str(QWEN3_GENERATION_CONFIG, Path::new("generation_config.json"))
        .unwrap()
}

fn normal_logits(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
            scale * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}

fn tensor(rows: &[Vec<f32>]) -> Tensor {
    let v = rows[0].len();
    Tensor::from_vec(rows.concat(), (rows.len(), v), &Device::Cpu).unwrap()
}

fn spec(temperature: f32, top_k: usize, top_p: f32, min_p: f32, u: f64) -> RowSpec {
    RowSpec {
        temperature,
        top_k,
        top_p,
        min_p,
        u,
    }
}

/// Every id a selection can return for `s`, scanning `u` over a fine grid.
fn support(logits: &[f32], s: RowSpec, device: bool) -> Vec<u32> {
    let n = 2000;
    let rows: Vec<Vec<f32>> = vec![logits.to_vec(); n];
    let specs: Vec<RowSpec> = (0..n)
        .map(|i| RowSpec {
            u: i as f64 / n as f64,
            ..s
        })
        .collect();
    let t = tensor(&rows);
    let mut ids = if device {
        select_device(&t, &specs).unwrap()
    } else {
        select_host(&t, &specs).unwrap()
    };
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The engine's name for the refused part (vLLM's completions field).
fn param_of(err: Error) -> String {
    match err.request_part() {
        Some(part) => part.name().to_owned(),
        None => panic!("expected a refusal of a request part, got {err:?}"),
    }
}

#[test]
fn qwen3_generation_config_gives_the_defaults() {
    let d = qwen3_defaults();
    assert_eq!(d.eos_token_ids, vec![151645, 151643]);
    let p = SamplingParams::resolve(&d, &SamplingOverrides::default(), 151936).unwrap();
    assert_eq!(
        (p.temperature, p.top_k, p.top_p, p.min_p),
        (0.6, 20, 0.95, 0.0)
    );
    assert!(!p.is_greedy());
}

#[test]
fn do_sample_false_samples_greedily() {
    let d = GenerationDefaults::from_json_str(
        r#"{"do_sample": false, "temperature": 0.9, "top_k": 5}"#,
        Path::new("generation_config.json"),
    )
    .unwrap();
    let p = SamplingParams::resolve(&d, &SamplingOverrides::default(), 50).unwrap();
    assert!(p.is_greedy());
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for backend in BACKENDS {
        for _ in 0..5 {
            let row = normal_logits(&mut rng, 50, 2.0);
            let argmax = argmax(&row);
            let mut seq = SequenceSampler::new(p.clone(), &[]);
            let out = Sampler::with_backend(backend)
                .sample(&tensor(&[row]), &mut [&mut seq])
                .unwrap();
            assert_eq!(out[0].id, argmax);
        }
    }
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn temperature_zero_and_top_k_one_are_argmax() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let zero_t = SamplingParams::resolve(
        &qwen3_defaults(),
        &SamplingOverrides {
            temperature: Some(0.0),
            ..Default::default()
        },
        1000,
    )
    .unwrap();
    let top1 = SamplingParams::resolve(
        &qwen3_defaults(),
        &SamplingOverrides {
            temperature: Some(1.5),
            top_k: Some(1),
            ..Default::default()
        },
        1000,
    )
    .unwrap();
    for backend in BACKENDS {
        for _ in 0..10 {
            let row = normal_logits(&mut rng, 1000, 3.0);
            let expect = argmax(&row);
            let mut a = SequenceSampler::new(zero_t.clone(), &[]);
            let mut b = SequenceSampler::new(top1.clone(), &[]);
            let out = Sampler::with_backend(backend)
                .sample(&tensor(&[row.clone(), row]), &mut [&mut a, &mut b])
                .unwrap();
            assert_eq!((out[0].id, out[1].id), (expect, expect));
        }
    }
}

#[test]
fn truncation_keeps_exactly_the_right_sets() {
    // probabilities 0.4, 0.2, 0.2, 0.1, 0.05, 0.05 (two tie groups)
    let logits: Vec<f32> = [0.4f32, 0.2, 0.2, 0.1, 0.05, 0.05]
        .iter()
        .map(|p| p.ln())
        .collect();
    let cases: Vec<(RowSpec, Vec<u32>)> = vec![
        (spec(1.0, 0, 1.0, 0.0, 0.0), vec![0, 1, 2, 3, 4, 5]),
        // top-k keeps ties at the boundary
        (spec(1.0, 1, 1.0, 0.0, 0.0), vec![0]),
        (spec(1.0, 2, 1.0, 0.0, 0.0), vec![0, 1, 2]),
        (spec(1.0, 3, 1.0, 0.0, 0.0), vec![0, 1, 2]),
        (spec(1.0, 4, 1.0, 0.0, 0.0), vec![0, 1, 2, 3]),
        (spec(1.0, 5, 1.0, 0.0, 0.0), vec![0, 1, 2, 3, 4, 5]),
        // top-p: smallest set of whole groups reaching the mass
        (spec(1.0, 0, 0.39, 0.0, 0.0), vec![0]),
        (spec(1.0, 0, 0.41, 0.0, 0.0), vec![0, 1, 2]),
        (spec(1.0, 0, 0.79, 0.0, 0.0), vec![0, 1, 2]),
        (spec(1.0, 0, 0.85, 0.0, 0.0), vec![0, 1, 2, 3]),
        (spec(1.0, 0, 0.95, 0.0, 0.0), vec![0, 1, 2, 3, 4, 5]),
        // min-p relative to the top probability
        (spec(1.0, 0, 1.0, 0.45, 0.0), vec![0, 1, 2]),
        (spec(1.0, 0, 1.0, 0.2, 0.0), vec![0, 1, 2, 3]),
        (spec(1.0, 0, 1.0, 0.1, 0.0), vec![0, 1, 2, 3, 4, 5]),
        (spec(1.0, 0, 1.0, 0.6, 0.0), vec![0]),
        // top-p applies to the renormalised top-k survivors (vLLM order): after top-k=2 the
        // probabilities are 0.5/0.25/0.25, so 0.45 keeps the first group only.
        (spec(1.0, 2, 0.45, 0.0, 0.0), vec![0]),
        (spec(1.0, 0, 1.0 - 1e-7, 0.45, 0.0), vec![0, 1, 2]),
        // temperature sharpens before truncation: at T=0.5 the top token holds 0.16/0.255
        (spec(0.5, 0, 0.6, 0.0, 0.0), vec![0]),
        (spec(0.5, 0, 0.65, 0.0, 0.0), vec![0, 1, 2]),
    ];
    for (s, expect) in cases {
        for device in [false, true] {
            assert_eq!(support(&logits, s, device), expect, "{s:?} device={device}");
        }
    }
}

#[test]
fn penalties_change_logits_exactly() {
    let raw = [2.0f32, -1.5, 0.75, 3.0, -0.25, 1.0, 0.0, 4.0];
    let logits = tensor(&[raw.to_vec(), raw.to_vec()]);
    let params = SamplingParams {
        repetition_penalty: 1.3,
        frequency_penalty: 0.4,
        presence_penalty: 0.7,
        logit_bias: vec![(6, 2.5), (7, -100.0)],
        ..Default::default()
    };
    let mut s = SequenceSampler::new(params, &[0, 1, 1]);
    for t in [2, 2, 4, 1] {
        s.record(t);
    }
    let plain = SequenceSampler::new(SamplingParams::default(), &[0, 1]);
    let out = process_logits(&logits, &[&s, &plain])
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let rep = |x: f32| if x > 0.0 { x / 1.3f32 } else { x * 1.3f32 };
    let expect = vec![
        rep(2.0),                        // prompt only
        rep(-1.5) - 0.4f32 * 1.0 - 0.7,  // prompt and output once
        rep(0.75) - 0.4f32 * 2.0 - 0.7,  // output twice
        3.0,                             // untouched
        rep(-0.25) - 0.4f32 * 1.0 - 0.7, // output once
        1.0,                             // untouched
        2.5,                             // bias only
        4.0 - 100.0,                     // bias only
    ];
    assert_eq!(out[0], expect);
    assert_eq!(out[1], raw.to_vec(), "a row without penalties is untouched");
}

#[test]
fn logit_bias_forces_a_token() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let req = SamplingOverrides {
        temperature: Some(1.0),
        top_k: Some(0),
        top_p: Some(1.0),
        logit_bias: Some(HashMap::from([("7".to_string(), 100.0)])),
        seed: Some(9),
        ..Default::default()
    };
    let p = SamplingParams::resolve(&qwen3_defaults(), &req, 500).unwrap();
    let banned = SamplingParams::resolve(
        &qwen3_defaults(),
        &SamplingOverrides {
            temperature: Some(0.0),
            logit_bias: Some(HashMap::from([("3".to_string(), -100.0)])),
            ..Default::default()
        },
        500,
    )
    .unwrap();
    for backend in BACKENDS {
        let mut s = SequenceSampler::new(p.clone(), &[]);
        let mut g = SequenceSampler::new(banned.clone(), &[]);
        for _ in 0..20 {
            let mut row = normal_logits(&mut rng, 500, 2.0);
            let mut greedy_row = row.clone();
            greedy_row[3] = 50.0;
            row[7] = -5.0;
            let out = Sampler::with_backend(backend)
                .sample(&tensor(&[row, greedy_row.clone()]), &mut [&mut s, &mut g])
                .unwrap();
            assert_eq!(out[0].id, 7);
            greedy_row[3] = f32::NEG_INFINITY;
            assert_eq!(out[1].id, argmax(&greedy_row));
        }
    }
}

/// Runs `steps` steps of `params` for one sequence; the logits of step `i` come from `seed + i`.
fn run_alone(params: &SamplingParams, backend: Backend, vocab: usize, steps: usize) -> Vec<u32> {
    let mut s = SequenceSampler::new(params.clone(), &[1, 2, 3]);
    (0..steps)
        .map(|i| {
            let row = normal_logits(&mut ChaCha8Rng::seed_from_u64(1000 + i as u64), vocab, 2.0);
            Sampler::with_backend(backend)
                .sample(&tensor(&[row]), &mut [&mut s])
                .unwrap()[0]
                .id
        })
        .collect()
}

#[test]
fn same_seed_same_tokens() {
    let params = SamplingParams {
        temperature: 0.9,
        top_p: 0.9,
        seed: Some(1234),
        ..Default::default()
    };
    for backend in BACKENDS {
        let a = run_alone(&params, backend, 300, 30);
        let b = run_alone(&params, backend, 300, 30);
        assert_eq!(a, b);
        let other = SamplingParams {
            seed: Some(4321),
            ..params.clone()
        };
        assert_ne!(a, run_alone(&other, backend, 300, 30));
    }
}

#[test]
fn seeded_rows_do_not_depend_on_the_batch() {
    let vocab = 400;
    let steps = 12;
    let target = SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.9,
        repetition_penalty: 1.1,
        presence_penalty: 0.3,
        seed: Some(77),
        logprobs: Some(2),
        ..Default::default()
    };
    let neighbours = [
        SamplingParams::greedy(),
        SamplingParams {
            seed: Some(1),
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.7,
            min_p: 0.05,
            ..Default::default()
        },
        SamplingParams {
            top_k: 1,
            frequency_penalty: 1.0,
            ..Default::default()
        },
        SamplingParams {
            top_p: 0.3,
            logit_bias: vec![(5, 3.0)],
            seed: Some(2),
            ..Default::default()
        },
        SamplingParams {
            temperature: 0.2,
            logprobs: Some(5),
            ..Default::default()
        },
    ];
    for backend in BACKENDS {
        let alone = run_alone(&target, backend, vocab, steps);
        let mut seqs: Vec<SequenceSampler> = neighbours
            .iter()
            .map(|p| SequenceSampler::new(p.clone(), &[4, 5]))
            .collect();
        let mut me = SequenceSampler::new(target.clone(), &[1, 2, 3]);
        let mut noise = ChaCha8Rng::seed_from_u64(99);
        let mut batched = Vec::new();
        for i in 0..steps {
            let mine = normal_logits(&mut ChaCha8Rng::seed_from_u64(1000 + i as u64), vocab, 2.0);
            let mut rows: Vec<Vec<f32>> = (0..6)
                .map(|_| normal_logits(&mut noise, vocab, 3.0))
                .collect();
            rows.insert(3, mine);
            let (left, right) = seqs.split_at_mut(3);
            let mut refs: Vec<&mut SequenceSampler> = left.iter_mut().collect();
            refs.push(&mut me);
            refs.extend(right.iter_mut());
            let out = Sampler::with_backend(backend)
                .sample(&tensor(&rows), &mut refs)
                .unwrap();
            batched.push(out[3].id);
        }
        assert_eq!(alone, batched, "{backend:?}");
    }
}

/// Host and device must return the same ids for the same rows and uniforms.
fn compare_host_device(vocab: usize, rows: usize, trials: usize, seed: u64) {
    let combos: Vec<(f32, usize, f32, f32)> = vec![
        (1.0, 0, 1.0, 0.0),
        (0.6, 20, 0.95, 0.0),
        (1.0, 0, 0.9, 0.0),
        (1.0, 0, 1.0, 0.05),
        (1.3, 50, 0.8, 0.02),
        (0.7, 1, 1.0, 0.0),
        (0.3, 0, 0.5, 0.0),
        (1.0, 2000, 0.99, 0.0),
        (2.0, 0, 0.97, 0.001),
        (0.01, 0, 1.0, 0.0),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (ci, &(t, k, p, m)) in combos.iter().enumerate() {
        for trial in 0..trials {
            let data: Vec<Vec<f32>> = (0..rows)
                .map(|r| {
                    let mut row = normal_logits(&mut rng, vocab, 2.5);
                    if r % 3 == 1 {
                        // quantised logits: many exact ties
                        row.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0);
                    }
                    row
                })
                .collect();
            let specs: Vec<RowSpec> = (0..rows).map(|_| spec(t, k, p, m, rng.random())).collect();
            let x = tensor(&data);
            let host = select_host(&x, &specs).unwrap();
            let device = select_device(&x, &specs).unwrap();
            assert_eq!(host, device, "vocab {vocab} combo {ci} trial {trial}");
        }
    }
}

#[test]
fn host_and_device_agree_small_vocab() {
    compare_host_device(1000, 64, 4, 17);
}

#[test]
fn host_and_device_agree_qwen_vocab() {
    compare_host_device(151_936, 4, 2, 18);
}

/// How many of `draws` seeded draws change when every logit of a flat row is perturbed by at
/// most 1e-6 relative (a few f32 ulps, the size of the batch-dependent noise in CPU logits).
fn draws_changed_by_perturbation(s: RowSpec, device: bool, draws: usize) -> usize {
    const VOCAB: usize = 20_000;
    const PER_ROW: usize = 100;
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut changed = 0;
    for _ in 0..draws / PER_ROW {
        // A random-weight model's shape: nearly equal logits over the whole vocabulary.
        let row: Vec<f32> = (0..VOCAB).map(|_| rng.random::<f32>() * 0.01).collect();
        let noisy: Vec<f32> = row
            .iter()
            .map(|&v| v * (1.0 + (rng.random::<f32>() * 2.0 - 1.0) * 1e-6))
            .collect();
        let specs: Vec<RowSpec> = (0..PER_ROW)
            .map(|_| RowSpec {
                u: rng.random(),
                ..s
            })
            .collect();
        let select = |x: &[f32]| {
            let t = tensor(&vec![x.to_vec(); PER_ROW]);
            if device {
                select_device(&t, &specs).unwrap()
            } else {
                select_host(&t, &specs).unwrap()
            }
        };
        let (a, b) = (select(&row), select(&noisy));
        changed += a.iter().zip(&b).filter(|(x, y)| x != y).count();
    }
    changed
}

/// The draw walks the kept tokens in id order, so last-bit noise in nearly equal logits only
/// moves a draw whose target lies within the noise of a boundary (or whose kept set changes).
/// Walking them by descending probability instead changed ~4% of these draws.
#[test]
fn draws_are_stable_under_last_bit_noise_in_flat_rows() {
    for (name, s) in [
        ("top_p 0.95", spec(1.0, 0, 0.95, 0.0, 0.0)),
        ("temperature 0.7", spec(0.7, 0, 1.0, 0.0, 0.0)),
    ] {
        // The device path runs on the CPU here, tensor op by tensor op: fewer draws.
        for (device, draws) in [(false, 1000), (true, 200)] {
            let changed = draws_changed_by_perturbation(s, device, draws);
            eprintln!("{name} device={device}: {changed} of {draws} draws changed");
            assert!(
                changed * 200 <= draws,
                "{name} device={device}: {changed} of {draws} draws changed"
            );
        }
    }
}

/// Reference truncated distribution, computed independently in f64 with a full sort.
fn reference_distribution(logits: &[f32], s: RowSpec) -> Vec<f64> {
    let y: Vec<f64> = logits
        .iter()
        .map(|&v| v as f64 / s.temperature as f64)
        .collect();
    let ymax = y.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = y.iter().map(|&v| (v - ymax).exp()).collect();
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.sort_by(|&a, &b| y[b].partial_cmp(&y[a]).unwrap().then(a.cmp(&b)));
    let mut keep = vec![true; y.len()];
    for i in 0..y.len() {
        if w[i] < s.min_p as f64 {
            keep[i] = false;
        }
        if s.top_k > 0 && y[i] < y[order[s.top_k - 1]] {
            keep[i] = false;
        }
    }
    let z: f64 = (0..y.len()).filter(|&i| keep[i]).map(|i| w[i]).sum();
    let mut above = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        let mut mass = 0.0;
        while j < order.len() && y[order[j]] == y[order[i]] {
            if keep[order[j]] {
                mass += w[order[j]];
            }
            j += 1;
        }
        if above >= s.top_p as f64 * z {
            for &o in &order[i..j] {
                keep[o] = false;
            }
        }
        above += mass;
        i = j;
    }
    let z: f64 = (0..y.len()).filter(|&i| keep[i]).map(|i| w[i]).sum();
    (0..y.len())
        .map(|i| if keep[i] { w[i] / z } else { 0.0 })
        .collect()
}

#[test]
fn empirical_frequencies_match_the_truncated_distribution() {
    let logits: Vec<f32> = [0.3f32, 0.2, 0.15, 0.15, 0.1, 0.05, 0.03, 0.02]
        .iter()
        .map(|p| p.ln())
        .collect();
    let cases = [
        spec(1.0, 0, 1.0, 0.0, 0.0),
        spec(0.8, 6, 0.9, 0.1, 0.0),
        spec(1.5, 0, 0.8, 0.0, 0.0),
        spec(0.7, 4, 1.0, 0.0, 0.0),
    ];
    let draws = 20_000;
    for (ci, base) in cases.into_iter().enumerate() {
        let expect = reference_distribution(&logits, base);
        for backend in BACKENDS {
            let params = SamplingParams {
                temperature: base.temperature,
                top_k: base.top_k,
                top_p: base.top_p,
                min_p: base.min_p,
                ..Default::default()
            };
            let mut seqs: Vec<SequenceSampler> = (0..1000)
                .map(|i| {
                    SequenceSampler::new(
                        SamplingParams {
                            seed: Some(ci as u64 * 100_000 + i),
                            ..params.clone()
                        },
                        &[],
                    )
                })
                .collect();
            let mut counts = vec![0usize; logits.len()];
            let batch = tensor(&vec![logits.clone(); seqs.len()]);
            for _ in 0..draws / seqs.len() {
                let mut refs: Vec<&mut SequenceSampler> = seqs.iter_mut().collect();
                for t in Sampler::with_backend(backend)
                    .sample(&batch, &mut refs)
                    .unwrap()
                {
                    counts[t.id as usize] += 1;
                }
            }
            let mut chi2 = 0.0;
            let mut df = 0;
            for (i, &c) in counts.iter().enumerate() {
                if expect[i] == 0.0 {
                    assert_eq!(c, 0, "case {ci}: token {i} is outside the kept set");
                } else {
                    let e = expect[i] * draws as f64;
                    chi2 += (c as f64 - e).powi(2) / e;
                    df += 1;
                }
            }
            // 99.9th percentile of chi-square with <= 7 degrees of freedom is < 24.4.
            assert!(
                chi2 < 24.4,
                "case {ci} {backend:?}: chi2 {chi2} (df {}) {counts:?} vs {expect:?}",
                df - 1
            );
        }
    }
}

#[test]
fn logprobs_are_raw_log_softmax() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let rows: Vec<Vec<f32>> = (0..3).map(|_| normal_logits(&mut rng, 2000, 3.0)).collect();
    let x = tensor(&rows);
    let lsm = candle_nn::ops::log_softmax(&x, 1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let params = [
        SamplingParams {
            temperature: 0.5,
            logit_bias: vec![(10, 5.0)],
            logprobs: Some(0),
            seed: Some(1),
            ..Default::default()
        },
        SamplingParams {
            logprobs: Some(5),
            repetition_penalty: 1.5,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            top_k: 20,
            logprobs: Some(20),
            seed: Some(2),
            ..Default::default()
        },
    ];
    for backend in BACKENDS {
        let mut seqs: Vec<SequenceSampler> = params
            .iter()
            .map(|p| SequenceSampler::new(p.clone(), &[0, 1, 2]))
            .collect();
        let mut refs: Vec<&mut SequenceSampler> = seqs.iter_mut().collect();
        let out = Sampler::with_backend(backend)
            .sample(&x, &mut refs)
            .unwrap();
        for (r, t) in out.iter().enumerate() {
            assert!(
                (t.logprob - lsm[r][t.id as usize]).abs() < 1e-5,
                "{backend:?} row {r}"
            );
            let n = params[r].logprobs.unwrap();
            assert_eq!(t.top_logprobs.len(), n);
            let mut order: Vec<usize> = (0..rows[r].len()).collect();
            order.sort_by(|&a, &b| lsm[r][b].partial_cmp(&lsm[r][a]).unwrap().then(a.cmp(&b)));
            for (k, &(id, lp)) in t.top_logprobs.iter().enumerate() {
                assert_eq!(id as usize, order[k], "{backend:?} row {r} rank {k}");
                assert!((lp - lsm[r][id as usize]).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn validation_errors_name_the_param() {
    let d = qwen3_defaults();
    let bad =
        |o: SamplingOverrides| param_of(SamplingParams::resolve(&d, &o, 151_936).unwrap_err());
    assert_eq!(
        bad(SamplingOverrides {
            temperature: Some(3.0),
            ..Default::default()
        }),
        "temperature"
    );
    assert_eq!(
        bad(SamplingOverrides {
            top_p: Some(-0.5),
            ..Default::default()
        }),
        "top_p"
    );
    assert_eq!(
        bad(SamplingOverrides {
            top_k: Some(-7),
            ..Default::default()
        }),
        "top_k"
    );
    assert_eq!(
        bad(SamplingOverrides {
            min_p: Some(-0.1),
            ..Default::default()
        }),
        "min_p"
    );
    assert_eq!(
        bad(SamplingOverrides {
            presence_penalty: Some(2.5),
            ..Default::default()
        }),
        "presence_penalty"
    );
    assert_eq!(
        bad(SamplingOverrides {
            frequency_penalty: Some(-2.5),
            ..Default::default()
        }),
        "frequency_penalty"
    );
    assert_eq!(
        bad(SamplingOverrides {
            repetition_penalty: Some(-1.0),
            ..Default::default()
        }),
        "repetition_penalty"
    );
    assert_eq!(
        bad(SamplingOverrides {
            logprobs: Some(50),
            ..Default::default()
        }),
        "logprobs"
    );
    assert_eq!(
        bad(SamplingOverrides {
            logprobs: Some(-3),
            ..Default::default()
        }),
        "logprobs"
    );
    assert_eq!(
        bad(SamplingOverrides {
            logit_bias: Some(HashMap::from([("151936".to_string(), 1.0)])),
            ..Default::default()
        }),
        "logit_bias"
    );
}
