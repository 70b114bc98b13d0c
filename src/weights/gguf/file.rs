//! A GGUF file, memory-mapped: the header (metadata and tensor table) parsed and checked up
//! front, tensor bytes read straight from the mapping when a weight is built.
//!
//! Our own reader rather than candle's `gguf_file::Content::read`: that one stops at the first
//! tensor of a type it does not know with a message that names neither the tensor nor the type,
//! and reads through a `Read` instead of the mapping. The metadata values are candle's
//! [`Value`], so metadata written by candle's writer (used by the tests) reads back as is.

use super::types::GgmlType;
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::Value;
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: usize = 32;
/// Limits that keep a corrupt header from asking for absurd allocations.
const MAX_DIMS: usize = 4;
const MAX_VALUE_DEPTH: usize = 8;

/// One tensor's entry in the table: row-major dims (`[rows, cols]` for a matrix, the reverse of
/// GGUF's innermost-first order), its type and where its bytes lie in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub dims: Vec<usize>,
    pub dtype: GgmlType,
    /// Absolute byte range in the file.
    pub start: usize,
    pub len: usize,
}

pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    metadata: HashMap<String, Value>,
    tensors: HashMap<String, TensorInfo>,
    /// Tensor names in file order.
    order: Vec<String>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.order.len())
            .field("metadata", &self.metadata.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps `path` and parses its header. Errors name the file and, where one is at fault, the
    /// tensor: a truncated file, a tensor past the end, an unknown type.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::checkpoint(path, format!("cannot open: {e}")))?;
        // SAFETY: mapped read-only; a file changed on disk while the server runs is outside what
        // any inference server can defend against (the safetensors path maps its files too).
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| Error::checkpoint(path, format!("cannot map: {e}")))?;
        let parsed = Header::parse(&map).map_err(|m| Error::checkpoint(path, m))?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            metadata: parsed.metadata,
            tensors: parsed.tensors.iter().cloned().collect(),
            order: parsed.tensors.into_iter().map(|(n, _)| n).collect(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Tensor names in file order.
    pub fn tensor_names(&self) -> &[String] {
        &self.order
    }

    /// The bytes of a tensor (checked to lie inside the file when the header was parsed).
    pub fn bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.map[info.start..info.start + info.len]
    }

    /// An error about this file.
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::checkpoint(&self.path, message)
    }
}

struct Header {
    metadata: HashMap<String, Value>,
    tensors: Vec<(String, TensorInfo)>,
}

impl Header {
    fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)
            .map_err(|_| "not a GGUF file (too short)".to_owned())?
            != MAGIC
        {
            return Err("not a GGUF file (no GGUF magic)".into());
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format!(
                "GGUF version {version} is not supported (2 and 3 are)"
            ));
        }
        let tensor_count = r.u64()? as usize;
        let kv_count = r.u64()? as usize;
        // Each entry takes at least a dozen bytes: counts beyond that are corruption.
        if tensor_count.max(kv_count) > bytes.len() / 12 {
            return Err(format!(
                "corrupt header: {tensor_count} tensors and {kv_count} metadata entries in a file of {} bytes",
                bytes.len()
            ));
        }
        let mut metadata = HashMap::with_capacity(kv_count);
        for _ in 0..kv_count {
            let key = r.string()?;
            let kind = r.u32()?;
            let value = r
                .value(kind, 0)
                .map_err(|e| format!("metadata {key:?}: {e}"))?;
            metadata.insert(key, value);
        }
        let mut entries = Vec::with_capacity(tensor_count);
        for _ in 0..tensor_count {
            let name = r.string()?;
            let n_dims = r.u32()? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(format!("tensor {name} has {n_dims} dimensions"));
            }
            let mut dims = (0..n_dims)
                .map(|_| r.u64().map(|d| d as usize))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            dims.reverse();
            let type_id = r.u32()?;
            let offset = r.u64()? as usize;
            entries.push((name, dims, type_id, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            Some(v) => v
                .to_u32()
                .ok()
                .map(|a| a as usize)
                .filter(|a| a.is_power_of_two())
                .ok_or("general.alignment is not a power of two")?,
            None => DEFAULT_ALIGNMENT,
        };
        let data_start = r.pos.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(entries.len());
        for (name, dims, type_id, offset) in entries {
            let dtype = GgmlType::from_id(type_id)
                .ok_or_else(|| format!("tensor {name} has an unknown GGML type id {type_id}"))?;
            let elements = dims
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(|| format!("tensor {name}: dims {dims:?} overflow"))?;
            let len = dtype.bytes_for(elements).ok_or_else(|| {
                format!(
                    "tensor {name}: {elements} elements is not a whole number of {} blocks of {}",
                    dtype.name(),
                    dtype.block_size()
                )
            })?;
            let start = data_start
                .checked_add(offset)
                .filter(|s| s.checked_add(len).is_some_and(|end| end <= bytes.len()))
                .ok_or_else(|| {
                    format!(
                        "truncated: tensor {name} ({} bytes at offset {offset}) ends past the end of the file ({} bytes)",
                        len,
                        bytes.len()
                    )
                })?;
            tensors.push((
                name,
                TensorInfo {
                    dims,
                    dtype,
                    start,
                    len,
                },
            ));
        }
        Ok(Self { metadata, tensors })
    }
}

/// A cursor over the header bytes; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type ReadResult<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> ReadResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated: the header ends early (at byte {})", self.pos))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> ReadResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> ReadResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> ReadResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> ReadResult<String> {
        let len = self.u64()? as usize;
        let raw = self.take(len)?;
        // Some writers add a trailing NUL; some vocabularies hold invalid UTF-8 pieces.
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    fn value(&mut self, kind: u32, depth: usize) -> ReadResult<Value> {
        Ok(match kind {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("invalid bool byte {b}")),
            },
            8 => Value::String(self.string()?),
            9 => {
                if depth >= MAX_VALUE_DEPTH {
                    return Err("arrays nested too deep".into());
                }
                let inner = self.u32()?;
                let len = self.u64()? as usize;
                if len > self.bytes.len() - self.pos {
                    return Err(format!("truncated: array of {len} elements"));
                }
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.value(inner, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }
}
