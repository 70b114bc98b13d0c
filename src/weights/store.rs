//! Memory-mapped weights — safetensors shards or one GGUF file — with checked, named tensor
//! lookup: every failure says which tensor and which file. Tensors are asked for by their
//! transformers names; a GGUF file's are mapped (see [`super::gguf::names`]).

use super::fp8::Fp8Weight;
use super::gguf::{GgmlType, GgufFile};
use super::quantization::Quantization;
use super::quantized::QuantizedWeight;
use crate::error::{Error, Result};
use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct WeightStore {
    source: Source,
    /// Saved from the bare backbone (see [`backbone_names`]).
    backbone: bool,
    device: Device,
    dtype: DType,
    progress: ProgressBar,
    /// `--quantization`: dense projection weights are quantized to this as they load.
    quantize: Option<Quantization>,
    /// The checkpoint's FP8 block shape, when its linear weights are block-scaled e4m3.
    fp8_block: Option<[usize; 2]>,
}

enum Source {
    Safetensors {
        shards: Vec<(PathBuf, MmapedSafetensors)>,
        /// transformers name → the shard holding it and the name it is stored under (they
        /// differ in a checkpoint saved from the bare backbone, see [`backbone_names`]).
        routing: HashMap<String, (usize, String)>,
    },
    Gguf(Arc<GgufFile>),
}

/// A tensor's bytes in a GGUF file (for an expert, its slice of the stacked tensor).
struct GgufTensor<'f> {
    name: String,
    dtype: GgmlType,
    bytes: &'f [u8],
}

/// A projection weight as stored: dense (any float dtype) or in a GGML block format.
/// Blocks of `--quantization fp8`, as Qwen's FP8 checkpoints use.
const FP8_BLOCK: [usize; 2] = [128, 128];

pub enum StoredWeight {
    Dense(Tensor),
    Quantized(QuantizedWeight),
    Fp8(Fp8Weight),
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
                routing.insert(name.clone(), (index, name));
            }
            shards.push((path.clone(), st));
        }
        let backbone = backbone_names(&mut routing);
        Ok(Self {
            backbone,
            source: Source::Safetensors { shards, routing },
            device: device.clone(),
            dtype,
            progress: progress_bar(total_bytes, expected_tensors),
            quantize: None,
            fp8_block: None,
        })
    }

    /// Weights from a GGUF file (already mapped and checked).
    pub fn open_gguf(
        file: Arc<GgufFile>,
        device: &Device,
        dtype: DType,
        expected_tensors: u64,
    ) -> Self {
        let bytes = std::fs::metadata(file.path()).map(|m| m.len()).unwrap_or(0);
        Self {
            backbone: false,
            source: Source::Gguf(file),
            device: device.clone(),
            dtype,
            progress: progress_bar(bytes, expected_tensors),
            quantize: None,
            fp8_block: None,
        }
    }

    /// Quantizes dense projection weights as they load (`--quantization`).
    pub fn quantize_to(mut self, quantization: Option<Quantization>) -> Self {
        self.quantize = quantization;
        self
    }

    /// Reads e4m3 linear weights with their `weight_scale_inv` in blocks of `block`.
    pub fn with_fp8_block(mut self, block: Option<[usize; 2]>) -> Self {
        self.fp8_block = block;
        self
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// A bare backbone without an output head (`Qwen3-Embedding-8B` ships no `lm_head.weight`
    /// although its config unties it): the input embedding stands in for the head, which such
    /// a checkpoint's users (embedding) never read.
    pub fn is_headless_backbone(&self) -> bool {
        self.backbone && !self.contains("lm_head.weight")
    }

    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Safetensors { routing, .. } => routing.contains_key(name),
            Source::Gguf(file) => super::gguf::names::expert_slice(name)
                .map(|(stacked, _)| stacked)
                .or_else(|| super::gguf::names::to_gguf(name))
                .is_some_and(|n| file.tensor(&n).is_some()),
        }
    }

    /// Loads `name`, checks its shape, converts it to the compute dtype on the target device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.load(name, shape, Some(self.dtype))
    }

    /// Loads `name` and checks its shape, keeping the dtype the checkpoint stores it in.
    pub fn get_stored(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.load(name, shape, None)
    }

    /// Loads a projection weight `name` (`[out, in]`), dense in its stored dtype or quantized
    /// as stored; with `--quantization`, dense weights are quantized here.
    pub fn get_weight(&self, name: &str, shape: &[usize]) -> Result<StoredWeight> {
        let stored = match &self.source {
            Source::Gguf(file) => self.gguf_weight(file, name, shape)?,
            Source::Safetensors { .. } => {
                let tensor = self.get_stored(name, shape)?;
                if tensor.dtype() == DType::F8E4M3 {
                    StoredWeight::Fp8(self.fp8_weight(name, &tensor)?)
                } else {
                    StoredWeight::Dense(tensor)
                }
            }
        };
        let (StoredWeight::Dense(w), Some(quantization)) = (&stored, self.quantize) else {
            return Ok(stored);
        };
        let fail = |e: candle_core::Error| {
            Error::checkpoint(
                self.describe_files(),
                format!(
                    "tensor {name}: cannot quantize to {quantization:?}: {}",
                    root_cause(&e)
                ),
            )
        };
        let head = name == "lm_head.weight" || name == "model.embed_tokens.weight";
        let Some(kind) = quantization.ggml_type() else {
            // Qwen's FP8 checkpoints (and vLLM's `--quantization fp8`) keep the embedding and
            // head in 16 bits.
            if head {
                return Ok(stored);
            }
            return Ok(StoredWeight::Fp8(
                Fp8Weight::quantize(w, FP8_BLOCK).map_err(fail)?,
            ));
        };
        // The embedding/head matrix keeps more bits, as llama.cpp's Q4_K_M does.
        let kind = if head && kind == GgmlType::Q4_K {
            GgmlType::Q6_K
        } else {
            kind
        };
        Ok(StoredWeight::Quantized(
            QuantizedWeight::quantize(w, kind).map_err(fail)?,
        ))
    }

    /// An e4m3 weight and its `weight_scale_inv`, checked against the configured blocks.
    fn fp8_weight(&self, name: &str, weight: &Tensor) -> Result<Fp8Weight> {
        let fail =
            |m: String| Error::checkpoint(self.describe_files(), format!("tensor {name}: {m}"));
        let block = self.fp8_block.ok_or_else(|| {
            fail("is F8_E4M3 but config.json has no fp8 quantization_config".into())
        })?;
        let scale_name = format!("{name}_scale_inv");
        let scale_inv = self.load_any_shape(&scale_name)?;
        Fp8Weight::from_tensors(weight, &scale_inv, block).map_err(fail)
    }

    fn gguf_weight(&self, file: &GgufFile, name: &str, shape: &[usize]) -> Result<StoredWeight> {
        let tensor = self.gguf_tensor(file, name, shape)?;
        if tensor.dtype.is_float() {
            return Ok(StoredWeight::Dense(self.load(name, shape, None)?));
        }
        let weight = QuantizedWeight::new(tensor.dtype, shape[0], shape[1], tensor.bytes.to_vec())
            .map_err(|m| file.error(format!("tensor {}: {m}", tensor.name)))?;
        self.progress.inc(1);
        Ok(StoredWeight::Quantized(weight))
    }

    /// The GGUF bytes of transformers tensor `name` — a tensor of the file, or one expert's
    /// slice of a stacked `[experts, out, in]` expert tensor — checked for shape and for a type
    /// tealight reads.
    fn gguf_tensor<'f>(
        &self,
        file: &'f GgufFile,
        name: &str,
        shape: &[usize],
    ) -> Result<GgufTensor<'f>> {
        let (gguf_name, expert) = match super::gguf::names::expert_slice(name) {
            Some((stacked, expert)) => (stacked, Some(expert)),
            None => (
                super::gguf::names::to_gguf(name)
                    .ok_or_else(|| file.error(format!("no GGUF name for tensor {name}")))?,
                None,
            ),
        };
        let info = file
            .tensor(&gguf_name)
            .ok_or_else(|| file.error(format!("missing tensor {gguf_name}")))?;
        let all = file.bytes(info);
        let (dims, bytes) = match expert {
            None => (&info.dims[..], all),
            Some(e) => match &info.dims[..] {
                [experts, rest @ ..] if e < *experts => {
                    let per = all.len() / experts;
                    (rest, &all[e * per..(e + 1) * per])
                }
                dims => {
                    return Err(file.error(format!(
                        "tensor {gguf_name} of shape {dims:?} has no expert {e}"
                    )));
                }
            },
        };
        if dims != shape {
            let what = expert.map_or(String::new(), |e| format!(" (expert {e})"));
            return Err(file.error(format!(
                "tensor {gguf_name}{what} has shape {dims:?}, expected {shape:?}"
            )));
        }
        if info.dtype.candle().is_none() {
            return Err(file.error(format!(
                "tensor {gguf_name} has type {}, which tealight does not read (it reads {})",
                info.dtype,
                GgmlType::supported_names()
            )));
        }
        Ok(GgufTensor {
            name: gguf_name,
            dtype: info.dtype,
            bytes,
        })
    }

    /// A safetensors tensor of whatever shape it has, on the host (scale tensors).
    fn load_any_shape(&self, name: &str) -> Result<Tensor> {
        let (path, st, stored) = self.stored(name)?;
        st.load(stored, &Device::Cpu)
            .map_err(|e| Error::checkpoint(path, format!("tensor {name}: {}", root_cause(&e))))
    }

    /// The safetensors shard holding transformers tensor `name`, and the name it has there.
    fn stored(&self, name: &str) -> Result<(&PathBuf, &MmapedSafetensors, &str)> {
        let missing = || Error::checkpoint(self.describe_files(), format!("missing tensor {name}"));
        let Source::Safetensors { shards, routing } = &self.source else {
            return Err(missing());
        };
        let (index, stored) = routing.get(name).ok_or_else(missing)?;
        let (path, st) = &shards[*index];
        Ok((path, st, stored))
    }

    fn load(&self, name: &str, shape: &[usize], dtype: Option<DType>) -> Result<Tensor> {
        if let Source::Gguf(file) = &self.source {
            return self.load_gguf(file, name, shape, dtype);
        }
        let (path, st, stored) = self.stored(name)?;
        let view = st
            .get(stored)
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

    /// A GGUF tensor as a dense tensor: floats as stored, block formats dequantized to f32;
    /// then converted to `dtype` if given.
    fn load_gguf(
        &self,
        file: &GgufFile,
        name: &str,
        shape: &[usize],
        dtype: Option<DType>,
    ) -> Result<Tensor> {
        let GgufTensor {
            name: gguf_name,
            dtype: stored,
            bytes,
        } = self.gguf_tensor(file, name, shape)?;
        let fail =
            |e: candle_core::Error| file.error(format!("tensor {gguf_name}: {}", root_cause(&e)));
        let host = match stored {
            GgmlType::F32 => Tensor::from_raw_buffer(bytes, DType::F32, shape, &Device::Cpu),
            GgmlType::F16 => Tensor::from_raw_buffer(bytes, DType::F16, shape, &Device::Cpu),
            GgmlType::BF16 => Tensor::from_raw_buffer(bytes, DType::BF16, shape, &Device::Cpu),
            kind => {
                let rows = shape.iter().rev().skip(1).product();
                let cols = shape.last().copied().unwrap_or(1);
                QuantizedWeight::new(kind, rows, cols, bytes.to_vec())
                    .map_err(|m| file.error(format!("tensor {gguf_name}: {m}")))?
                    .dequantize()
                    .and_then(|t| t.reshape(shape))
            }
        }
        .map_err(fail)?;
        let tensor = host
            .to_device(&self.device)
            .and_then(|t| match dtype {
                Some(dtype) => t.to_dtype(dtype),
                None => Ok(t),
            })
            .map_err(fail)?;
        self.progress.inc(1);
        Ok(tensor)
    }

    pub fn finish_progress(&self) {
        self.progress.finish_and_clear();
    }

    fn describe_files(&self) -> PathBuf {
        let shards = match &self.source {
            Source::Gguf(file) => return file.path().to_path_buf(),
            Source::Safetensors { shards, .. } => shards,
        };
        match shards.as_slice() {
            [(only, _)] => only.clone(),
            [(first, _), ..] => first.parent().map(Path::to_path_buf).unwrap_or_default(),
            [] => PathBuf::new(),
        }
    }
}

/// A checkpoint saved from the bare backbone (`Qwen3Model`, as the published Qwen3-Embedding
/// checkpoints are) names its tensors `embed_tokens.weight`, `layers.0.…`, `norm.weight`:
/// they are found under the `model.` names the causal LM uses too.
/// Returns whether the checkpoint is such a backbone.
fn backbone_names(routing: &mut HashMap<String, (usize, String)>) -> bool {
    let bare = !routing.contains_key("model.embed_tokens.weight")
        && routing.contains_key("embed_tokens.weight");
    if !bare {
        return false;
    }
    let backbone: Vec<(String, (usize, String))> = routing
        .iter()
        .filter(|(name, _)| !name.starts_with("lm_head.") && !name.starts_with("model."))
        .map(|(name, place)| (format!("model.{name}"), place.clone()))
        .collect();
    routing.extend(backbone);
    true
}

/// A progress bar for loads of `SHOW_PROGRESS_FROM_BYTES` and more; hidden below.
fn progress_bar(total_bytes: u64, expected_tensors: u64) -> ProgressBar {
    const SHOW_PROGRESS_FROM_BYTES: u64 = 256 << 20;
    if total_bytes < SHOW_PROGRESS_FROM_BYTES {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(expected_tensors);
    bar.set_style(
        ProgressStyle::with_template("loading weights {bar:40} {pos}/{len} tensors {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
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

#[cfg(test)]
mod tests {
    use super::*;

    fn place(shard: usize, name: &str) -> (usize, String) {
        (shard, name.to_owned())
    }

    #[test]
    fn a_bare_backbone_is_read_under_the_causal_lm_names() {
        let mut routing: HashMap<String, (usize, String)> = [
            "embed_tokens.weight",
            "layers.0.mlp.up_proj.weight",
            "norm.weight",
        ]
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_string(), place(i, name)))
        .collect();
        assert!(backbone_names(&mut routing));
        assert_eq!(
            routing["model.layers.0.mlp.up_proj.weight"],
            place(1, "layers.0.mlp.up_proj.weight")
        );
        assert_eq!(routing["model.norm.weight"], place(2, "norm.weight"));
        // A causal LM's names are left as they are.
        let mut lm: HashMap<String, (usize, String)> =
            ["model.embed_tokens.weight", "lm_head.weight"]
                .iter()
                .map(|name| (name.to_string(), place(0, name)))
                .collect();
        assert!(!backbone_names(&mut lm));
        assert_eq!(lm.len(), 2);
    }
}
