//! A step's logits → each request's next tokens: sampled, checked against the request's
//! draft, delivered.
//!
//! A request that carried a draft has one logits row for its pending token and one for each
//! draft token. Sampling goes in rounds: round `r` samples row `r` of every request whose
//! first `r` draft tokens were each equal to the token sampled before them, with the request's
//! own sampler, masks and penalties as they stand after those tokens. So every emitted token
//! is what the request would have sampled without a draft, a request's random draws are spent
//! exactly as they would have been, and the draft tokens accepted are those equal to it.

use super::metrics::EngineMetrics;
use super::request_state::RequestState;
use super::scheduler::Entry;
use crate::sampling::{SampledToken, Sampler, SequenceSampler};
use candle_core::Tensor;
use rayon::prelude::*;

type Running = Entry<RequestState>;

/// What the rounds need besides the rows.
pub struct EmitContext<'a> {
    pub sampler: &'a Sampler,
    pub eos_ids: &'a [u32],
    pub max_model_len: usize,
    pub metrics: &'a EngineMetrics,
    /// Reject every draft (`tealight_reject_all_drafts`, a measuring aid).
    pub reject_drafts: bool,
}

/// Samples, verifies and delivers the tokens of `rows`, whose logits rows (each request's
/// `1 + draft` in order) are `logits`. Returns, per request that carried a draft, its id and
/// how many draft tokens were accepted; `Err` when no request got a token (every row of the
/// first round failed, each with its error sent).
pub fn emit(
    ctx: &EmitContext<'_>,
    mut rows: Vec<&mut Running>,
    logits: &Tensor,
) -> Result<Vec<(u64, usize)>, String> {
    let first = first_logits_rows(&rows);
    let drafted = rows.iter().any(|e| !e.core.draft.is_empty());
    rows.iter()
        .filter(|e| !e.core.draft.is_empty())
        .for_each(|e| ctx.metrics.record_draft(e.core.draft.len()));
    let mut accepted = vec![0usize; rows.len()];
    let mut active: Vec<bool> = vec![true; rows.len()];
    for round in 0.. {
        let indices: Vec<usize> = (0..rows.len()).filter(|&i| active[i]).collect();
        if indices.is_empty() {
            break;
        }
        let round_logits = match drafted {
            false => logits.clone(),
            true => {
                let picked: Vec<u32> = indices.iter().map(|&i| (first[i] + round) as u32).collect();
                let picked = Tensor::new(picked.as_slice(), logits.device())
                    .and_then(|p| logits.index_select(&p, 0));
                match picked {
                    Ok(l) => l,
                    Err(e) => {
                        let message = format!("engine error: {e}");
                        for &i in &indices {
                            rows[i].data.fail_with(&message);
                        }
                        if round == 0 {
                            return Err(e.to_string());
                        }
                        break;
                    }
                }
            }
        };
        let mut batch: Vec<&mut Running> = rows
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| active[*i])
            .map(|(_, e)| &mut **e)
            .collect();
        for Entry { core, data } in batch.iter_mut() {
            let banned = data.suppressed_tokens(core.output_len(), ctx.eos_ids);
            data.sampler.set_suppressed(banned);
        }
        constrain(&mut batch);
        let tokens = match sample_isolated(ctx.sampler, &round_logits, &mut batch) {
            Ok(tokens) => tokens,
            Err(why) if round == 0 => return Err(why),
            Err(_) => break, // every row of this round failed, each with its error sent
        };
        active.iter_mut().for_each(|a| *a = false);
        for ((entry, sampled), &i) in batch.into_iter().zip(tokens).zip(&indices) {
            let Some(sampled) = sampled else {
                continue; // this row's sampling failed; its error is sent
            };
            let confirms = entry.core.draft.get(round) == Some(&sampled.id) && !ctx.reject_drafts;
            if confirms {
                ctx.metrics.record_accepted(round);
            }
            // A request that ends on a confirmed token keeps no more than before it: the
            // token is delivered, not computed into its KV.
            if deliver(ctx, entry, &sampled) && confirms {
                accepted[i] += 1;
                active[i] = true;
            }
        }
    }
    Ok(settle_acceptance(&mut rows, &accepted))
}

/// The first logits row of each of `rows`: a request has one row for its pending token and
/// one for each draft token, in order.
pub fn first_logits_rows(rows: &[&mut Running]) -> Vec<usize> {
    rows.iter()
        .scan(0, |next, e| {
            let at = *next;
            *next += 1 + e.core.draft.len();
            Some(at)
        })
        .collect()
}

/// Appends a sampled token to its request and sends it; whether the request goes on.
fn deliver(ctx: &EmitContext<'_>, entry: &mut Running, sampled: &SampledToken) -> bool {
    let Entry { core, data } = entry;
    if data.finished.is_some() {
        // Failed while constraining (its error is sent): the token is not its own.
        return false;
    }
    core.tokens.push(sampled.id);
    ctx.metrics.generation_tokens.inc();
    let outcome = data.on_token(core, sampled, ctx.eos_ids, ctx.max_model_len);
    if let Some(t) = outcome.first_token {
        ctx.metrics.time_to_first_token.observe(t);
    }
    if let Some(t) = outcome.inter_token {
        ctx.metrics.inter_token_latency.observe(t);
    }
    outcome.finished.is_none()
}

/// Records each drafting request's acceptance; returns its id and accepted tokens.
fn settle_acceptance(rows: &mut [&mut Running], accepted: &[usize]) -> Vec<(u64, usize)> {
    let mut settled = Vec::new();
    for (Entry { core, data }, &ok) in rows.iter_mut().zip(accepted) {
        let drafted = core.draft.len();
        if drafted == 0 {
            continue;
        }
        if let Some(spec) = data.speculation.as_mut() {
            spec.acceptance.record(drafted, ok);
        }
        settled.push((core.id, ok));
    }
    settled
}

/// Samples every row at once; if that fails, each row on its own (its random draws restored
/// first, so a seeded row draws what it would have), failing only the rows that fail alone.
/// `None` marks a row that failed (its request has an error event); `Err` says why every row
/// failed.
pub fn sample_isolated(
    sampler: &Sampler,
    logits: &Tensor,
    rows: &mut [&mut Running],
) -> Result<Vec<Option<SampledToken>>, String> {
    let draws: Vec<_> = rows.iter().map(|e| e.data.sampler.draws()).collect();
    let batched = {
        let mut samplers: Vec<&mut SequenceSampler> =
            rows.iter_mut().map(|e| &mut e.data.sampler).collect();
        sampler.sample(logits, &mut samplers)
    };
    let mut last_error = match batched {
        Ok(tokens) => return Ok(tokens.into_iter().map(Some).collect()),
        Err(e) => e.to_string(),
    };
    tracing::warn!(error = %last_error, rows = rows.len(), "sampling failed; sampling row by row");
    let tokens: Vec<Option<SampledToken>> = rows
        .iter_mut()
        .zip(draws)
        .enumerate()
        .map(|(i, (entry, draws))| {
            entry.data.sampler.restore_draws(draws);
            let one = logits
                .narrow(0, i, 1)
                .map_err(crate::error::Error::from)
                .and_then(|row| sampler.sample(&row, &mut [&mut entry.data.sampler]));
            match one {
                Ok(mut t) => t.pop(),
                Err(e) => {
                    tracing::error!(error = %e, request = entry.core.id, "sampling failed");
                    entry.data.fail_with(&format!("sampling error: {e}"));
                    last_error = e.to_string();
                    None
                }
            }
        })
        .collect();
    if tokens.iter().all(Option::is_none) {
        return Err(last_error);
    }
    Ok(tokens)
}

/// Grammar masks for the constrained rows about to be sampled. Each mask depends only on its own
/// request, so they are computed in parallel; this runs after the forward pass is queued, so on
/// an accelerator it overlaps the model's work.
fn constrain(rows: &mut [&mut Running]) {
    let mut constrained: Vec<&mut RequestState> = rows
        .iter_mut()
        .filter(|e| e.data.guided.is_some())
        .map(|e| &mut e.data)
        .collect();
    match constrained.len() {
        0 => {}
        1 => constrained[0].constrain_next_token(),
        _ => constrained
            .par_iter_mut()
            .for_each(|d| d.constrain_next_token()),
    }
}
