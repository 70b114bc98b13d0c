//! `pytorch_model.bin` (a PyTorch zip of a state dict), as many published EAGLE-3 heads ship
//! their weights: converted once into a safetensors file the weight store maps like any other.
//!
//! The copy goes to the system's temporary directory, named by the source's path, size and
//! modification time, so a restart reuses it and a changed file is converted again. Tensors of
//! types the reader does not take (a head's boolean `t2d` map, which nothing reads) are left out.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// The file name a PyTorch checkpoint goes by.
pub const PYTORCH_WEIGHTS_FILE: &str = "pytorch_model.bin";

/// A safetensors copy of the state dict in `bin`, converted now unless an up-to-date one exists.
pub fn as_safetensors(bin: &Path) -> Result<PathBuf> {
    let fail = |why: String| Error::checkpoint(bin, why);
    let meta = std::fs::metadata(bin).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut key = std::collections::hash_map::DefaultHasher::new();
    (bin, meta.len(), meta.modified().ok()).hash(&mut key);
    let dir = std::env::temp_dir().join("tealight-converted");
    let out = dir.join(format!("{:016x}.safetensors", key.finish()));
    if out.is_file() {
        return Ok(out);
    }
    let pth = candle_core::pickle::PthTensors::new(bin, None)
        .map_err(|e| fail(format!("not a readable PyTorch checkpoint: {e}")))?;
    let mut tensors = HashMap::new();
    for name in pth.tensor_infos().keys() {
        if let Some(tensor) = pth
            .get(name)
            .map_err(|e| fail(format!("tensor {name}: {e}")))?
        {
            tensors.insert(name.clone(), tensor);
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot convert into {dir:?}: {e}")))?;
    // Written aside and renamed, so a half-written copy is never taken for a converted one.
    let partial = out.with_extension(format!("partial{}", std::process::id()));
    candle_core::safetensors::save(&tensors, &partial)
        .map_err(|e| fail(format!("cannot write its safetensors copy: {e}")))?;
    std::fs::rename(&partial, &out)
        .map_err(|e| fail(format!("cannot write its safetensors copy: {e}")))?;
    tracing::info!(from = %bin.display(), to = %out.display(), "PyTorch weights converted to safetensors");
    Ok(out)
}
