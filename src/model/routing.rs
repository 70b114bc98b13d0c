//! Mixture-of-experts routing as transformers' `Qwen3MoeSparseMoeBlock` does it: softmax over the
//! router logits in f32, the top-k experts of each token, their weights optionally renormalized
//! to sum to one. The math runs on the model's device; only the chosen ids and weights (`k` of
//! each per token) come to the host, where the step is planned: tokens grouped by expert so each
//! expert's weights are read once a step, whatever the batch.

use crate::error::{Error, Result};
use candle_core::{DType, Tensor};

/// Each token's `top_k` experts and their weights, row-major `[tokens, top_k]`, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub top_k: usize,
    pub experts: Vec<u32>,
    pub weights: Vec<f32>,
}

impl Routing {
    /// From router logits `[tokens, experts]` (any float dtype, any device).
    pub fn compute(logits: &Tensor, top_k: usize, renormalize: bool) -> Result<Self> {
        let (tokens, experts) = logits.dims2()?;
        if top_k == 0 || top_k > experts {
            return Err(Error::Internal(format!(
                "top-{top_k} routing over {experts} experts"
            )));
        }
        if tokens == 0 {
            return Ok(Self {
                top_k,
                experts: Vec::new(),
                weights: Vec::new(),
            });
        }
        let probs = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?.contiguous()?)?;
        let ids = probs
            .arg_sort_last_dim(false)?
            .narrow(1, 0, top_k)?
            .contiguous()?;
        let mut weights = probs.gather(&ids, 1)?;
        if renormalize {
            weights = weights.broadcast_div(&weights.sum_keepdim(1)?)?;
        }
        Ok(Self {
            top_k,
            experts: ids.flatten_all()?.to_vec1::<u32>()?,
            weights: weights.flatten_all()?.to_vec1::<f32>()?,
        })
    }

    pub fn tokens(&self) -> usize {
        self.experts.len() / self.top_k.max(1)
    }
}

/// One step's work for the experts: every (token, expert) pair as a slot, slots grouped by
/// expert (ascending) and, inside a group, by token.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpertPlan {
    /// The token each slot reads.
    pub tokens: Vec<u32>,
    /// The routing weight each slot's output is scaled by.
    pub weights: Vec<f32>,
    /// `(expert, first slot, slots)` of every expert with work, ascending.
    pub groups: Vec<(usize, usize, usize)>,
    /// `columns[j][t]`: the slot of token `t`'s `j`-th expert in ascending expert order. Summing
    /// the columns in order adds each token's expert outputs in ascending expert order, as
    /// transformers' loop does, and independently of the other tokens in the step.
    pub columns: Vec<Vec<u32>>,
}

impl ExpertPlan {
    pub fn new(routing: &Routing, num_experts: usize) -> Result<Self> {
        let (k, tokens) = (routing.top_k, routing.tokens());
        let mut buckets: Vec<Vec<(u32, f32)>> = vec![Vec::new(); num_experts];
        for (slot, (&expert, &weight)) in routing.experts.iter().zip(&routing.weights).enumerate() {
            let bucket = buckets.get_mut(expert as usize).ok_or_else(|| {
                Error::Internal(format!("routed to expert {expert} of {num_experts}"))
            })?;
            bucket.push(((slot / k) as u32, weight));
        }
        let mut plan = Self {
            tokens: Vec::with_capacity(tokens * k),
            weights: Vec::with_capacity(tokens * k),
            groups: Vec::new(),
            columns: vec![vec![0; tokens]; k],
        };
        let mut filled = vec![0usize; tokens];
        for (expert, bucket) in buckets.iter().enumerate() {
            if bucket.is_empty() {
                continue;
            }
            plan.groups.push((expert, plan.tokens.len(), bucket.len()));
            for &(token, weight) in bucket {
                let t = token as usize;
                plan.columns[filled[t]][t] = plan.tokens.len() as u32;
                filled[t] += 1;
                plan.tokens.push(token);
                plan.weights.push(weight);
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn top_k_softmax_and_renormalization() {
        let logits = Tensor::new(
            &[[0.0f32, 2.0, 1.0, -1.0], [3.0, 0.0, 0.0, 1.0]],
            &Device::Cpu,
        )
        .unwrap();
        let raw = Routing::compute(&logits, 2, false).unwrap();
        assert_eq!(raw.experts, vec![1, 2, 0, 3]);
        let row0 = [0.0f32, 2.0, 1.0, -1.0].map(f32::exp);
        let z: f32 = row0.iter().sum();
        assert!((raw.weights[0] - row0[1] / z).abs() < 1e-6);
        assert!((raw.weights[1] - row0[2] / z).abs() < 1e-6);
        let norm = Routing::compute(&logits, 2, true).unwrap();
        assert_eq!(norm.experts, raw.experts);
        for t in 0..2 {
            let sum: f32 = norm.weights[2 * t..2 * t + 2].iter().sum();
            assert!((sum - 1.0).abs() < 1e-6);
        }
        assert!((norm.weights[0] - row0[1] / (row0[1] + row0[2])).abs() < 1e-6);
        assert!(Routing::compute(&logits, 5, true).is_err());
    }

    #[test]
    fn plan_groups_by_expert_and_sums_in_expert_order() {
        let routing = Routing {
            top_k: 2,
            experts: vec![3, 1, 1, 0, 3, 2],
            weights: vec![0.6, 0.4, 0.7, 0.3, 0.5, 0.5],
        };
        let plan = ExpertPlan::new(&routing, 4).unwrap();
        assert_eq!(plan.tokens, vec![1, 0, 1, 2, 0, 2]);
        assert_eq!(plan.weights, vec![0.3, 0.4, 0.7, 0.5, 0.6, 0.5]);
        assert_eq!(
            plan.groups,
            vec![(0, 0, 1), (1, 1, 2), (2, 3, 1), (3, 4, 2)]
        );
        // Token 0: experts 1 then 3; token 1: 0 then 1; token 2: 2 then 3.
        assert_eq!(plan.columns, vec![vec![1, 0, 3], vec![4, 2, 5]]);
        let bad = Routing {
            top_k: 1,
            experts: vec![9],
            weights: vec![1.0],
        };
        assert!(ExpertPlan::new(&bad, 4).is_err());
    }
}
