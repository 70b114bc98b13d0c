//! `debug preflight`: a few seconds on a fresh GPU that open the device and run each kind of
//! candle kernel the serving path needs once, checked against the CPU, before any model exists.
//! It fails fast (the first wrong or failing op ends it with its name), and it loads every PTX
//! module those kernels live in, so the driver's JIT cache is filled while the GPU scripts make
//! their checkpoints instead of inside a timed stage.
//!
//! The ops: a bf16 and an f32 matmul (cuBLAS), `index_select` and `scatter_set` (the KV gather
//! and write), the attention mask as an additive bias and `softmax_last_dim`, `rms_norm`, SiLU,
//! an `arg_sort` over 8,192 columns (the device sampler's piece), the allocator pool's
//! attributes (the profiling step's measurement); with `--quantized`, a Q8_0 and a Q4_K product
//! (candle's quantized module, the slowest to JIT).

use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Tensor};
use clap::Args;

use crate::device::{DeviceChoice, PeakMemory, describe, select_device};
use crate::error::{Error, Result};
use crate::weights::gguf::GgmlType;
use crate::weights::quantized::{CandleQuantized, QuantizedWeight};

#[derive(Debug, Clone, Args)]
pub struct PreflightArgs {
    #[arg(long, default_value = "cuda")]
    pub device: DeviceChoice,
    /// Also run a quantized product (loads candle's quantized CUDA module).
    #[arg(long)]
    pub quantized: bool,
}

pub fn run(args: PreflightArgs) -> Result<()> {
    let started = Instant::now();
    let device = select_device(args.device)?;
    println!("preflight: device {}", describe(&device));
    let mut checks: Vec<(&str, Check)> = vec![
        ("matmul-bf16", matmul_bf16),
        ("matmul-f32", matmul_f32),
        ("index-select", index_select),
        ("scatter-set", scatter_set),
        ("mask-softmax", mask_softmax),
        ("rms-norm-silu", rms_norm_silu),
        ("arg-sort-8192", arg_sort),
        ("pool", pool),
    ];
    if args.quantized {
        checks.push(("quantized", quantized));
    }
    for (name, check) in checks {
        let t = Instant::now();
        check(&device).map_err(|e| Error::Device(format!("preflight {name} failed: {e}")))?;
        device.synchronize()?;
        println!(
            "preflight: {name} ok in {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    println!(
        "preflight: all ok in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

type Check = fn(&Device) -> Result<()>;

/// Deterministic values in [-1, 1).
fn values(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| (((i + seed * 7_919) * 2_654_435_761 % 10_007) as f32) / 5_003.5 - 1.0)
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("shape matches")
}

/// The largest difference between `got` (any device, any float dtype) and `want` (CPU f32),
/// relative to `want`'s largest magnitude, must stay within `tolerance`.
fn close(got: &Tensor, want: &Tensor, tolerance: f32) -> Result<()> {
    let got = got
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?;
    let want = want.flatten_all()?;
    let scale = want.abs()?.max(0)?.to_scalar::<f32>()?.max(1e-6);
    let diff = (got - want)?.abs()?.max(0)?.to_scalar::<f32>()? / scale;
    if diff.is_finite() && diff <= tolerance {
        Ok(())
    } else {
        Err(Error::Device(format!(
            "differs from the CPU by {diff} (relative; at most {tolerance})"
        )))
    }
}

fn matmul(device: &Device, dtype: DType, tolerance: f32) -> Result<()> {
    let (a, b) = (values(&[256, 512], 1), values(&[512, 384], 2));
    let want = a.matmul(&b)?;
    let got = a
        .to_device(device)?
        .to_dtype(dtype)?
        .matmul(&b.to_device(device)?.to_dtype(dtype)?)?;
    close(&got, &want, tolerance)
}

fn matmul_bf16(device: &Device) -> Result<()> {
    matmul(device, DType::BF16, 2e-2)
}

fn matmul_f32(device: &Device) -> Result<()> {
    matmul(device, DType::F32, 1e-4)
}

fn index_select(device: &Device) -> Result<()> {
    let pool = values(&[64 * 8, 128], 3);
    let rows = Tensor::new(&[511u32, 0, 7, 300, 300, 64], &Device::Cpu)?;
    let want = pool.index_select(&rows, 0)?;
    let got = pool
        .to_device(device)?
        .to_dtype(DType::BF16)?
        .index_select(&rows.to_device(device)?, 0)?;
    close(&got, &want, 1e-2)
}

fn scatter_set(device: &Device) -> Result<()> {
    let rows = values(&[4, 8, 16], 4);
    let slots: Vec<u32> = [63u32, 0, 17, 40]
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, 8 * 16))
        .collect();
    let index = Tensor::from_vec(slots, (4, 8, 16), &Device::Cpu)?;
    let want = Tensor::zeros((64, 8, 16), DType::F32, &Device::Cpu)?;
    want.scatter_set(&index, &rows, 0)?;
    let got = Tensor::zeros((64, 8, 16), DType::BF16, device)?;
    got.scatter_set(
        &index.to_device(device)?,
        &rows.to_device(device)?.to_dtype(DType::BF16)?,
        0,
    )?;
    close(&got, &want, 1e-2)
}

/// The generic attention's causal mask: `positions > last` as an additive bias, then softmax.
fn mask_softmax(device: &Device) -> Result<()> {
    let (mq, mk) = (5, 37);
    let scores = values(&[2, 4, mq, mk], 5);
    let last: Vec<u32> = (0..mq as u32).map(|r| 32 + r).collect();
    let run = |d: &Device| -> Result<Tensor> {
        let last = Tensor::from_vec(last.clone(), (1, 1, mq, 1), d)?;
        let positions = Tensor::arange(0u32, mk as u32, d)?.reshape((1, 1, 1, mk))?;
        let bias = positions
            .broadcast_gt(&last)?
            .to_dtype(DType::F32)?
            .affine(f32::MIN as f64, 0.0)?;
        let scores = scores
            .to_device(d)?
            .affine(0.5, 0.0)?
            .broadcast_add(&bias)?;
        Ok(candle_nn::ops::softmax_last_dim(&scores)?)
    };
    let want = run(&Device::Cpu)?;
    let hidden = want
        .i((.., .., 0, 33..))?
        .abs()?
        .sum_all()?
        .to_scalar::<f32>()?;
    if hidden != 0.0 {
        return Err(Error::Device(format!(
            "hidden keys got weight {hidden} on the CPU"
        )));
    }
    close(&run(device)?, &want, 1e-5)
}

fn rms_norm_silu(device: &Device) -> Result<()> {
    let x = values(&[6, 1024], 6);
    let w = values(&[1024], 7);
    let run = |d: &Device, dtype: DType| -> Result<Tensor> {
        let x = x.to_device(d)?.to_dtype(dtype)?;
        let w = w.to_device(d)?.to_dtype(dtype)?;
        Ok(candle_nn::ops::silu(&candle_nn::ops::rms_norm(
            &x, &w, 1e-6,
        )?)?)
    };
    close(
        &run(device, DType::BF16)?,
        &run(&Device::Cpu, DType::F32)?,
        2e-2,
    )
}

fn arg_sort(device: &Device) -> Result<()> {
    let x = values(&[4, 8192], 8);
    let want = x
        .arg_sort_last_dim(false)?
        .i((.., ..20))?
        .to_vec2::<u32>()?;
    let got = x
        .to_device(device)?
        .arg_sort_last_dim(false)?
        .i((.., ..20))?
        .to_vec2::<u32>()?;
    if got == want {
        Ok(())
    } else {
        Err(Error::Device(format!(
            "the top 20 differ from the CPU's: {:?} vs {:?}",
            &got[0], &want[0]
        )))
    }
}

/// The stream-ordered allocator's attributes: without them the KV budget falls back on an
/// estimate of the activation peak (a warning, not a failure).
fn pool(device: &Device) -> Result<()> {
    let watch = PeakMemory::start(device);
    let big = Tensor::zeros((64 << 20,), DType::U8, device)?;
    drop(big);
    match watch.finish(device) {
        Some(peak) if peak >= 64 << 20 => println!("preflight: pool high-water mark {peak} B"),
        Some(peak) => {
            return Err(Error::Device(format!(
                "the pool's high-water mark {peak} B missed a 64 MiB tensor"
            )));
        }
        None if device.is_cpu() => {}
        None => println!(
            "preflight: warning: the allocator pool cannot measure; the KV budget will use the \
             activation estimate"
        ),
    }
    Ok(())
}

fn quantized(device: &Device) -> Result<()> {
    let w = values(&[64, 512], 9);
    let x = values(&[3, 512], 10);
    for kind in [GgmlType::Q8_0, GgmlType::Q4_K] {
        let weight = QuantizedWeight::quantize(&w, kind)?;
        let want = CandleQuantized::new(&weight, &Device::Cpu)?.forward(&x)?;
        let got = CandleQuantized::new(&weight, device)?.forward(&x.to_device(device)?)?;
        close(&got, &want, 2e-2)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_passes_on_the_cpu() {
        run(PreflightArgs {
            device: DeviceChoice::Cpu,
            quantized: true,
        })
        .unwrap();
    }
}
