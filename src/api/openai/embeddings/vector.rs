//! From a pooled hidden state to the embedding a client receives: Matryoshka truncation to
//! `dimensions`, L2 normalization (after truncation, so a truncated embedding is a unit vector
//! too), and the wire encoding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::types::{EmbeddingValues, EncodingFormat};

/// `hidden` cut to its first `dimensions` values, normalized when `normalize`.
pub fn embedding(mut hidden: Vec<f32>, dimensions: Option<usize>, normalize: bool) -> Vec<f32> {
    if let Some(d) = dimensions {
        hidden.truncate(d);
    }
    if normalize {
        // In f64: thousands of squares summed in f32 lose the low bits the parity tests read.
        let norm = hidden
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        // sentence-transformers' Normalize divides by max(norm, 1e-12).
        let scale = 1.0 / norm.max(1e-12);
        for v in &mut hidden {
            *v = (f64::from(*v) * scale) as f32;
        }
    }
    hidden
}

/// The values as `format` writes them (base64: little-endian f32 bytes, as the openai SDK
/// decodes them).
pub fn encode(values: Vec<f32>, format: EncodingFormat) -> EmbeddingValues {
    match format {
        EncodingFormat::Float => EmbeddingValues::Float(values),
        EncodingFormat::Base64 => {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            EmbeddingValues::Base64(STANDARD.encode(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_comes_before_normalization() {
        let v = embedding(vec![3.0, 4.0, 12.0], Some(2), true);
        assert_eq!(v, vec![0.6, 0.8]);
        let whole = embedding(vec![3.0, 4.0, 12.0], None, true);
        assert!((whole.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(embedding(vec![3.0, 4.0], None, false), vec![3.0, 4.0]);
        // A zero vector stays zero rather than turning into NaN.
        assert_eq!(embedding(vec![0.0, 0.0], None, true), vec![0.0, 0.0]);
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let EmbeddingValues::Base64(text) = encode(vec![1.0, -2.5], EncodingFormat::Base64) else {
            panic!("expected base64");
        };
        let bytes = STANDARD.decode(text).unwrap();
        let back: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, vec![1.0, -2.5]);
    }
}
