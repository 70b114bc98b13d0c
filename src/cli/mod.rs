//! Command-line front ends. Each subcommand parses its flags here and hands off to the library.

pub mod bench;
pub mod chat;
pub mod debug;
pub mod serve;

use std::path::PathBuf;

/// Where the embedded default model lives: `$TEALIGHT_DEFAULT_MODEL`, else `models/qwen3-tiny`
/// of the source tree this binary was built from, else `./models/qwen3-tiny`. Its weights are
/// made there on first use (`model::embedded`).
pub fn default_model_dir() -> PathBuf {
    let dir = if let Some(dir) =
        std::env::var_os("TEALIGHT_DEFAULT_MODEL").filter(|v| !v.is_empty())
    {
        PathBuf::from(dir)
    } else {
        let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny");
        if built.is_dir() {
            built
        } else {
            PathBuf::from("models/qwen3-tiny")
        }
    };
    crate::model::embedded::ensure_weights(&dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the embedded model's weights could not be made");
        dir
    })
}

/// Applies `--threads` before any thread pool exists (candle and rayon read it once).
pub fn set_cpu_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|&n| n > 0) {
        // SAFETY: called at the top of `main`, before any other thread is spawned, so nothing
        // can read the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
}
