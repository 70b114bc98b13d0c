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
    use crate::fp8::{PROMPT, check_fp8_against_dequantized, load_dir};
    let tmp = tempfile::tempdir().unwrap();
    let logits_fp8 =
        check_fp8_against_dequantized("moe-tiny-k", candle_core::DType::F32, tmp.path());
    let at_load = load_dir(
        &checkpoint_dir("moe-tiny-k"),
        Some(tealight::weights::Quantization::Fp8),
    );
    let (logits_at_load, _) = greedy_model(&at_load, &PROMPT, 1);
    assert_eq!(max_abs_diff(&logits_at_load, &logits_fp8), 0.0);
}
