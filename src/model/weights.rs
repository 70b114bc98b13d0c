//! Memory-mapped safetensors shards with checked, named tensor lookup: every failure says which
//! tensor and which file.

use crate::error::{Error, Result};
use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct WeightStore {
    shards: Vec<(PathBuf, MmapedSafetensors)>,
    routing: HashMap<String, usize>,
    device: Device,
    dtype: DType,
    progress: ProgressBar,
}

impl WeightStore {
    /// Maps every shard and reads its header. Truncated or corrupt files fail here.
    /// `expected_tensors` sizes the progress bar, shown only for checkpoints of `show_bytes`+.
    pub fn open(
        paths: &[PathBuf],
        device: &Device,
        dtype: DType,
        expected_tensors: u64,
    ) -> Result<Self> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut routing = HashMap::new();
        let mut total_bytes = 0u64;
        for (index, path) in paths.iter().enumerate() {
            total_bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            // SAFETY: the file is mapped read-only; a checkpoint changed on disk while the server
            // runs is outside what any inference server can defend against.
            let st = unsafe { MmapedSafetensors::new(path) }.map_err(|e| {
                Error::checkpoint(
                    path,
                    format!("not a readable safetensors file: {}", root_cause(&e)),
                )
            })?;
            for (name, _) in st.tensors() {
                routing.insert(name, index);
            }
            shards.push((path.clone(), st));
        }
        const SHOW_PROGRESS_FROM_BYTES: u64 = 256 << 20;
        let progress = if total_bytes >= SHOW_PROGRESS_FROM_BYTES {
            let bar = ProgressBar::new(expected_tensors);
            bar.set_style(
                ProgressStyle::with_template(
                    "loading weights {bar:40} {pos}/{len} tensors {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Ok(Self {
            shards,
            routing,
            device: device.clone(),
            dtype,
            progress,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn contains(&self, name: &str) -> bool {
        self.routing.contains_key(name)
    }

    /// Loads `name`, checks its shape, converts it to the compute dtype on the target device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.load(name, shape, Some(self.dtype))
    }

    /// Loads `name` and checks its shape, keeping the dtype the checkpoint stores it in.
    pub fn get_stored(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.load(name, shape, None)
    }

    fn load(&self, name: &str, shape: &[usize], dtype: Option<DType>) -> Result<Tensor> {
        let index = *self.routing.get(name).ok_or_else(|| {
            Error::checkpoint(self.describe_files(), format!("missing tensor {name}"))
        })?;
        let (path, st) = &self.shards[index];
        let view = st
            .get(name)
            .map_err(|e| Error::checkpoint(path, format!("tensor {name}: {}", root_cause(&e))))?;
        if view.shape() != shape {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    view.shape()
                ),
            ));
        }
        let tensor = view
            .load(&self.device)
            .and_then(|t| match dtype {
                Some(dtype) => t.to_dtype(dtype),
                None => Ok(t),
            })
            .map_err(|e| Error::checkpoint(path, format!("tensor {name}: {}", root_cause(&e))))?;
        self.progress.inc(1);
        Ok(tensor)
    }

    pub fn finish_progress(&self) {
        self.progress.finish_and_clear();
    }

    fn describe_files(&self) -> PathBuf {
        match self.shards.as_slice() {
            [(only, _)] => only.clone(),
            [(first, _), ..] => first.parent().map(Path::to_path_buf).unwrap_or_default(),
            [] => PathBuf::new(),
        }
    }
}

/// candle wraps errors with backtraces and paths; the innermost message is what users need.
fn root_cause(e: &candle_core::Error) -> String {
    let mut current: &dyn std::error::Error = e;
    while let Some(next) = current.source() {
        current = next;
    }
    let text = current.to_string();
    text.lines().next().unwrap_or_default().to_owned()
}
