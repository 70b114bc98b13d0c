//! What the forward-pass benchmarks share: the Qwen3-0.6B-shaped checkpoint they run.

use std::path::PathBuf;
use tealight::weights::synthetic::{SyntheticSpec, write_checkpoint};

/// `$TEALIGHT_BENCH_MODEL`, else `target/bench-models/0.6b`, written there once with random
/// weights and the embedded model's tokenizer.
pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TEALIGHT_BENCH_MODEL") {
        return PathBuf::from(dir);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/bench-models/0.6b");
    if !dir.join("model.safetensors").is_file() {
        write_checkpoint(
            &SyntheticSpec::qwen3_0_6b(),
            &dir,
            &root.join("models/qwen3-tiny"),
        )
        .expect("write checkpoint");
    }
    dir
}
