//! Qwen3-MoE's sparse feed-forward block: a router picks `k` of `E` expert MLPs per token and
//! the block returns the routing-weighted sum of their outputs.
//!
//! A step gathers the rows of every expert's tokens into one matrix (grouped by expert, see
//! [`ExpertPlan`]), runs each expert that has tokens once on its contiguous group — so each
//! expert's weights are read once a step, whether it serves one token of a decode or hundreds of
//! a prefill — scales the outputs by their weights and adds each token's `k` outputs in
//! ascending expert order. Every operation is row-independent, so a token's output does not
//! depend on what else shares the step.

use super::layers::Projection;
use super::mlp::DenseMlp;
use super::routing::{ExpertPlan, Routing};
use crate::error::Result;
use crate::weights::config::MoeConfig;
use crate::weights::store::WeightStore;
use candle_core::Tensor;
use rayon::prelude::*;

pub struct SparseMoe {
    /// `[experts, hidden]`, kept dense (unquantized) as every peer keeps it: routing decides
    /// which weights a token reads at all.
    router: Projection,
    experts: Vec<DenseMlp>,
    top_k: usize,
    renormalize: bool,
}

impl SparseMoe {
    pub fn load(store: &WeightStore, prefix: &str, cfg: &MoeConfig, hidden: usize) -> Result<Self> {
        let router = store.get(&format!("{prefix}.gate.weight"), &[cfg.num_experts, hidden])?;
        let experts = (0..cfg.num_experts)
            .map(|e| {
                DenseMlp::load(
                    store,
                    &format!("{prefix}.experts.{e}"),
                    cfg.moe_intermediate_size,
                    hidden,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            router: Projection::from_stored(router, store.dtype())?,
            experts,
            top_k: cfg.num_experts_per_tok,
            renormalize: cfg.norm_topk_prob,
        })
    }

    /// From its router (`[experts, hidden]`) and experts: for benchmarks and tests.
    pub fn new(
        router: Projection,
        experts: Vec<DenseMlp>,
        top_k: usize,
        renormalize: bool,
    ) -> Self {
        Self {
            router,
            experts,
            top_k,
            renormalize,
        }
    }

    /// `x`: `[tokens, hidden]` → `[tokens, hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let device = x.device();
        let routing = Routing::compute(&self.router.forward(x)?, self.top_k, self.renormalize)?;
        if routing.tokens() == 0 {
            return Ok(x.zeros_like()?);
        }
        let plan = ExpertPlan::new(&routing, self.experts.len())?;
        let gathered = x.index_select(&Tensor::new(plan.tokens.as_slice(), device)?, 0)?;
        let run = |&(expert, first, count): &(usize, usize, usize)| {
            self.experts[expert].forward(&gathered.narrow(0, first, count)?)
        };
        // On the CPU the experts run side by side, each product on the thread that took it:
        // a step's experts are many small products (a decode's 8 of one row, a prefill's
        // hundred-odd of a few dozen), and splitting each across the threads made every one a
        // fork and a join. Each expert's arithmetic is the same wherever it runs.
        let outputs = if device.is_cpu() {
            plan.groups
                .par_iter()
                .map(run)
                .collect::<Result<Vec<_>>>()?
        } else {
            plan.groups.iter().map(run).collect::<Result<Vec<_>>>()?
        };
        let weights = Tensor::new(plan.weights.as_slice(), device)?
            .to_dtype(x.dtype())?
            .unsqueeze(1)?;
        let weighted = Tensor::cat(&outputs, 0)?.broadcast_mul(&weights)?;
        let mut sum: Option<Tensor> = None;
        for column in &plan.columns {
            let part = weighted.index_select(&Tensor::new(column.as_slice(), device)?, 0)?;
            sum = Some(match sum {
                None => part,
                Some(acc) => (acc + part)?,
            });
        }
        // `unwrap_or` would allocate the zeros on every call; top-k is at least 1, so there is
        // always a column.
        match sum {
            Some(sum) => Ok(sum),
            None => Ok(x.zeros_like()?),
        }
    }
}
