//! Checkpoint discovery and loading: hub-cache layout, both config layouts, sharding, and clear
//! errors (naming the file) for every way a checkpoint can be broken.

use crate::common;

use candle_core::Device;
use common::*;
use std::path::Path;
use tealight::model::loader::{DtypeChoice, load_model};
use tealight::weights::checkpoint::{CheckpointFiles, resolve_in_hub_cache};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn load_err(dir: &Path) -> String {
    let err = CheckpointFiles::from_dir(dir)
        .and_then(|files| load_model(files, &Device::Cpu, DtypeChoice::F32))
        .err()
        .expect("loading should fail");
    err.to_string()
}

/// A hub cache laid out as huggingface_hub writes it: refs/main names the snapshot, whose files
/// are symlinks into blobs/.
#[test]
fn repo_id_resolves_through_a_hub_cache_without_network() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--Org--Tiny");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for entry in std::fs::read_dir(tiny_model_dir()).unwrap() {
        let entry = entry.unwrap();
        let blob = repo
            .join("blobs")
            .join(format!("blob-{}", entry.file_name().to_string_lossy()));
        std::fs::copy(entry.path(), &blob).unwrap();
        std::os::unix::fs::symlink(&blob, snapshot.join(entry.file_name())).unwrap();
    }
    let files = resolve_in_hub_cache("Org/Tiny", cache.path().to_path_buf(), true).unwrap();
    assert_eq!(files.dir, snapshot);
    let loaded = load_model(files, &Device::Cpu, DtypeChoice::F32).unwrap();
    assert_eq!(loaded.model.config().hidden_size, 128);

    let err = resolve_in_hub_cache("Org/Missing", cache.path().to_path_buf(), true).unwrap_err();
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
}

#[test]
fn both_config_layouts_sharding_and_dtypes_load() {
    // tiny: legacy rope_theta, bf16, one file, tied; tiny-untied: rope_parameters, f16, two shards.
    for shape in ["tiny", "tiny-untied"] {
        let files = CheckpointFiles::from_dir(&checkpoint_dir(shape)).unwrap();
        assert_eq!(files.weights.len(), if shape == "tiny" { 1 } else { 2 });
        for dtype in [DtypeChoice::F32, DtypeChoice::F16, DtypeChoice::Bf16] {
            load_model(files.clone(), &Device::Cpu, dtype).unwrap();
        }
    }
}

#[test]
fn missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&tiny_model_dir(), dir.path());
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    assert!(load_err(dir.path()).contains("no weights"));
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("config.json") && err.contains("missing file"),
        "{err}"
    );

    let sharded = tempfile::tempdir().unwrap();
    copy_dir(&checkpoint_dir("tiny-untied"), sharded.path());
    std::fs::remove_file(sharded.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = load_err(sharded.path());
    assert!(
        err.contains("model-00002-of-00002.safetensors") && err.contains("index"),
        "{err}"
    );
}

#[test]
fn bad_config_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&tiny_model_dir(), dir.path());
    let config = dir.path().join("config.json");
    std::fs::write(&config, "{ not json").unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("config.json") && err.contains("invalid config JSON"),
        "{err}"
    );
    let text = std::fs::read_to_string(tiny_model_dir().join("config.json")).unwrap();
    std::fs::write(
        &config,
        text.replace("Qwen3ForCausalLM", "LlamaForCausalLM"),
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("LlamaForCausalLM") && err.contains("Qwen3ForCausalLM"),
        "{err}"
    );
}

#[test]
fn broken_weights_are_reported_with_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&tiny_model_dir(), dir.path());
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();

    // Truncated file.
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("safetensors"),
        "{err}"
    );

    // A config that asks for a wider layer than the file holds: mis-shaped tensor.
    std::fs::write(&weights, &bytes).unwrap();
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"intermediate_size\": 384", "\"intermediate_size\": 512"),
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("mlp.gate_proj.weight")
            && err.contains("[384, 128]")
            && err.contains("model.safetensors"),
        "{err}"
    );

    // A config with more layers than the file has: missing tensor.
    std::fs::write(
        &config,
        text.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("missing tensor model.layers.2."), "{err}");
}
