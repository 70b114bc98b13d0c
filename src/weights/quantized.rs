//! Quantized weights (GGML block formats) and the device-generic way to use them: candle's
//! `QMatMul` (CPU, CUDA) for products and `QTensor::embedding` for row lookups. On x86-64 CPUs
//! with AVX2 the projections of the types we have kernels for go to
//! [`crate::kernels::cpu_linear::QuantizedPanels`] instead; everything else, and every GPU, comes here.

use super::gguf::GgmlType;
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use std::borrow::Cow;
use std::sync::Arc;

/// A `[rows, cols]` weight in a GGML block format, row-major (each row a run of whole blocks),
/// on the host, as a GGUF file stores it.
#[derive(Clone)]
pub struct QuantizedWeight {
    pub dtype: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for QuantizedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QuantizedWeight({} {}x{})",
            self.dtype, self.rows, self.cols
        )
    }
}

impl QuantizedWeight {
    /// Checks that `bytes` holds exactly `rows × cols` values of `dtype`.
    pub fn new(dtype: GgmlType, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<Self, String> {
        if !cols.is_multiple_of(dtype.block_size()) {
            return Err(format!(
                "{dtype} rows of {cols} values are not whole blocks of {}",
                dtype.block_size()
            ));
        }
        let want = rows * dtype.bytes_for(cols).unwrap_or(0);
        if bytes.len() != want {
            return Err(format!(
                "{dtype} {rows}x{cols} needs {want} bytes, got {}",
                bytes.len()
            ));
        }
        Ok(Self {
            dtype,
            rows,
            cols,
            bytes,
        })
    }

    /// Quantizes a dense `[rows, cols]` tensor (any float dtype) with candle's reference
    /// quantizers, which follow ggml's.
    pub fn quantize(weight: &Tensor, dtype: GgmlType) -> candle_core::Result<Self> {
        let (rows, cols) = weight.dims2()?;
        let Some(kind) = dtype.candle() else {
            candle_core::bail!("cannot quantize to {dtype}")
        };
        let q = QTensor::quantize(&weight.to_device(&Device::Cpu)?, kind)?;
        Ok(Self {
            dtype,
            rows,
            cols,
            bytes: q.data()?.into_owned(),
        })
    }

    pub fn row_bytes(&self) -> usize {
        self.dtype.bytes_for(self.cols).unwrap_or(0)
    }

    fn candle_dtype(&self) -> candle_core::Result<GgmlDType> {
        self.dtype
            .candle()
            .ok_or_else(|| candle_core::Error::Msg(format!("{} is not supported", self.dtype)))
    }

    /// candle's tensor of the weight on `device`.
    pub fn qtensor(&self, device: &Device) -> candle_core::Result<QTensor> {
        let storage =
            QStorage::from_data(Cow::Borrowed(&self.bytes), device, self.candle_dtype()?)?;
        QTensor::new(storage, (self.rows, self.cols))
    }

    /// The whole weight as f32 on the host.
    pub fn dequantize(&self) -> candle_core::Result<Tensor> {
        self.qtensor(&Device::Cpu)?.dequantize(&Device::Cpu)
    }

    /// Rows `ids` dequantized to f32 on the host, `[ids.len(), cols]`.
    pub fn dequantize_rows(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let row = self.row_bytes();
        let mut picked = Vec::with_capacity(ids.len() * row);
        for &id in ids {
            let id = id as usize;
            if id >= self.rows {
                candle_core::bail!("row {id} out of range for a weight of {} rows", self.rows)
            }
            picked.extend_from_slice(&self.bytes[id * row..(id + 1) * row]);
        }
        let storage = QStorage::from_data(Cow::Owned(picked), &Device::Cpu, self.candle_dtype()?)?;
        QTensor::new(storage, (ids.len(), self.cols))?.dequantize(&Device::Cpu)
    }

    /// Stacks weights of one type along the rows (q|k|v, gate|up).
    pub fn stack(parts: Vec<Self>) -> Result<Self, String> {
        let mut iter = parts.into_iter();
        let mut first = iter.next().ok_or("no weights to stack")?;
        for part in iter {
            if part.dtype != first.dtype || part.cols != first.cols {
                return Err(format!(
                    "cannot stack {} {}x{} onto {} {}x{}",
                    part.dtype, part.rows, part.cols, first.dtype, first.rows, first.cols
                ));
            }
            first.rows += part.rows;
            first.bytes.extend_from_slice(&part.bytes);
        }
        Ok(first)
    }
}

/// A quantized projection through candle's `QMatMul`, on any device.
pub struct CandleQuantized {
    matmul: QMatMul,
    qtensor: Arc<QTensor>,
    /// `(type, rows, cols)` of the weight.
    format: (GgmlType, usize, usize),
    /// Off the CPU: the weight's blocks on the host, copied at the first row lookup (only the
    /// tied embedding ever has one), so lookups dequantize a few rows on the host instead of
    /// loading candle's quantized CUDA module for them.
    host: std::sync::OnceLock<QuantizedWeight>,
}

impl CandleQuantized {
    pub fn new(weight: &QuantizedWeight, device: &Device) -> candle_core::Result<Self> {
        let qtensor = Arc::new(weight.qtensor(device)?);
        Ok(Self {
            matmul: QMatMul::from_arc(qtensor.clone())?,
            qtensor,
            format: (weight.dtype, weight.rows, weight.cols),
            host: std::sync::OnceLock::new(),
        })
    }

    /// `x`: `[rows, in]` → `[rows, out]` in `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        // candle's CPU kernels take f32 (its GPU kernels take the half types as well).
        let x = if x.device().is_cpu() && dtype != DType::F32 {
            x.to_dtype(DType::F32)?
        } else {
            x.clone()
        };
        self.matmul.forward(&x.contiguous()?)?.to_dtype(dtype)
    }

    /// Rows `ids` of the weight (the tied-embedding lookup), `[n, in]` f32 on the weight's
    /// device.
    pub fn rows(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let device = self.qtensor.device();
        if device.is_cpu() {
            return self.qtensor.embedding(ids);
        }
        let host = match self.host.get() {
            Some(host) => host,
            None => {
                let (dtype, rows, cols) = self.format;
                let bytes = self.qtensor.data()?.into_owned();
                let weight = QuantizedWeight::new(dtype, rows, cols, bytes)
                    .map_err(candle_core::Error::Msg)?;
                self.host.get_or_init(|| weight)
            }
        };
        let ids = ids.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
        host.dequantize_rows(&ids)?.to_device(&device)
    }
}
