//! Greedy selection: the row-wise argmax of the processed logits, ties going to the lowest
//! token id.
//!
//! On accelerators this is built from `max`, `eq`, `where_cond` and `min` rather than candle's
//! `argmax`: the CUDA argmax reduction breaks ties by thread, not by index. On the CPU, candle's
//! argmax is a sequential scan that keeps the first maximum, which is the same rule in one pass.
//! Only `B` ids leave the device.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};

/// Row-wise argmax of a `[B, vocab]` tensor, lowest id among equal maxima, as a `[B]` u32
/// tensor on the same device.
pub fn argmax_lowest_id(logits: &Tensor) -> Result<Tensor> {
    let (b, vocab) = logits.dims2()?;
    let dev = logits.device();
    let logits = logits.to_dtype(DType::F32)?;
    if dev.is_cpu() {
        // candle's CPU argmax keeps the first maximum it meets: lowest id, one pass.
        return Ok(logits.argmax(1)?);
    }
    let max = logits.max_keepdim(1)?;
    let is_max = logits.broadcast_eq(&max)?;
    let ids = Tensor::arange(0u32, vocab as u32, dev)?
        .reshape((1, vocab))?
        .broadcast_as((b, vocab))?;
    let none = Tensor::full(vocab as u32, (b, vocab), dev)?;
    Ok(is_max.where_cond(&ids, &none)?.min(1)?)
}

/// [`argmax_lowest_id`] fetched to the host. NaN logits (a model bug) give either some
/// in-range id or an error, never an out-of-range id.
pub fn greedy_ids(logits: &Tensor) -> Result<Vec<u32>> {
    let vocab = logits.dims2()?.1;
    let ids = argmax_lowest_id(logits)?.to_vec1::<u32>()?;
    if let Some(row) = ids.iter().position(|&id| id as usize >= vocab) {
        return Err(Error::Internal(format!(
            "greedy sampling: logits row {row} has no maximum (NaN logits)"
        )));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn ties_go_to_lowest_id() {
        let t = Tensor::new(
            &[
                [1.0f32, 5.0, 5.0, 2.0],
                [7.0, 7.0, 7.0, 7.0],
                [-3.0, -1.0, -2.0, -1.0],
            ],
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(greedy_ids(&t).unwrap(), vec![1, 0, 1]);
    }

    #[test]
    fn nan_row_never_yields_an_out_of_range_id() {
        let t = Tensor::new(&[[f32::NAN, f32::NAN]], &Device::Cpu).unwrap();
        if let Ok(ids) = greedy_ids(&t) {
            assert!(ids[0] < 2);
        }
    }
}
