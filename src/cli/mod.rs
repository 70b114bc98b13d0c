//! Command-line front ends. Each subcommand parses its flags here and hands off to the library.

pub mod bench;
pub mod chat;
pub mod debug;
pub mod serve;

use std::path::PathBuf;

/// Where the embedded default model lives: `$TEALIGHT_DEFAULT_MODEL`, else `models/qwen3-tiny`
/// of the source tree this binary was built from, else `./models/qwen3-tiny`.
pub fn default_model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TEALIGHT_DEFAULT_MODEL").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny");
    if built.is_dir() {
        return built;
    }
    PathBuf::from("models/qwen3-tiny")
}

/// Applies `--threads` before any thread pool exists (candle and rayon read it once).
pub fn set_cpu_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|&n| n > 0) {
        // SAFETY: called at the top of `main`, before any other thread is spawned, so nothing
        // can read the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
}
