//! Qwen's block-scaled FP8 checkpoints (e4m3 weights, `weight_scale_inv` per 128 × 128 block)
//! and `--quantization fp8`: the same model as its weights dequantized to f32, up to f32
//! rounding (the packed kernel widens each byte exactly and applies each block's scale once to
//! the block's partial sum, where the dequantized weights carry it in every product).

use crate::common;

use candle_core::{DType, Device, Tensor};
use common::*;
use std::collections::HashMap;
use std::path::Path;
use tealight::model::Qwen3Model;
use tealight::model::loader::{DtypeChoice, load_source};
use tealight::weights::ModelSource;
use tealight::weights::Quantization;
use tealight::weights::fp8::Fp8Weight;

fn is_linear(name: &str) -> bool {
    name.ends_with("proj.weight")
}

/// `shape`'s checkpoint with every linear weight in FP8 (scales stored as `scale_dtype`), and
/// the same weights dequantized to f32: `(fp8 dir, f32 dir)`.
fn fp8_checkpoints(
    shape: &str,
    scale_dtype: DType,
    root: &Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = checkpoint_dir(shape);
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let (mut fp8, mut f32) = (HashMap::new(), HashMap::new());
    for (name, t) in tensors {
        if !is_linear(&name) {
            f32.insert(name.clone(), t.clone());
            fp8.insert(name, t);
            continue;
        }
        let q = Fp8Weight::quantize(&t, [128, 128]).unwrap();
        // The stored scales, in the checkpoint's dtype, are what both copies use.
        let scales = Tensor::from_vec(
            q.scales.clone(),
            (q.rows.div_ceil(128), q.cols.div_ceil(128)),
            &Device::Cpu,
        )
        .unwrap()
        .to_dtype(scale_dtype)
        .unwrap();
        let weight =
            Tensor::from_raw_buffer(&q.bytes, DType::F8E4M3, &[q.rows, q.cols], &Device::Cpu)
                .unwrap();
        let stored = Fp8Weight::from_tensors(&weight, &scales, [128, 128]).unwrap();
        f32.insert(name.clone(), stored.dequantize().unwrap());
        fp8.insert(format!("{name}_scale_inv"), scales);
        fp8.insert(name, weight);
    }
    let write = |dir: &Path, tensors: &HashMap<String, Tensor>, quantized: bool| {
        std::fs::create_dir_all(dir).unwrap();
        candle_core::safetensors::save(tensors, dir.join("model.safetensors")).unwrap();
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        if quantized {
            config["quantization_config"] = serde_json::json!({
                "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                "weight_block_size": [128, 128],
            });
        }
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    };
    let (a, b) = (
        root.join(format!("{shape}-fp8")),
        root.join(format!("{shape}-dequantized")),
    );
    write(&a, &fp8, true);
    write(&b, &f32, false);
    (a, b)
}

pub(crate) fn load_dir(dir: &Path, quantization: Option<Quantization>) -> Qwen3Model {
    let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
    load_source(&source, &Device::Cpu, DtypeChoice::Auto, quantization).unwrap()
}

pub(crate) const PROMPT: [u32; 9] = [151644, 872, 198, 3838, 374, 264, 56698, 20538, 30];

/// `shape`'s FP8 checkpoint (written under `root`) served against its dequantized twin: one
/// model up to f32 rounding (logits within 1e-4 of their spread, the same greedy tokens).
/// Returns the FP8 model's logits after the prompt.
pub(crate) fn check_fp8_against_dequantized(
    shape: &str,
    scale_dtype: DType,
    root: &Path,
) -> Vec<f32> {
    let (fp8_dir, f32_dir) = fp8_checkpoints(shape, scale_dtype, root);
    let (logits_fp8, tokens_fp8) = greedy_model(&load_dir(&fp8_dir, None), &PROMPT, 6);
    let (logits_ref, tokens_ref) = greedy_model(&load_dir(&f32_dir, None), &PROMPT, 6);
    let spread = logits_ref.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&logits_fp8, &logits_ref);
    assert!(
        diff < 1e-4 * spread,
        "{shape} {scale_dtype:?}: {diff} of {spread}"
    );
    assert_eq!(tokens_fp8, tokens_ref, "{shape} {scale_dtype:?}");
    logits_fp8
}

#[test]
fn fp8_checkpoint_is_its_dequantized_weights() {
    let tmp = tempfile::tempdir().unwrap();
    for scale_dtype in [DType::BF16, DType::F32] {
        let root = tmp.path().join(format!("{scale_dtype:?}"));
        check_fp8_against_dequantized("tiny-k", scale_dtype, &root);
    }
}

#[test]
fn quantization_fp8_at_load_matches_the_fp8_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (fp8_dir, _) = fp8_checkpoints("tiny-k", DType::F32, tmp.path());
    let checkpoint = load_dir(&fp8_dir, None);
    let at_load = load_dir(&checkpoint_dir("tiny-k"), Some(Quantization::Fp8));
    let (a, ta) = greedy_model(&checkpoint, &PROMPT, 6);
    let (b, tb) = greedy_model(&at_load, &PROMPT, 6);
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    assert_eq!(ta, tb);
    // And it is close to the unquantized model (e4m3 keeps 3 mantissa bits).
    let (c, _) = greedy_model(&load("tiny-k", DtypeChoice::Auto).model, &PROMPT, 1);
    let spread = c.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max_abs_diff(&a, &c) < 0.1 * spread);
}

#[test]
fn a_scale_of_the_wrong_shape_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (fp8_dir, _) = fp8_checkpoints("tiny-k", DType::BF16, tmp.path());
    let path = fp8_dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let name = "model.layers.1.mlp.down_proj.weight_scale_inv";
    tensors.insert(
        name.into(),
        Tensor::ones((3, 3), DType::BF16, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let source = ModelSource::resolve(fp8_dir.to_str().unwrap()).unwrap();
    let err = load_source(&source, &Device::Cpu, DtypeChoice::Auto, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.layers.1.mlp.down_proj.weight") && err.contains("[3, 3]"),
        "{err}"
    );
}
