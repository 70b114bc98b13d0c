//! Qwen3-MoE specifics: the synthetic MoE checkpoints are the bytes transformers ran on. The
//! forward pass against transformers (logits, greedy, chunked, batched = solo) is in
//! model_parity.rs, which runs every shape.

use crate::common;

use common::*;
use sha2::Digest;

#[test]
fn generated_moe_weights_are_the_ones_the_reference_ran_on() {
    for shape in ["moe-tiny", "moe-tiny-b"] {
        let recorded = &model_fixtures(shape).weights_sha256;
        assert!(!recorded.is_empty(), "{shape}: no recorded digests");
        let dir = checkpoint_dir(shape);
        for (file, want) in recorded {
            let bytes = std::fs::read(dir.join(file)).unwrap();
            let got: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(&got, want, "{shape}/{file}");
        }
    }
}

/// Qwen's FP8 MoE checkpoints store every expert's projections block-scaled e4m3 (the router
/// stays 16-bit): served, they are the model of their dequantized weights, and
/// `--quantization fp8` at load makes the same model.
#[test]
fn an_fp8_moe_checkpoint_is_its_dequantized_weights() {
    use crate::fp8::{PROMPT, fp8_checkpoints, load_dir};
    let tmp = tempfile::tempdir().unwrap();
    let (fp8_dir, f32_dir) = fp8_checkpoints("moe-tiny-k", candle_core::DType::F32, tmp.path());
    let fp8 = load_dir(&fp8_dir, None);
    let reference = load_dir(&f32_dir, None);
    let (logits_fp8, tokens_fp8) = greedy_model(&fp8, &PROMPT, 6);
    let (logits_ref, tokens_ref) = greedy_model(&reference, &PROMPT, 6);
    let spread = logits_ref.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&logits_fp8, &logits_ref);
    assert!(diff < 1e-4 * spread, "{diff} of {spread}");
    assert_eq!(tokens_fp8, tokens_ref);
    let at_load = load_dir(
        &checkpoint_dir("moe-tiny-k"),
        Some(tealight::weights::Quantization::Fp8),
    );
    let (logits_at_load, _) = greedy_model(&at_load, &PROMPT, 1);
    assert_eq!(max_abs_diff(&logits_at_load, &logits_fp8), 0.0);
}
