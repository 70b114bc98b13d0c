//! GGML tensor types: every type a GGUF file can name (so errors can name it too), their block
//! layouts, and which of them tealight reads.

use candle_core::quantized::GgmlDType;

/// A GGML tensor type by its GGUF id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(u32);

/// `(id, name, elements per block, bytes per block)` of every type ggml has defined.
const TABLE: &[(u32, &str, usize, usize)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
];

impl GgmlType {
    pub const F32: Self = Self(0);
    pub const F16: Self = Self(1);
    pub const Q8_0: Self = Self(8);
    pub const Q4_K: Self = Self(12);
    pub const Q5_K: Self = Self(13);
    pub const Q6_K: Self = Self(14);
    pub const BF16: Self = Self(30);

    pub fn from_id(id: u32) -> Option<Self> {
        TABLE.iter().any(|e| e.0 == id).then_some(Self(id))
    }

    pub fn id(self) -> u32 {
        self.0
    }

    fn entry(self) -> &'static (u32, &'static str, usize, usize) {
        TABLE
            .iter()
            .find(|e| e.0 == self.0)
            .unwrap_or(&(u32::MAX, "?", 1, 1))
    }

    pub fn name(self) -> &'static str {
        self.entry().1
    }

    pub fn block_size(self) -> usize {
        self.entry().2
    }

    pub fn block_bytes(self) -> usize {
        self.entry().3
    }

    /// Bytes of `elements` values, or `None` when they are not whole blocks.
    pub fn bytes_for(self, elements: usize) -> Option<usize> {
        let block = self.block_size();
        elements
            .is_multiple_of(block)
            .then(|| elements / block * self.block_bytes())
    }

    /// Whether the values are plain floats (read as dense tensors).
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::BF16)
    }

    /// candle's name for the type, for the types tealight reads; `None` for the others.
    pub fn candle(self) -> Option<GgmlDType> {
        Some(match self.0 {
            0 => GgmlDType::F32,
            1 => GgmlDType::F16,
            2 => GgmlDType::Q4_0,
            3 => GgmlDType::Q4_1,
            6 => GgmlDType::Q5_0,
            7 => GgmlDType::Q5_1,
            8 => GgmlDType::Q8_0,
            10 => GgmlDType::Q2K,
            11 => GgmlDType::Q3K,
            12 => GgmlDType::Q4K,
            13 => GgmlDType::Q5K,
            14 => GgmlDType::Q6K,
            30 => GgmlDType::BF16,
            _ => return None,
        })
    }

    pub fn from_candle(dtype: GgmlDType) -> Self {
        TABLE
            .iter()
            .find(|e| Self(e.0).candle() == Some(dtype))
            .map_or(Self::F32, |e| Self(e.0))
    }

    /// The names of the types tealight reads, for error messages.
    pub fn supported_names() -> String {
        TABLE
            .iter()
            .filter(|e| Self(e.0).candle().is_some())
            .map(|e| e.1)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_layouts_agree_with_candle() {
        for &(id, name, block, bytes) in TABLE {
            let t = GgmlType::from_id(id).unwrap();
            assert_eq!(t.name(), name);
            if let Some(c) = t.candle() {
                assert_eq!(c.block_size(), block, "{name}");
                assert_eq!(c.type_size(), bytes, "{name}");
                assert_eq!(GgmlType::from_candle(c), t);
            }
        }
        assert!(GgmlType::from_id(31).is_none());
        assert_eq!(GgmlType::Q4_K.bytes_for(512), Some(288));
        assert_eq!(GgmlType::Q4_K.bytes_for(100), None);
    }
}
