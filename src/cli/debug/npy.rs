//! `.npy` output for `debug logits`. candle's `write_npy` writes element by element into an
//! unbuffered file: a system call per logit, 15 s for 100 rows of Qwen3's vocabulary.

use std::io::Write;
use std::path::Path;

/// Writes `values` (`rows × cols`, row-major) as a little-endian f32 `.npy` (format 1.0).
pub fn write_f32_matrix(
    path: &Path,
    rows: usize,
    cols: usize,
    values: &[f32],
) -> std::io::Result<()> {
    assert_eq!(
        values.len(),
        rows * cols,
        "npy: values do not fill the shape"
    );
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64 and
    // ended by a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for v in values {
        out.write_all(&v.to_le_bytes())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candle_reads_back_what_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npy");
        let values: Vec<f32> = (0..15).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_f32_matrix(&path, 3, 5, &values).unwrap();
        let t = candle_core::Tensor::read_npy(&path).unwrap();
        assert_eq!(t.dims(), &[3, 5]);
        assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), values);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len() - 15 * 4) % 64, 0, "header padded to 64 bytes");
    }
}
