//! The embedded default model, `models/qwen3-tiny`: its config and the real Qwen3 tokenizer are
//! in the source tree, its random weights are not. They are made on first use from
//! [`SyntheticSpec::tiny`], bit for bit the file the reference fixtures were recorded with (its
//! SHA-256 is committed beside it and checked by the tests), so the 38 MiB of weights neither
//! bloat the repository nor travel with every copy of the working tree. Resolving a checkpoint
//! directory ([`super::checkpoint::CheckpointFiles::resolve`]) makes them.

use super::synthetic::{SyntheticSpec, VOCAB, write_weights};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

pub const WEIGHTS: &str = "model.safetensors";

/// Where the embedded model can be loaded from: `dir` itself once it holds weights (made there
/// if missing), else a copy under the temporary directory when `dir` is read-only. Any other
/// model directory (one with weights, or not shaped like the tiny model) is returned as is.
pub fn ensure_weights(dir: &Path) -> Result<PathBuf> {
    if !lacks_tiny_weights(dir) {
        return Ok(dir.to_path_buf());
    }
    let Err(first) = write_weights_into(dir) else {
        return Ok(dir.to_path_buf());
    };
    let copy =
        std::env::temp_dir().join(format!("tealight-qwen3-tiny-{}", env!("CARGO_PKG_VERSION")));
    if !copy.join(WEIGHTS).is_file() {
        std::fs::create_dir_all(&copy)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), copy.join(entry.file_name()))?;
            }
        }
        write_weights_into(&copy).map_err(|e| {
            Error::checkpoint(
                dir,
                format!(
                    "cannot make the weights there ({first}) nor in {}: {e}",
                    copy.display()
                ),
            )
        })?;
    }
    Ok(copy)
}

/// A directory with the tiny model's config and tokenizer but no safetensors file.
fn lacks_tiny_weights(dir: &Path) -> bool {
    let has_weights = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
    });
    if has_weights || !dir.join("tokenizer.json").is_file() {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
        return false;
    };
    let Ok(cfg) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let tiny = SyntheticSpec::tiny();
    let is = |key: &str, want: usize| cfg[key].as_u64() == Some(want as u64);
    is("hidden_size", tiny.hidden_size)
        && is("intermediate_size", tiny.intermediate_size)
        && is("num_hidden_layers", tiny.num_hidden_layers)
        && is("num_attention_heads", tiny.num_attention_heads)
        && is("num_key_value_heads", tiny.num_key_value_heads)
        && is("head_dim", tiny.head_dim)
        && is("vocab_size", VOCAB)
        && cfg["tie_word_embeddings"].as_bool() == Some(tiny.tie_word_embeddings)
}

/// Written under a temporary name and renamed: processes starting together never read a
/// partial file, and the last rename leaves identical bytes.
fn write_weights_into(dir: &Path) -> Result<()> {
    let tmp = dir.join(format!(".{WEIGHTS}.{}.tmp", std::process::id()));
    let result = write_weights(&SyntheticSpec::tiny(), &tmp)
        .and_then(|()| Ok(std::fs::rename(&tmp, dir.join(WEIGHTS))?));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_the_weights_once_and_leaves_other_models_alone() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny");
        let dir = tempfile::tempdir().unwrap();
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        assert_eq!(ensure_weights(dir.path()).unwrap(), dir.path());
        let made = std::fs::metadata(dir.path().join(WEIGHTS)).unwrap();
        assert!(made.len() > 30 << 20);
        // Present now: nothing is rewritten.
        ensure_weights(dir.path()).unwrap();
        let again = std::fs::metadata(dir.path().join(WEIGHTS)).unwrap();
        assert_eq!(made.modified().unwrap(), again.modified().unwrap());

        // Another shape without weights is not touched.
        let other = tempfile::tempdir().unwrap();
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        cfg["hidden_size"] = 256.into();
        std::fs::write(other.path().join("config.json"), cfg.to_string()).unwrap();
        std::fs::copy(
            src.join("tokenizer.json"),
            other.path().join("tokenizer.json"),
        )
        .unwrap();
        assert_eq!(ensure_weights(other.path()).unwrap(), other.path());
        assert!(!other.path().join(WEIGHTS).exists());
    }
}
