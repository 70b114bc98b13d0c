//! Finds a checkpoint's files: a local directory, or a Hugging Face repo id resolved through the
//! hub's cache (offline first; downloads only when the cache lacks a file and the hub is allowed).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const SINGLE_WEIGHTS_FILE: &str = "model.safetensors";
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// The files of one checkpoint, all checked to exist.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub generation_config: Option<PathBuf>,
    pub tokenizer: PathBuf,
    pub tokenizer_config: Option<PathBuf>,
    pub weights: Vec<PathBuf>,
}

impl CheckpointFiles {
    /// Resolves `--model`: an existing directory is used as is; anything else that looks like
    /// `org/name` is looked up in the hub cache.
    pub fn resolve(model: &str) -> Result<Self> {
        let path = Path::new(model);
        if path.is_dir() {
            // The embedded model's weights are made on first use.
            return Self::from_dir(&super::embedded::ensure_weights(path)?);
        }
        if looks_like_repo_id(model) {
            return hub::resolve(model);
        }
        Err(Error::checkpoint(
            path,
            "no such directory, and not a Hugging Face repo id (org/name)",
        ))
    }

    /// Collects the files of a checkpoint directory, naming the first one that is missing.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let required = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::checkpoint(&p, "missing file"))
            }
        };
        let optional = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        let config = required(CONFIG_FILE)?;
        let tokenizer = required(TOKENIZER_FILE)?;
        let weights = weight_files(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            generation_config: optional(GENERATION_CONFIG_FILE),
            tokenizer,
            tokenizer_config: optional(TOKENIZER_CONFIG_FILE),
            weights,
        })
    }
}

/// A draft head's files — its config.json and weights; it has no tokenizer of its own — from
/// a directory or a hub id (the hub cache first, as for a checkpoint).
pub fn resolve_head(model: &str) -> Result<(PathBuf, Vec<PathBuf>)> {
    let path = Path::new(model);
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else if looks_like_repo_id(model) {
        hub::head_dir(model)?
    } else {
        return Err(Error::checkpoint(
            path,
            "no such directory, and not a Hugging Face repo id (org/name)",
        ));
    };
    let config = dir.join(CONFIG_FILE);
    if !config.is_file() {
        return Err(Error::checkpoint(&config, "missing file"));
    }
    Ok((config, head_weight_files(&dir)?))
}

/// A draft head's weights: safetensors, or else a `pytorch_model.bin` converted to it.
fn head_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let bin = dir.join(super::pytorch_bin::PYTORCH_WEIGHTS_FILE);
    match weight_files(dir) {
        Err(_) if bin.is_file() => Ok(vec![super::pytorch_bin::as_safetensors(&bin)?]),
        found => found,
    }
}

/// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if index.is_file() {
        let shards = shard_names(&index)?;
        return shards
            .into_iter()
            .map(|name| {
                let p = dir.join(&name);
                if p.is_file() {
                    Ok(p)
                } else {
                    Err(Error::checkpoint(
                        &p,
                        format!("missing file (listed in {WEIGHTS_INDEX_FILE})"),
                    ))
                }
            })
            .collect();
    }
    let single = dir.join(SINGLE_WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(Error::checkpoint(
        dir,
        format!("no weights: neither {SINGLE_WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} is there"),
    ))
}

/// The distinct shard file names of a safetensors index, in first-seen order.
pub fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index)
        .map_err(|e| Error::checkpoint(index, format!("cannot read: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint(index, format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::checkpoint(index, "no \"weight_map\" object"))?;
    let mut names: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::checkpoint(
                index,
                format!("weight_map entry {tensor:?} is not a file name"),
            )
        })?;
        if !is_plain_relative(file) {
            return Err(Error::checkpoint(
                index,
                format!(
                    "weight_map entry {tensor:?} names {file:?}: shard names must be relative \
                     paths inside the checkpoint (no \"..\", no absolute paths)"
                ),
            ));
        }
        if !names.iter().any(|n| n == file) {
            names.push(file.to_owned());
        }
    }
    if names.is_empty() {
        return Err(Error::checkpoint(index, "weight_map is empty"));
    }
    Ok(names)
}

/// A path that stays inside the directory it is joined to: only normal components.
fn is_plain_relative(name: &str) -> bool {
    use std::path::Component;
    !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn looks_like_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

mod hub {
    use super::*;
    use hf_hub::{Cache, Repo, RepoType};

    /// The hub cache root: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
    pub fn cache_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(dir));
        }
        if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(home).join("hub"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
    }

    fn offline() -> bool {
        std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes" | "ON" | "on"))
            .unwrap_or(false)
    }

    pub fn resolve(repo_id: &str) -> Result<CheckpointFiles> {
        resolve_in(repo_id, cache_root(repo_id)?, offline())
    }

    /// The hub cache root, or why there is none.
    fn cache_root(repo_id: &str) -> Result<PathBuf> {
        cache_dir().ok_or_else(|| {
            Error::checkpoint(
                repo_id,
                "no hub cache directory (set HF_HUB_CACHE or HF_HOME)",
            )
        })
    }

    /// Resolves `repo_id` in the hub cache at `cache_root`; downloads into it only when the
    /// cache lacks files and `offline` is false.
    pub fn resolve_in(
        repo_id: &str,
        cache_root: PathBuf,
        offline: bool,
    ) -> Result<CheckpointFiles> {
        cached_or_fetched(
            repo_id,
            cache_root,
            offline,
            true,
            CheckpointFiles::from_dir,
        )
    }

    /// The directory of a draft head's files in the hub cache, fetched into it when they are
    /// missing and downloads are allowed.
    pub fn head_dir(repo_id: &str) -> Result<PathBuf> {
        cached_or_fetched(repo_id, cache_root(repo_id)?, offline(), false, |dir| {
            super::head_weight_files(dir)?;
            Ok(dir.to_path_buf())
        })
    }

    /// What `complete` makes of `repo_id`'s directory in the hub cache at `cache_root`; when it
    /// refuses the cached one, the files are fetched first (with the tokenizer's when
    /// `with_tokenizer`) unless `offline`.
    fn cached_or_fetched<T>(
        repo_id: &str,
        cache_root: PathBuf,
        offline: bool,
        with_tokenizer: bool,
        complete: impl Fn(&Path) -> Result<T>,
    ) -> Result<T> {
        let cache = Cache::new(cache_root.clone());
        let cached = cache.repo(Repo::new(repo_id.to_owned(), RepoType::Model));
        if let Some(config) = cached.get(CONFIG_FILE)
            && let Some(dir) = config.parent()
            && let Ok(found) = complete(dir)
        {
            return Ok(found);
        }
        if offline {
            return Err(Error::checkpoint(
                cache_root.join(format!("models--{}", repo_id.replace('/', "--"))),
                format!("{repo_id} is not complete in the hub cache and HF_HUB_OFFLINE is set"),
            ));
        }
        complete(&download_files(repo_id, cache_root, with_tokenizer)?)
    }

    /// Fetches config.json, the weights and (`with_tokenizer`) the tokenizer files into the
    /// cache; returns the directory they are in.
    fn download_files(repo_id: &str, cache_root: PathBuf, with_tokenizer: bool) -> Result<PathBuf> {
        let fail = |e: hf_hub::api::sync::ApiError| {
            Error::checkpoint(
                repo_id,
                format!("cannot download from the Hugging Face hub: {e}"),
            )
        };
        let api = hf_hub::api::sync::ApiBuilder::new()
            .with_cache_dir(cache_root)
            .with_progress(true)
            .build()
            .map_err(fail)?;
        let repo = api.model(repo_id.to_owned());
        let config = repo.get(CONFIG_FILE).map_err(fail)?;
        if with_tokenizer {
            repo.get(TOKENIZER_FILE).map_err(fail)?;
            for optional in [GENERATION_CONFIG_FILE, TOKENIZER_CONFIG_FILE] {
                let _ = repo.get(optional);
            }
        }
        match repo.get(WEIGHTS_INDEX_FILE) {
            Ok(index) => {
                for shard in shard_names(&index)? {
                    repo.get(&shard).map_err(fail)?;
                }
            }
            // A draft head may ship PyTorch weights only.
            Err(_) => match repo.get(SINGLE_WEIGHTS_FILE) {
                Err(_) if !with_tokenizer => {
                    repo.get(super::super::pytorch_bin::PYTORCH_WEIGHTS_FILE)
                        .map_err(fail)?;
                }
                other => {
                    other.map_err(fail)?;
                }
            },
        }
        config
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| Error::checkpoint(&config, "downloaded file has no directory"))
    }
}

pub use hub::{cache_dir as hub_cache_dir, resolve_in as resolve_in_hub_cache};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_cannot_leave_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join(WEIGHTS_INDEX_FILE);
        for bad in [
            "../x.safetensors",
            "/etc/passwd",
            "a/../../b",
            "",
            "./a.safetensors",
        ] {
            let json = serde_json::json!({"weight_map": {"w": bad}});
            std::fs::write(&index, json.to_string()).unwrap();
            let err = shard_names(&index).unwrap_err().to_string();
            assert!(err.contains("shard names must be relative"), "{bad}: {err}");
        }
        let json = serde_json::json!({"weight_map": {"w": "model-00001-of-00002.safetensors"}});
        std::fs::write(&index, json.to_string()).unwrap();
        assert_eq!(shard_names(&index).unwrap().len(), 1);
    }

    #[test]
    fn repo_id_shape() {
        assert!(looks_like_repo_id("Qwen/Qwen3-4B"));
        assert!(looks_like_repo_id("org/name.v2"));
        assert!(!looks_like_repo_id("./Qwen3-4B"));
        assert!(!looks_like_repo_id("/abs/path"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("plain"));
        assert!(!looks_like_repo_id("../x"));
    }
}
