//! One engine step: schedule, build the varlen batch, run the model, sample, deliver.

use super::config::EngineConfig;
use super::metrics::EngineMetrics;
use super::request::FinishReason;
use super::scheduler::{Entry, ScheduledChunk, Scheduler, StepStats};
use super::sequence::RequestState;
use crate::error::Result;
use crate::model::{BatchInput, KvCache, Qwen3Model, SequenceChunk};
use crate::sampling::{Sampler, SequenceSampler};
use rayon::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct EngineCore {
    pub model: Qwen3Model,
    pub cache: KvCache,
    pub scheduler: Scheduler<RequestState>,
    pub sampler: Sampler,
    pub config: EngineConfig,
    pub eos_ids: Vec<u32>,
    pub metrics: Arc<EngineMetrics>,
    /// Requests accepted but never admitted yet (the backpressure count).
    pub queued: Arc<AtomicUsize>,
}

impl EngineCore {
    /// Runs one step. Returns false when there was nothing to do.
    pub fn step(&mut self) -> bool {
        self.drop_cancelled();
        let mut stats = StepStats::default();
        let waiting_before: Vec<u64> = self.scheduler.waiting.iter().map(|e| e.core.id).collect();
        let chunks = self.scheduler.schedule(&mut stats);
        // Count the admitted requests as running before they leave the waiting count, so a
        // scrape during this step sees them (routers read both gauges every few ms).
        self.metrics
            .requests_running
            .set(self.scheduler.running.len() as i64);
        self.note_admissions(&waiting_before, &stats);
        if chunks.is_empty() {
            self.update_gauges();
            return false;
        }
        if let Err(e) = self.run(&chunks) {
            tracing::error!(error = %e, "engine step failed; failing the requests in it");
            self.fail_running(&format!("engine error: {e}"));
        }
        self.retire();
        self.update_gauges();
        true
    }

    fn run(&mut self, chunks: &[ScheduledChunk]) -> Result<()> {
        let mut batch = BatchInput::default();
        for chunk in chunks {
            let core = &self.scheduler.running[chunk.index].core;
            let start = core.num_computed;
            let end = start + chunk.num_tokens;
            batch.token_ids.extend_from_slice(&core.tokens[start..end]);
            batch.chunks.push(SequenceChunk {
                num_query_tokens: chunk.num_tokens,
                context_len: end,
                block_table: core.block_table.clone(),
                needs_logits: end == core.tokens.len(),
            });
        }
        let logits = self
            .model
            .forward(&batch, &self.cache, self.config.attention_backend)?;

        let prompt_tokens: usize = chunks
            .iter()
            .filter(|c| {
                let core = &self.scheduler.running[c.index].core;
                core.num_computed < core.prompt_len
            })
            .map(|c| c.num_tokens)
            .sum();
        self.metrics.prompt_tokens.inc_by(prompt_tokens as u64);
        for chunk in chunks {
            self.scheduler.commit(*chunk);
        }

        let sampled_rows: Vec<usize> = chunks
            .iter()
            .zip(&batch.chunks)
            .filter(|(_, b)| b.needs_logits)
            .map(|(c, _)| c.index)
            .collect();
        for &i in &sampled_rows {
            let Entry { core, data } = &mut self.scheduler.running[i];
            let banned = data.suppressed_tokens(core.output_len(), &self.eos_ids);
            data.sampler.set_suppressed(banned);
        }
        self.constrain_rows(&sampled_rows);
        // Chunks are in running order, so the rows to sample are ascending indices.
        debug_assert!(sampled_rows.windows(2).all(|w| w[0] < w[1]));
        let mut samplers: Vec<&mut SequenceSampler> = self
            .scheduler
            .running
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| sampled_rows.binary_search(i).is_ok())
            .map(|(_, e)| &mut e.data.sampler)
            .collect();
        let tokens = self.sampler.sample(&logits, &mut samplers)?;

        let max_model_len = self.config.max_model_len;
        for (&i, sampled) in sampled_rows.iter().zip(&tokens) {
            let Entry { core, data } = &mut self.scheduler.running[i];
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

    /// Grammar masks for the constrained rows about to be sampled. Each mask depends only on
    /// its own request, so they are computed in parallel; this runs after the forward pass is
    /// queued, so on an accelerator it overlaps the model's work.
    fn constrain_rows(&mut self, sampled_rows: &[usize]) {
        let mut constrained: Vec<&mut RequestState> = self
            .scheduler
            .running
            .iter_mut()
            .enumerate()
            .filter(|(i, e)| e.data.guided.is_some() && sampled_rows.binary_search(i).is_ok())
            .map(|(_, e)| &mut e.data)
            .collect();
        match constrained.len() {
            0 => {}
            1 => constrained[0].constrain_next_token(),
            _ => constrained
                .par_iter_mut()
                .for_each(|d| d.constrain_next_token()),
        }
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
        for entry in &mut self.scheduler.running {
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
    fn note_admissions(&mut self, waiting_before: &[u64], stats: &StepStats) {
        let mut first_admissions = 0;
        for entry in &mut self.scheduler.running {
            if entry.data.cached_prompt_tokens.is_none() && waiting_before.contains(&entry.core.id)
            {
                entry.data.cached_prompt_tokens = Some(entry.core.cached_tokens);
                first_admissions += 1;
            }
        }
        self.queued.fetch_sub(first_admissions, Ordering::Relaxed);
        self.metrics
            .prefix_cache_queries
            .inc_by(stats.prefix_query_tokens as u64);
        self.metrics
            .prefix_cache_hits
            .inc_by(stats.prefix_hit_tokens as u64);
        self.metrics.preemptions.inc_by(stats.preempted as u64);
    }

    pub fn fail_running(&mut self, message: &str) {
        for entry in &mut self.scheduler.running {
            if entry.data.finished.is_none() {
                let _ = entry
                    .data
                    .events
                    .send(super::request::Event::Error(message.to_owned()));
                entry.data.finished = Some(FinishReason::Abort);
            }
        }
        self.retire();
    }

    /// Ends every request (shutdown past its deadline).
    pub fn abort_all(&mut self) {
        for entry in &mut self.scheduler.running {
            if entry.data.finished.is_none() {
                entry.data.finish(&entry.core, FinishReason::Abort, None);
            }
        }
        self.retire();
        while let Some(entry) = self.scheduler.waiting.pop_front() {
            let mut data = entry.data;
            data.finish(&entry.core, FinishReason::Abort, None);
        }
        self.queued.store(0, Ordering::Relaxed);
    }

    fn update_gauges(&self) {
        let s = &self.scheduler;
        self.metrics.requests_running.set(s.running.len() as i64);
        // A waiting entry that was admitted before has been preempted; the others are still
        // counted in `queued`.
        let preempted = s
            .waiting
            .iter()
            .filter(|e| e.data.cached_prompt_tokens.is_some())
            .count();
        self.metrics.set_preempted_waiting(preempted);
        self.metrics
            .set_waiting(self.queued.load(Ordering::Relaxed));
        self.metrics.kv_blocks_used.set(s.blocks.num_used() as i64);
        self.metrics
            .kv_blocks_total
            .set(s.blocks.num_blocks() as i64);
    }
}
