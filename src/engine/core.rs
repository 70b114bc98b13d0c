//! One engine step: schedule, run the model on the step's flat batch, sample, deliver.
//!
//! The split follows the scheduler's vocabulary: [`Scheduler::schedule`] decides the step,
//! [`Scheduler::batch_input`] lays it out, the model runs, [`Scheduler::commit`] records what was
//! computed, and the rows [`Scheduler::rows_to_sample`] hands back get their next token.

use super::config::EngineConfig;
use super::metrics::EngineMetrics;
use super::request::{Event, FinishReason};
use super::scheduler::{Entry, Scheduler, StepPlan};
use super::sequence::RequestState;
use crate::error::Result;
use crate::model::{KvCache, Qwen3Model};
use crate::sampling::{Sampler, SequenceSampler};
use rayon::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

type Running = Entry<RequestState>;

/// What one call of [`EngineCore::step`] did.
#[derive(Debug)]
pub enum StepOutcome {
    /// Nothing was scheduled.
    Idle,
    Ran,
    /// The step failed and its requests were failed with it.
    Failed(String),
}

pub struct EngineCore {
    model: Qwen3Model,
    cache: KvCache,
    scheduler: Scheduler<RequestState>,
    sampler: Sampler,
    config: EngineConfig,
    eos_ids: Vec<u32>,
    metrics: Arc<EngineMetrics>,
    /// Requests accepted but never admitted yet (the backpressure count).
    queued: Arc<AtomicUsize>,
}

impl EngineCore {
    pub fn new(
        model: Qwen3Model,
        cache: KvCache,
        scheduler: Scheduler<RequestState>,
        config: EngineConfig,
        eos_ids: Vec<u32>,
        metrics: Arc<EngineMetrics>,
        queued: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            model,
            cache,
            scheduler,
            sampler: Sampler::with_backend(config.sampler),
            config,
            eos_ids,
            metrics,
            queued,
        }
    }

    pub fn add(&mut self, entry: Running) {
        self.scheduler.add(entry);
    }

    pub fn is_idle(&self) -> bool {
        self.scheduler.is_idle()
    }

    /// A warm-up step on the real pool (see [`super::startup::warm_up`]).
    pub fn warm_up(&mut self) -> Result<()> {
        super::startup::warm_up(
            &self.model,
            &self.cache,
            self.config.attention_backend,
            &self.sampler,
        )
    }

    /// Runs one step.
    pub fn step(&mut self) -> StepOutcome {
        self.drop_cancelled();
        let plan = self.scheduler.schedule();
        // Count the admitted requests as running before they leave the waiting count, so a
        // scrape during this step sees them (routers read both gauges every few ms).
        self.metrics
            .requests_running
            .set(self.scheduler.occupancy().running as i64);
        self.note_admissions(&plan);
        if plan.is_empty() {
            self.update_gauges();
            return StepOutcome::Idle;
        }
        let outcome = match self.run(&plan) {
            Ok(()) => StepOutcome::Ran,
            Err(e) => {
                tracing::error!(error = %e, "engine step failed; failing the requests in it");
                self.fail_running(&format!("engine error: {e}"));
                StepOutcome::Failed(e.to_string())
            }
        };
        self.retire();
        self.update_gauges();
        outcome
    }

    fn run(&mut self, plan: &StepPlan) -> Result<()> {
        let batch = self.scheduler.batch_input(&plan.chunks);
        let logits = self
            .model
            .forward(&batch, &self.cache, self.config.attention_backend)?;
        let prompt_tokens = self.scheduler.commit(&plan.chunks);
        self.metrics.prompt_tokens.inc_by(prompt_tokens as u64);

        let mut rows = self.scheduler.rows_to_sample(&plan.chunks);
        for Entry { core, data } in rows.iter_mut() {
            let banned = data.suppressed_tokens(core.output_len(), &self.eos_ids);
            data.sampler.set_suppressed(banned);
        }
        constrain(&mut rows);
        let mut samplers: Vec<&mut SequenceSampler> =
            rows.iter_mut().map(|e| &mut e.data.sampler).collect();
        let tokens = self.sampler.sample(&logits, &mut samplers)?;

        let max_model_len = self.config.max_model_len;
        for (Entry { core, data }, sampled) in rows.into_iter().zip(&tokens) {
            if data.finished.is_some() {
                // Failed while constraining (its error is sent): the token is not its own.
                continue;
            }
            core.tokens.push(sampled.id);
            self.metrics.generation_tokens.inc();
            let outcome = data.on_token(core, sampled, &self.eos_ids, max_model_len);
            if let Some(t) = outcome.first_token {
                self.metrics.time_to_first_token.observe(t);
            }
            if let Some(t) = outcome.inter_token {
                self.metrics.inter_token_latency.observe(t);
            }
        }
        Ok(())
    }

    /// Removes finished requests, freeing their blocks.
    fn retire(&mut self) {
        let done = self.scheduler.retire(|e| e.data.finished.is_some());
        for entry in done {
            if let Some(reason) = entry.data.finished {
                self.metrics
                    .request_success
                    .with_label_values(&[reason.as_str()])
                    .inc();
                self.metrics
                    .e2e_request_latency
                    .observe(entry.data.arrival.elapsed().as_secs_f64());
            }
        }
    }

    /// Requests whose client went away: running ones are finished (blocks freed at retire),
    /// waiting ones are dropped.
    fn drop_cancelled(&mut self) {
        for entry in self.scheduler.running_mut() {
            if entry.data.finished.is_none() && entry.data.is_cancelled() {
                entry.data.finished = Some(FinishReason::Abort);
            }
        }
        self.retire();
        let mut never_admitted = 0;
        self.scheduler.drop_waiting(|e| {
            let gone = e.data.is_cancelled();
            if gone && e.data.cached_prompt_tokens.is_none() {
                never_admitted += 1;
            }
            gone
        });
        self.queued.fetch_sub(never_admitted, Ordering::Relaxed);
    }

    /// Counts first admissions (for backpressure) and prefix-cache statistics.
    fn note_admissions(&mut self, plan: &StepPlan) {
        let mut first_admissions = 0;
        for entry in self.scheduler.admitted_mut(&plan.admitted) {
            if entry.data.cached_prompt_tokens.is_none() {
                entry.data.cached_prompt_tokens = Some(entry.core.cached_tokens);
                first_admissions += 1;
            }
        }
        self.queued.fetch_sub(first_admissions, Ordering::Relaxed);
        let stats = &plan.stats;
        self.metrics
            .prefix_cache_queries
            .inc_by(stats.prefix_query_tokens as u64);
        self.metrics
            .prefix_cache_hits
            .inc_by(stats.prefix_hit_tokens as u64);
        self.metrics.preemptions.inc_by(stats.preempted as u64);
    }

    pub fn fail_running(&mut self, message: &str) {
        for entry in self.scheduler.running_mut() {
            if entry.data.finished.is_none() {
                let _ = entry.data.events.send(Event::Error(message.to_owned()));
                entry.data.finished = Some(FinishReason::Abort);
            }
        }
        self.retire();
    }

    /// Fails every request, running and waiting (the engine is going away).
    pub fn fail_all(&mut self, message: &str) {
        self.fail_running(message);
        for entry in self.scheduler.drain_waiting() {
            let _ = entry.data.events.send(Event::Error(message.to_owned()));
        }
        self.queued.store(0, Ordering::Relaxed);
        self.update_gauges();
    }

    /// Ends every request (shutdown past its deadline).
    pub fn abort_all(&mut self) {
        for entry in self.scheduler.running_mut() {
            if entry.data.finished.is_none() {
                entry.data.finish(&entry.core, FinishReason::Abort, None);
            }
        }
        self.retire();
        for mut entry in self.scheduler.drain_waiting() {
            entry.data.finish(&entry.core, FinishReason::Abort, None);
        }
        self.queued.store(0, Ordering::Relaxed);
    }

    fn update_gauges(&self) {
        let o = self.scheduler.occupancy();
        self.metrics.requests_running.set(o.running as i64);
        // Preempted requests wait to resume; the never-admitted ones are in `queued`, which
        // also counts those still on their way to this thread.
        self.metrics.set_preempted_waiting(o.preempted_waiting);
        self.metrics
            .set_waiting(self.queued.load(Ordering::Relaxed));
        self.metrics.kv_blocks_used.set(o.blocks_used as i64);
        self.metrics.kv_blocks_total.set(o.blocks_total as i64);
    }
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
