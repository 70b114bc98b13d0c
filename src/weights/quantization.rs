//! `--quantization`: the formats a dense checkpoint's projections can be quantized to as they
//! load (the weight store applies it; the loader and the CLI name it).

use super::gguf::GgmlType;

/// `--quantization`: quantize a dense checkpoint's projection weights as they load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Quantization {
    /// 8-bit blocks of 32 with one scale (GGML Q8_0).
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit super-blocks of 256 with 6-bit scales and minimums (GGML Q4_K; the embedding
    /// and head in Q6_K, as in llama.cpp's Q4_K_M).
    #[value(name = "q4_k")]
    Q4K,
    /// e4m3 with one scale per 128 × 128 block, as Qwen's FP8 checkpoints.
    #[value(name = "fp8")]
    Fp8,
}

impl Quantization {
    /// The GGML type, for the block formats.
    pub fn ggml_type(self) -> Option<GgmlType> {
        match self {
            Quantization::Q8_0 => Some(GgmlType::Q8_0),
            Quantization::Q4K => Some(GgmlType::Q4_K),
            Quantization::Fp8 => None,
        }
    }
}
