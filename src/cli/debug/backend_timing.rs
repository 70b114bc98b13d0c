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
    pub median_us: f64,
    /// K and V bytes the step must read at least once, over the median time.
    pub kv_gbps: f64,
}

/// Times one layer's attention (KV write + attention) of Qwen3-4B-shaped bf16 steps for each
/// backend: host clock around a synchronised step, after warm-up; median of `iters`.
pub fn time_backends(
    device: &Device,
    backends: &[AttentionBackend],
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
        let cache = LayerKv {
            k: random_tensor(&mut rng, &[slots, 8, 128], 3.0, dtype)?.to_device(device)?,
            v: random_tensor(&mut rng, &[slots, 8, 128], 1.0, dtype)?.to_device(device)?,
            scales: Default::default(),
        };
        let q = random_tensor(&mut rng, &[t, 32, 128], 1.0, dtype)?.to_device(device)?;
        let k = random_tensor(&mut rng, &[t, 8, 128], 3.0, dtype)?.to_device(device)?;
        let v = random_tensor(&mut rng, &[t, 8, 128], 1.0, dtype)?.to_device(device)?;
        let kv_bytes: usize = batch
            .chunks
            .iter()
            .map(|c| c.context_len * 8 * 128 * 2 * dtype.size_in_bytes())
            .sum();
        for &backend in backends {
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
                median_us: median * 1e6,
                kv_gbps: kv_bytes as f64 / median / 1e9,
            });
        }
    }
    Ok(out)
}
