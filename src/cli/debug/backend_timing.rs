//! A timing of the attention backends on Qwen3-4B-shaped steps (`tealight debug kernels
//! --bench`), over the kernel check's random batches and tensors ([`crate::kernels::check`]).

use crate::error::Result;
use crate::kernels::check::{batch_of, random_tensor};
use crate::model::attention::{AttentionBackend, AttentionMetadata};
use crate::model::kv_cache::LayerKv;
use candle_core::{DType, Device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// One timed attention step (per layer).
#[derive(Debug, Clone)]
pub struct Timing {
    pub name: String,
    pub backend: AttentionBackend,
    /// The KV cache's dtype (the activations are bf16).
    pub kv_dtype: DType,
    pub median_us: f64,
    /// K and V bytes the step must read at least once, over the median time.
    pub kv_gbps: f64,
}

/// Times one layer's attention (KV write + attention) of Qwen3-4B-shaped bf16 steps for each
/// (backend, KV-cache dtype): host clock around a synchronised step, after warm-up; median of
/// `iters`.
pub fn time_backends(
    device: &Device,
    variants: &[(AttentionBackend, DType)],
    iters: usize,
) -> Result<Vec<Timing>> {
    let dtype = DType::BF16;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let steps: Vec<(String, Vec<(usize, usize)>)> = vec![
        ("decode b=1 ctx=1024".into(), vec![(1, 1024)]),
        ("decode b=16 ctx=1024".into(), vec![(1, 1024); 16]),
        ("decode b=64 ctx=1024".into(), vec![(1, 1024); 64]),
        ("decode b=256 ctx=1024".into(), vec![(1, 1024); 256]),
        ("prefill 1x1024".into(), vec![(1024, 1024)]),
        ("prefill 4x1024".into(), vec![(1024, 1024); 4]),
    ];
    let mut out = Vec::new();
    for (name, specs) in steps {
        let (batch, num_blocks) = batch_of(&mut rng, &specs, 16);
        let slots = num_blocks * 16;
        let t = batch.num_tokens();
        let k_cache = random_tensor(&mut rng, &[slots, 8, 128], 3.0, dtype)?;
        let v_cache = random_tensor(&mut rng, &[slots, 8, 128], 1.0, dtype)?;
        let q = random_tensor(&mut rng, &[t, 32, 128], 1.0, dtype)?.to_device(device)?;
        let k = random_tensor(&mut rng, &[t, 8, 128], 3.0, dtype)?.to_device(device)?;
        let v = random_tensor(&mut rng, &[t, 8, 128], 1.0, dtype)?.to_device(device)?;
        let context: usize = batch.chunks.iter().map(|c| c.context_len).sum();
        for &(backend, kv_dtype) in variants {
            // Converted on the host: the timing is of the step, not of a cast.
            let cache = LayerKv {
                k: k_cache.to_dtype(kv_dtype)?.to_device(device)?,
                v: v_cache.to_dtype(kv_dtype)?.to_device(device)?,
                scales: Default::default(),
            };
            let kv_bytes = context * 8 * 128 * 2 * kv_dtype.size_in_bytes();
            // Metadata once per step, as in the model (shared by the layers).
            let meta = AttentionMetadata::new(backend, &batch, 16, (8, 128), device)?;
            let mut times = Vec::with_capacity(iters);
            for i in 0..iters + 3 {
                device.synchronize()?;
                let start = Instant::now();
                let y = meta.forward(&q, &k, &v, &cache, 1.0 / (128f64).sqrt())?;
                device.synchronize()?;
                if i >= 3 {
                    times.push(start.elapsed().as_secs_f64());
                }
                drop(y);
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            out.push(Timing {
                name: name.clone(),
                backend,
                kv_dtype,
                median_us: median * 1e6,
                kv_gbps: kv_bytes as f64 / median / 1e9,
            });
        }
    }
    Ok(out)
}
