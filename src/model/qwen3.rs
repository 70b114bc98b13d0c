//! The Qwen3 decoder over a varlen batch and a paged KV cache.
//!
//! Per layer: RMSNorm → fused q|k|v projection → per-head RMSNorm of q and k → RoPE → paged
//! attention (GQA) → o_proj + residual → RMSNorm → feed-forward (a fused gate|up → SwiGLU →
//! down_proj MLP, or Qwen3-MoE's routed experts) + residual.

use super::attention::{AttentionBackend, AttentionMetadata};
use super::kv_cache::{KvCache, KvScales};
use super::layers::{Projection, RmsNorm, RotaryTables, split_qkv};
use super::mlp::FeedForward;
use crate::batch::BatchInput;
use crate::error::{Error, Result};
use crate::weights::config::Qwen3Config;
use crate::weights::store::WeightStore;
use candle_core::{DType, Device, Tensor};

struct DecoderLayer {
    input_norm: RmsNorm,
    qkv: Projection,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    o_proj: Projection,
    post_attention_norm: RmsNorm,
    feed_forward: FeedForward,
}

pub struct Qwen3Model {
    cfg: Qwen3Config,
    /// The input embedding when it is not tied to `lm_head`, held like a projection (packed,
    /// quantized, …) and used only for row lookups.
    embed_tokens: Option<Projection>,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Projection,
    rotary: RotaryTables,
    device: Device,
    dtype: DType,
    /// The checkpoint's fp8 KV-cache scales (vLLM's `k_scale`/`v_scale`), if it has any.
    kv_scales: Option<Vec<KvScales>>,
    /// Layers whose input hidden states every step returns (an EAGLE-3 head reads them),
    /// ascending; empty: none.
    aux_layers: Vec<usize>,
}

impl DecoderLayer {
    fn load(store: &WeightStore, cfg: &Qwen3Config, i: usize) -> Result<Self> {
        let p = format!("model.layers.{i}");
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.num_attention_heads * d, cfg.num_key_value_heads * d);
        let attn = |name: &str| format!("{p}.self_attn.{name}");
        let eps = cfg.rms_norm_eps;
        Ok(Self {
            input_norm: RmsNorm::load(store, &format!("{p}.input_layernorm.weight"), h, eps)?,
            qkv: Projection::load(
                store,
                &[&attn("q_proj"), &attn("k_proj"), &attn("v_proj")],
                &[q_out, kv_out, kv_out],
                h,
                cfg.attention_bias,
            )?,
            q_norm: RmsNorm::load(store, &attn("q_norm.weight"), d, eps)?,
            k_norm: RmsNorm::load(store, &attn("k_norm.weight"), d, eps)?,
            o_proj: Projection::load(store, &[&attn("o_proj")], &[h], q_out, cfg.attention_bias)?,
            post_attention_norm: RmsNorm::load(
                store,
                &format!("{p}.post_attention_layernorm.weight"),
                h,
                eps,
            )?,
            feed_forward: FeedForward::load(store, cfg, i)?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        step: &Step,
        layer_kv: &super::kv_cache::LayerKv,
        cfg: &Qwen3Config,
    ) -> Result<Tensor> {
        let (heads, kv_heads, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );

        let h = self.input_norm.forward(x)?;
        let qkv = self.qkv.forward(&h)?;
        let (q, k, v) = split_qkv(&qkv, heads, kv_heads, d)?;
        let q = step
            .rotary
            .apply(&self.q_norm.forward(&q)?, &step.cos, &step.sin)?;
        let k = step
            .rotary
            .apply(&self.k_norm.forward(&k)?, &step.cos, &step.sin)?;
        let attn = step
            .attention
            .forward(&q, &k, &v.contiguous()?, layer_kv, step.scale)?;
        let x = (x + self.o_proj.forward(&attn)?)?;

        let h = self.post_attention_norm.forward(&x)?;
        Ok((x + self.feed_forward.forward(&h)?)?)
    }
}

/// What every layer of one step shares.
struct Step<'a> {
    rotary: &'a RotaryTables,
    cos: Tensor,
    sin: Tensor,
    attention: AttentionMetadata,
    scale: f64,
}

impl Qwen3Model {
    pub fn load(store: &WeightStore, cfg: &Qwen3Config) -> Result<Self> {
        let (device, dtype) = (store.device().clone(), store.dtype());
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(store, cfg, i))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(
            store,
            "model.norm.weight",
            cfg.hidden_size,
            cfg.rms_norm_eps,
        )?;
        let (vocab, hidden) = (cfg.vocab_size, cfg.hidden_size);
        // Tied: the head owns the one copy and serves the lookups too.
        let (embed_tokens, lm_head) = if cfg.tie_word_embeddings || store.is_headless_backbone() {
            let head = Projection::load(store, &["model.embed_tokens"], &[vocab], hidden, false)?;
            (None, head)
        } else {
            let embedding =
                Projection::load(store, &["model.embed_tokens"], &[vocab], hidden, false)?;
            let head = Projection::load(store, &["lm_head"], &[vocab], hidden, false)?;
            (Some(embedding), head)
        };
        let rotary = RotaryTables::new(
            cfg.head_dim,
            cfg.max_position_embeddings,
            cfg.rope_theta,
            dtype,
            &device,
        )?;
        Ok(Self {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            device,
            dtype,
            kv_scales: super::kv_cache::checkpoint_scales(store, cfg.num_hidden_layers)?,
            aux_layers: Vec::new(),
        })
    }

    /// Checkpoint tensors the model reads (sizes the load progress bar).
    pub fn tensor_count(cfg: &Qwen3Config) -> u64 {
        let attention = 8 + if cfg.attention_bias { 4 } else { 0 };
        let layers: usize = (0..cfg.num_hidden_layers)
            .map(|i| attention + FeedForward::tensor_count(cfg, i))
            .sum();
        (2 + layers + usize::from(!cfg.tie_word_embeddings)) as u64
    }

    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Per layer, the scales an fp8 KV cache is written and read with, if the checkpoint has
    /// them (otherwise 1).
    pub fn kv_scales(&self) -> Option<&[KvScales]> {
        self.kv_scales.as_deref()
    }

    /// Every step also returns, for every token it feeds, the hidden states entering `layers`
    /// (ascending, repeats allowed) side by side: [`StepOutput::aux`].
    pub fn capture_hidden_states(&mut self, layers: Vec<usize>) {
        self.aux_layers = layers;
    }

    /// The input embeddings of `ids`, in the compute dtype.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let table = self.embed_tokens.as_ref().unwrap_or(&self.lm_head);
        Ok(table.weight_rows(ids)?.to_dtype(self.dtype)?)
    }

    /// Runs one step: writes every token's K/V into its slot and returns the f32 logits of the
    /// last token of each chunk that asked for them, `[chunks needing logits, vocab]`.
    pub fn forward(
        &self,
        batch: &BatchInput,
        cache: &KvCache,
        backend: AttentionBackend,
    ) -> Result<Tensor> {
        Ok(self.forward_pooled(batch, cache, backend, &[])?.logits)
    }

    /// [`Self::forward`] for a step whose output rows (the last token of each chunk that asked
    /// for output, in order) may be pooled: `pooled[i]` (false past its end) sends row `i` to
    /// [`StepOutput::hidden`] as its final hidden state instead of through the head.
    pub fn forward_pooled(
        &self,
        batch: &BatchInput,
        cache: &KvCache,
        backend: AttentionBackend,
        pooled: &[bool],
    ) -> Result<StepOutput> {
        batch
            .validate(cache.block_size(), cache.num_blocks())
            .map_err(|e| Error::Internal(format!("invalid batch: {e}")))?;
        if let Some(c) = batch
            .chunks
            .iter()
            .find(|c| c.context_len > self.cfg.max_position_embeddings)
        {
            return Err(Error::Internal(format!(
                "context of {} tokens exceeds max_position_embeddings {}",
                c.context_len, self.cfg.max_position_embeddings
            )));
        }
        let device = &self.device;
        let ids = Tensor::new(batch.token_ids.as_slice(), device)?;
        let positions = Tensor::new(batch.positions(), device)?;
        let (cos, sin) = self.rotary.select(&positions)?;
        let kv_shape = (self.cfg.num_key_value_heads, self.cfg.head_dim);
        let step = Step {
            rotary: &self.rotary,
            cos,
            sin,
            attention: AttentionMetadata::new(
                backend,
                batch,
                cache.block_size(),
                kv_shape,
                device,
            )?,
            scale: 1.0 / (self.cfg.head_dim as f64).sqrt(),
        };

        let mut x = self.embed(&ids)?;
        let mut captured = Vec::with_capacity(self.aux_layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            for _ in self.aux_layers.iter().filter(|&&l| l == i) {
                captured.push(x.clone());
            }
            x = layer.forward(&x, &step, cache.layer(i), &self.cfg)?;
        }
        let aux = match captured.is_empty() {
            true => None,
            false => Some(Tensor::cat(&captured, 1)?),
        };
        let rows = batch.logits_rows();
        let normed = match rows.is_empty() {
            true => Tensor::zeros((0, self.cfg.hidden_size), self.dtype, device)?,
            false => self
                .norm
                .forward(&x.index_select(&Tensor::new(rows.as_slice(), device)?, 0)?)?,
        };
        let is_pooled = |i: usize| pooled.get(i).copied().unwrap_or(false);
        if !(0..rows.len()).any(is_pooled) {
            return Ok(StepOutput {
                logits: self.head(&normed)?,
                hidden: Tensor::zeros((0, self.cfg.hidden_size), DType::F32, device)?,
                aux,
            });
        }
        let pick = |want: bool| -> Result<Tensor> {
            let picked: Vec<u32> = (0..rows.len())
                .filter(|&i| is_pooled(i) == want)
                .map(|i| i as u32)
                .collect();
            Ok(normed.index_select(&Tensor::new(picked.as_slice(), device)?, 0)?)
        };
        Ok(StepOutput {
            logits: self.head(&pick(false)?)?,
            hidden: pick(true)?.to_dtype(DType::F32)?,
            aux,
        })
    }

    /// The f32 logits of normed hidden rows.
    fn head(&self, normed: &Tensor) -> Result<Tensor> {
        if normed.dim(0)? == 0 {
            return Ok(Tensor::zeros(
                (0, self.cfg.vocab_size),
                DType::F32,
                &self.device,
            )?);
        }
        Ok(self.lm_head.forward(normed)?.to_dtype(DType::F32)?)
    }
}

/// What one step computed for the chunks that asked for output.
pub struct StepOutput {
    /// `[rows that sample, vocab]`, f32.
    pub logits: Tensor,
    /// `[rows that pool, hidden]`: final hidden states (after the last norm), f32.
    pub hidden: Tensor,
    /// `[every token fed, layers × hidden]`: the hidden states entering the layers
    /// [`Qwen3Model::capture_hidden_states`] names, in the compute dtype; `None` when none are.
    pub aux: Option<Tensor>,
}
