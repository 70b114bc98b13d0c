//! The EAGLE-3 draft head: one Llama decoder layer that reads the served model's hidden states
//! and drafts the token after next.
//!
//! `fc` fuses three of the served model's hidden states (the residual stream entering the
//! layers the config names) into one. At position p the layer takes that fused state with the
//! embedding of the token at p + 1 — each normed, side by side, so q/k/v read `2 × hidden` —
//! and its own paged KV of earlier positions, and predicts the token at p + 2 over its own
//! vocabulary (`d2t` maps it to the served model's ids). Further draft tokens feed the layer's
//! output (before the final norm) back as the hidden state, with the draft token just proposed.

use super::config::Eagle3Config;
use crate::batch::BatchInput;
use crate::error::{Error, Result};
use crate::model::attention::{AttentionBackend, AttentionMetadata};
use crate::model::kv_cache::KvCache;
use crate::model::layers::{Projection, RmsNorm, RotaryTables, split_qkv};
use crate::model::mlp::DenseMlp;
use crate::weights::store::WeightStore;
use candle_core::{DType, Device, Tensor};

pub struct Eagle3Head {
    cfg: Eagle3Config,
    fc: Projection,
    /// The head's own input embedding, if it ships one (else the served model's is used).
    embed_tokens: Option<Projection>,
    input_norm: RmsNorm,
    hidden_norm: RmsNorm,
    qkv: Projection,
    o_proj: Projection,
    post_attention_norm: RmsNorm,
    mlp: DenseMlp,
    norm: RmsNorm,
    lm_head: Projection,
    /// Draft id → served model's id (`i + d2t[i]`).
    draft_to_target: Vec<u32>,
    rotary: RotaryTables,
    device: Device,
    dtype: DType,
}

impl Eagle3Head {
    /// Loads the head's weights (names as published: `fc`, `midlayer.*`, `norm`, `lm_head`,
    /// `d2t`; a `model.` prefix or `layers.0` for `midlayer` is read as well).
    pub fn load(store: &WeightStore, cfg: &Eagle3Config) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.num_attention_heads * d, cfg.num_key_value_heads * d);
        let name = |n: &str| resolve_name(store, n);
        let layer = |n: &str| name(&format!("midlayer.{n}"));
        let eps = cfg.rms_norm_eps;
        let attn = |n: &str| layer(&format!("self_attn.{n}"));
        // A Qwen3-style draft layer normalizes q and k per head; this head is a Llama layer, and
        // a norm left unread would draft from another function than the one trained.
        if store.contains(&format!("{}.weight", attn("q_norm"))) {
            return Err(Error::config(
                "the EAGLE-3 head's layer has q_norm/k_norm (a Qwen3-style draft layer); only \
                 Llama-style EAGLE-3 layers are supported",
            ));
        }
        let embed_tokens = match store.contains(&format!("{}.weight", name("embed_tokens"))) {
            true => Some(Projection::load(
                store,
                &[&name("embed_tokens")],
                &[cfg.vocab_size],
                h,
                false,
            )?),
            false => None,
        };
        let d2t_name = name("d2t");
        let d2t = match store.contains(&d2t_name) {
            true => store
                .get_stored(&d2t_name, &[cfg.draft_vocab_size])?
                .to_dtype(DType::I64)?
                .to_vec1::<i64>()?,
            // No map: the head's vocabulary is the served model's.
            false if cfg.draft_vocab_size == cfg.vocab_size => vec![0; cfg.vocab_size],
            false => {
                return Err(Error::config(format!(
                    "the EAGLE-3 head's vocabulary ({} tokens) differs from the served model's \
                     ({}) and it has no d2t map",
                    cfg.draft_vocab_size, cfg.vocab_size
                )));
            }
        };
        let draft_to_target = d2t
            .iter()
            .enumerate()
            .map(|(i, &offset)| {
                u32::try_from(i as i64 + offset)
                    .ok()
                    .filter(|&t| (t as usize) < cfg.vocab_size)
                    .ok_or_else(|| {
                        Error::config(format!(
                            "the EAGLE-3 head's d2t maps draft token {i} outside the served \
                             model's vocabulary"
                        ))
                    })
            })
            .collect::<Result<Vec<u32>>>()?;
        let (device, dtype) = (store.device().clone(), store.dtype());
        Ok(Self {
            fc: Projection::load(
                store,
                &[&name("fc")],
                &[h],
                3 * cfg.target_hidden_size,
                false,
            )?,
            embed_tokens,
            input_norm: RmsNorm::load(
                store,
                &format!("{}.weight", layer("input_layernorm")),
                h,
                eps,
            )?,
            hidden_norm: RmsNorm::load(store, &format!("{}.weight", layer("hidden_norm")), h, eps)?,
            qkv: Projection::load(
                store,
                &[&attn("q_proj"), &attn("k_proj"), &attn("v_proj")],
                &[q_out, kv_out, kv_out],
                2 * h,
                cfg.attention_bias,
            )?,
            o_proj: Projection::load(store, &[&attn("o_proj")], &[h], q_out, cfg.attention_bias)?,
            post_attention_norm: RmsNorm::load(
                store,
                &format!("{}.weight", layer("post_attention_layernorm")),
                h,
                eps,
            )?,
            mlp: DenseMlp::load(store, &layer("mlp"), cfg.intermediate_size, h)?,
            norm: RmsNorm::load(store, &format!("{}.weight", name("norm")), h, eps)?,
            lm_head: Projection::load(
                store,
                &[&name("lm_head")],
                &[cfg.draft_vocab_size],
                h,
                false,
            )?,
            draft_to_target,
            rotary: RotaryTables::new(
                d,
                cfg.max_position_embeddings,
                cfg.rope_theta,
                dtype,
                &device,
            )?,
            device,
            dtype,
            cfg: cfg.clone(),
        })
    }

    /// Checkpoint tensors the head reads (sizes the load progress bar).
    pub fn tensor_count() -> u64 {
        14
    }

    /// Whether the head ships its own input embedding (else it reads the served model's).
    pub fn has_own_embedding(&self) -> bool {
        self.embed_tokens.is_some()
    }

    pub fn config(&self) -> &Eagle3Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The head's KV cache: one layer in the pool's block geometry.
    pub fn new_cache(&self, num_blocks: usize, block_size: usize, dtype: DType) -> Result<KvCache> {
        KvCache::with_layout(
            1,
            (self.cfg.num_key_value_heads, self.cfg.head_dim),
            num_blocks,
            block_size,
            dtype,
            &self.device,
        )
    }

    /// The head's own embedding rows of `ids`, if it has an embedding (else the caller uses the
    /// served model's).
    pub fn embed(&self, ids: &Tensor) -> Result<Option<Tensor>> {
        self.embed_tokens
            .as_ref()
            .map(|e| Ok(e.weight_rows(ids)?.to_dtype(self.dtype)?))
            .transpose()
    }

    /// Fuses the served model's three hidden states (`[tokens, 3 × target hidden]`) into the
    /// head's hidden state.
    pub fn fuse(&self, aux: &Tensor) -> Result<Tensor> {
        self.fc.forward(&aux.to_dtype(self.dtype)?)
    }

    /// The served model's id of each draft-vocabulary id.
    fn to_target(&self, draft_ids: &[u32]) -> Vec<u32> {
        draft_ids
            .iter()
            .map(|&i| self.draft_to_target.get(i as usize).copied().unwrap_or(0))
            .collect()
    }

    /// One pass over `batch` (its token ids: each position's next token, whose embeddings are
    /// `embeds`; `hidden`: each position's hidden state, `[tokens, hidden]`): writes the
    /// positions' K/V into `cache` and returns the output (before the final norm: the next
    /// pass's hidden state, and what [`Self::logits`] reads) of each chunk's last
    /// `logits_tokens` rows. The logits are left to the caller: the head catches up far more
    /// often than it drafts.
    pub fn forward(
        &self,
        batch: &BatchInput,
        embeds: &Tensor,
        hidden: &Tensor,
        cache: &KvCache,
        backend: AttentionBackend,
    ) -> Result<Tensor> {
        batch
            .validate(cache.block_size(), cache.num_blocks())
            .map_err(|e| Error::Internal(format!("invalid draft batch: {e}")))?;
        let cfg = &self.cfg;
        let (heads, kv_heads, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        if let Some(c) = batch
            .chunks
            .iter()
            .find(|c| c.context_len > cfg.max_position_embeddings)
        {
            return Err(Error::Internal(format!(
                "context of {} tokens exceeds the EAGLE-3 head's max_position_embeddings {}",
                c.context_len, cfg.max_position_embeddings
            )));
        }
        let device = &self.device;
        let positions = Tensor::new(batch.positions(), device)?;
        let (cos, sin) = self.rotary.select(&positions)?;
        let attention =
            AttentionMetadata::new(backend, batch, cache.block_size(), (kv_heads, d), device)?;

        let hidden = hidden.to_dtype(self.dtype)?;
        let normed_hidden = self.hidden_norm.forward(&hidden)?;
        let residual = match cfg.norm_before_residual {
            true => normed_hidden.clone(),
            false => hidden,
        };
        let x = Tensor::cat(
            &[
                &self.input_norm.forward(&embeds.to_dtype(self.dtype)?)?,
                &normed_hidden,
            ],
            1,
        )?;
        let qkv = self.qkv.forward(&x)?;
        let (q, k, v) = split_qkv(&qkv, heads, kv_heads, d)?;
        let q = self.rotary.apply(&q, &cos, &sin)?;
        let k = self.rotary.apply(&k, &cos, &sin)?;
        let scale = 1.0 / (d as f64).sqrt();
        let attn = attention.forward(&q, &k, &v.contiguous()?, cache.layer(0), scale)?;
        // Every row's K/V is written; the rest of the layer is row by row, and only the output
        // rows' results are read: a catch-up over a prompt chunk skips o_proj and the MLP for
        // all its other rows.
        let rows = batch.logits_rows();
        if rows.is_empty() {
            return Ok(Tensor::zeros((0, cfg.hidden_size), self.dtype, device)?);
        }
        let rows = Tensor::new(rows.as_slice(), device)?;
        let x = (residual.index_select(&rows, 0)?
            + self.o_proj.forward(&attn.index_select(&rows, 0)?)?)?;
        Ok((&x + self.mlp.forward(&self.post_attention_norm.forward(&x)?)?)?)
    }

    /// The draft-vocabulary logits (f32) of output rows of [`Self::forward`].
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self
            .lm_head
            .forward(&self.norm.forward(hidden)?)?
            .to_dtype(DType::F32)?)
    }

    /// The greedy draft token (the served model's id) of each output row of [`Self::forward`].
    pub fn draft_tokens(&self, hidden: &Tensor) -> Result<Vec<u32>> {
        if hidden.dim(0)? == 0 {
            return Ok(Vec::new());
        }
        Ok(self.to_target(&crate::sampling::greedy_ids(&self.logits(hidden)?)?))
    }
}

/// The stored name of `name` (without `.weight`): as published, or under `model.`, with
/// `midlayer` also found as `layers.0`.
fn resolve_name(store: &WeightStore, name: &str) -> String {
    let layered = name.replacen("midlayer.", "layers.0.", 1);
    let candidates = [
        name.to_owned(),
        format!("model.{name}"),
        layered.clone(),
        format!("model.{layered}"),
    ];
    candidates
        .iter()
        .find(|c| store.contains(c) || store.contains(&format!("{c}.weight")))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}
