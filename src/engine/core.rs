//! One engine step: schedule, run the model on the step's flat batch, sample, deliver.
//!
//! The split follows the scheduler's vocabulary: [`Scheduler::schedule`] decides the step,
//! [`Scheduler::batch_input`] lays it out, the model runs, [`Scheduler::commit`] records what was
//! computed, and the rows [`Scheduler::rows_to_sample`] hands back get their next token.
//!
//! Faults stay with the requests they belong to. A forward pass that fails is retried once as
//! two halves (a batch too large for memory often fits that way); only the requests of a half
//! that fails again get an error. A sampling failure (e.g. NaN logits on a greedy row) is
//! retried row by row, each row with its random draws as they were, so only the rows that fail
//! on their own get an error.

use super::config::EngineConfig;
use super::emit::{EmitContext, emit, first_logits_rows};
use super::kv_events::KvEventSink;
use super::kv_offload::offloader::Offloader;
use super::metrics::EngineMetrics;
use super::request::{Event, FinishReason, Pooling};
use super::request_state::RequestState;
use super::scheduler::{Entry, ScheduledChunk, Scheduler, StepPlan};
use super::speculative::Speculator;
use super::speculative::draft_model::DraftJob;
use super::speculative::eagle3::{CATCH_UP_ROWS, CatchUp, Eagle3Drafter, EagleJob};
use super::speculative::gate::Offer;
use super::wake::ReadWake;
use crate::error::Result;
use crate::model::{KvCache, Qwen3Model, StepOutput};
use crate::sampling::Sampler;
use candle_core::Tensor;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    /// Signalled by clients' reads while the engine sleeps with only parked requests.
    wake: Arc<ReadWake>,
    /// The host and disk tiers under the pool, when configured.
    offload: Option<Offloader>,
    /// The KV event stream, when configured.
    events: Option<KvEventSink>,
    /// Speculative decoding, when configured.
    speculator: Option<Speculator>,
    /// Seconds the draft model took to propose this step's drafts (part of the step's cost).
    draft_seconds: f64,
    #[cfg(test)]
    faults: Option<Box<dyn tests::StepFaults>>,
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
            wake: Arc::new(ReadWake::default()),
            offload: None,
            events: None,
            speculator: None,
            draft_seconds: 0.0,
            #[cfg(test)]
            faults: None,
        }
    }

    /// The pool's stored and removed blocks are published here (the pool must record them:
    /// [`super::block_manager::BlockManager::with_digests`]).
    pub fn with_events(mut self, events: KvEventSink) -> Self {
        self.events = Some(events);
        self
    }

    /// Evicted blocks go to these tiers and come back from them (the pool must record
    /// evictions with digests: [`super::block_manager::BlockManager::with_digests`]).
    pub fn with_offload(mut self, offload: Offloader) -> Self {
        self.offload = Some(offload);
        self
    }

    /// Requests carry draft tokens from `speculator` into steps.
    pub fn with_speculation(mut self, speculator: Speculator) -> Self {
        self.speculator = Some(speculator);
        self
    }

    /// The signal clients' reads raise (see [`ReadWake`]).
    pub fn wake(&self) -> &Arc<ReadWake> {
        &self.wake
    }

    pub fn add(&mut self, entry: Running) {
        self.scheduler.add(entry);
    }

    /// Whether the model computes on the CPU (rayon's threads), not a GPU.
    pub fn runs_on_cpu(&self) -> bool {
        self.model.device().is_cpu()
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
        self.check_backpressure();
        self.restore_from_tiers();
        self.draft();
        let plan = self.scheduler.schedule_with(RequestState::is_parked);
        // Admission may have evicted cached blocks this step's forward pass overwrites.
        self.settle_pool_events();
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
        let outcome = self.run(&plan);
        self.retire();
        // The blocks this step registered, announced now rather than a step later.
        self.settle_pool_events();
        self.update_gauges();
        outcome
    }

    /// `Ran` when any request of the step got its token (faults isolated to some rows do not
    /// fail the step); `Failed` when none could (every forward or every sampled row failed).
    fn run(&mut self, plan: &StepPlan) -> StepOutcome {
        let started = Instant::now();
        let (computed, output) = match self.forward_isolated(&plan.chunks) {
            Ok(done) => done,
            Err(why) => return StepOutcome::Failed(why),
        };
        let StepOutput {
            logits,
            hidden,
            aux,
        } = output;
        let spans = self.step_spans(&computed);
        let prompt_tokens = self.scheduler.commit(&computed);
        self.metrics.prompt_tokens.inc_by(prompt_tokens as u64);
        if let Some(offload) = &mut self.offload {
            offload.observe_prefill(prompt_tokens, started.elapsed());
        }

        // Rows whose prompt is done: pooling requests end here with what they read (a hidden
        // state, or chosen logits), the others sample their next token. Each group keeps the
        // order of the step's output rows.
        let (pooled, rows): (Vec<_>, Vec<_>) = self
            .scheduler
            .rows_to_sample(&computed)
            .into_iter()
            .partition(|e| Pooling::is_hidden(&e.data.pooling));
        deliver_pooled(pooled, &hidden);
        let (rows, logits) = match deliver_scores(rows, logits) {
            Ok(rest) => rest,
            Err(why) => return StepOutcome::Failed(why),
        };
        if rows.is_empty() {
            self.catch_up_head(&spans, aux.as_ref());
            return StepOutcome::Ran;
        }
        let ctx = EmitContext {
            sampler: &self.sampler,
            eos_ids: &self.eos_ids,
            max_model_len: self.config.max_model_len,
            metrics: &self.metrics,
            reject_drafts: self
                .speculator
                .as_ref()
                .is_some_and(|s| s.config().reject_all_drafts),
        };
        let settled = match emit(&ctx, rows, &logits) {
            Ok(settled) => settled,
            Err(why) => return StepOutcome::Failed(why),
        };
        self.settle_drafts(&computed, &settled);
        self.catch_up_head(&spans, aux.as_ref());
        if let Some(spec) = &mut self.speculator
            && computed.iter().all(|c| c.num_tokens == 1)
        {
            let tokens = computed.iter().map(|c| 1 + c.draft_tokens).sum();
            let seconds = started.elapsed().as_secs_f64() + self.draft_seconds;
            spec.observe_step(tokens, seconds);
        }
        StepOutcome::Ran
    }

    /// Gives the running decodes their drafts for the next step, as far as they pay. None
    /// while a prompt is being prefilled or a request waits to be admitted: drafts would take
    /// budget from them.
    fn draft(&mut self) {
        self.draft_seconds = 0.0;
        let Some(spec) = &self.speculator else {
            return;
        };
        let parked = RequestState::is_parked;
        let runnable = |e: &&mut Running| e.data.finished.is_none() && !parked(&e.data);
        let prefilling = self
            .scheduler
            .running_mut()
            .filter(runnable)
            .any(|e| e.core.pending() > 1);
        let decoding = self.scheduler.running_mut().filter(runnable).count();
        let blocked = prefilling
            || self.scheduler.next_admission(parked).is_some()
            || !spec.allowed_at(decoding);
        let max_model_len = self.config.max_model_len;
        // Each eligible sequence's running index and the most tokens it may draft.
        let mut rooms = Vec::new();
        for (i, Entry { core, data }) in self.scheduler.running_mut().enumerate() {
            core.draft.clear();
            // A draft model's KV past the computed tokens belongs to rejected drafts.
            core.draft_computed = core.draft_computed.min(core.num_computed);
            let eligible = !blocked
                && core.pending() == 1
                && data.finished.is_none()
                && data.pooling.is_none()
                && !data.is_parked();
            if !eligible {
                continue;
            }
            // The step may emit the draft's tokens and one more: within the output limit,
            // the context limit and the room in the client's channel.
            let room = [
                data.max_tokens.saturating_sub(core.output_len() + 1),
                max_model_len.saturating_sub(core.tokens.len() + 1),
                data.events
                    .capacity()
                    .saturating_sub(super::request_state::EVENTS_PER_STEP),
            ]
            .into_iter()
            .min()
            .unwrap_or(0);
            if data.speculation.is_none() {
                data.speculation = Some(spec.new_request());
            }
            rooms.push((i, room));
        }
        if spec.draft_model().is_some() {
            self.draft_with_model(decoding, &rooms);
            return;
        }
        if spec.eagle3().is_some() {
            self.draft_with_eagle(decoding, &rooms);
            return;
        }
        for &(i, room) in &rooms {
            let Entry { core, data } = self.scheduler.running_entry_mut(i);
            if let Some(state) = data.speculation.as_mut() {
                core.draft = spec.propose(&core.tokens, state, room);
            }
        }
        let mut offers = offers_of(&mut self.scheduler);
        spec.choose(decoding, &mut offers);
    }

    /// [`Self::draft`] with a draft model: the gate chooses each sequence's draft length first
    /// (a draft model's tokens cost a forward pass each), then one batched proposal fills them.
    fn draft_with_model(&mut self, decoding: usize, rooms: &[(usize, usize)]) {
        let Some(reach) = self
            .speculator
            .as_ref()
            .and_then(|s| s.draft_model())
            .map(|m| m.max_positions())
        else {
            return;
        };
        // The proposal writes through the pending token, then all but the last draft token.
        let chosen = self.choose_model_drafts(decoding, rooms, reach, 1, |_| true);
        if chosen.is_empty() {
            return;
        }
        let Some(model) = self.speculator.as_ref().and_then(|s| s.draft_model()) else {
            return;
        };
        let started = Instant::now();
        let proposals = {
            let jobs: Vec<DraftJob<'_>> = chosen
                .iter()
                .map(|&i| {
                    let core = &self.scheduler.running_at(i).core;
                    DraftJob {
                        tokens: &core.tokens,
                        computed: core.draft_computed,
                        block_table: &core.block_table,
                        k: core.draft.len(),
                    }
                })
                .collect();
            model.propose(&jobs, self.config.max_num_batched_tokens)
        };
        let proposals = match proposals {
            Ok(p) => p,
            Err(e) => {
                // The target decodes on without drafts; the requests are not at fault.
                tracing::warn!(error = %e, "the draft model failed; this step carries no drafts");
                for &i in &chosen {
                    self.scheduler.running_entry_mut(i).core.draft.clear();
                }
                return;
            }
        };
        let mut drafted = false;
        for (&i, proposal) in chosen.iter().zip(proposals) {
            let core = &mut self.scheduler.running_entry_mut(i).core;
            drafted |= !proposal.draft.is_empty();
            core.draft = proposal.draft;
            core.draft_computed = proposal.computed;
        }
        if drafted {
            self.draft_seconds = started.elapsed().as_secs_f64();
        }
    }

    /// The gate's draft lengths for a drafter whose tokens cost a pass each: each eligible
    /// sequence (`rooms`, those `can_draft` accepts) offers as many as fit below `reach`
    /// positions, the gate keeps what pays, and blocks are reserved for the positions the
    /// proposal writes (through `len + k - 1 - short_of`). Returns the running indices that
    /// draft.
    fn choose_model_drafts(
        &mut self,
        decoding: usize,
        rooms: &[(usize, usize)],
        reach: usize,
        short_of: usize,
        can_draft: impl Fn(&Running) -> bool,
    ) -> Vec<usize> {
        let Some(spec) = &self.speculator else {
            return Vec::new();
        };
        let limit = spec.config().num_speculative_tokens;
        for &(i, room) in rooms {
            let entry = self.scheduler.running_entry_mut(i);
            let fits = reach.saturating_sub(entry.core.tokens.len());
            let k = match can_draft(entry) {
                true => room.min(limit).min(fits),
                false => 0,
            };
            entry.core.draft = vec![0; k];
        }
        let mut offers = offers_of(&mut self.scheduler);
        spec.choose(decoding, &mut offers);
        drop(offers);
        let mut chosen = Vec::new();
        for &(i, _) in rooms {
            let core = &self.scheduler.running_at(i).core;
            let (len, k) = (core.tokens.len(), core.draft.len());
            if k == 0 {
                continue;
            }
            if self.scheduler.reserve(i, len + k - short_of) {
                chosen.push(i);
            } else {
                self.scheduler.running_entry_mut(i).core.draft.clear();
            }
        }
        chosen
    }

    /// [`Self::draft`] with an EAGLE-3 head: like a draft model's, after the head is fed the
    /// drafting sequences' pending positions (their seeds come from there).
    fn draft_with_eagle(&mut self, decoding: usize, rooms: &[(usize, usize)]) {
        let Some(reach) = self
            .speculator
            .as_ref()
            .and_then(|s| s.eagle3())
            .map(|d| d.head().config().max_position_embeddings)
        else {
            return;
        };
        let ready = |e: &Running| {
            e.data
                .speculation
                .as_ref()
                .is_some_and(|s| s.eagle.can_draft())
        };
        // The passes after the seed write positions len - 1 through len + k - 3.
        let chosen = self.choose_model_drafts(decoding, rooms, reach, 2, ready);
        if chosen.is_empty() {
            return;
        }
        let started = Instant::now();
        let drafts = self.propose_with_eagle(&chosen);
        match drafts {
            Ok(drafts) => {
                for (&i, draft) in chosen.iter().zip(drafts) {
                    self.scheduler.running_entry_mut(i).core.draft = draft;
                }
                self.draft_seconds = started.elapsed().as_secs_f64();
            }
            Err(e) => {
                tracing::warn!(error = %e, "the EAGLE-3 head failed; this step carries no drafts");
                for &i in &chosen {
                    self.scheduler.running_entry_mut(i).core.draft.clear();
                }
            }
        }
    }

    /// Catches the head up on the `chosen` sequences' pending positions, then drafts each the
    /// length the gate gave it.
    fn propose_with_eagle(&mut self, chosen: &[usize]) -> Result<Vec<Vec<u32>>> {
        let Some(drafter) = self.speculator.as_ref().and_then(|s| s.eagle3()) else {
            return Ok(vec![Vec::new(); chosen.len()]);
        };
        feed_head(drafter, &self.model, &mut self.scheduler, chosen)?;
        let model = &self.model;
        let embed = |ids: &Tensor| model.embed(ids);
        let jobs: Vec<EagleJob<'_>> = chosen
            .iter()
            .filter_map(|&i| {
                let Entry { core, data } = self.scheduler.running_at(i);
                Some(EagleJob {
                    state: &data.speculation.as_ref()?.eagle,
                    len: core.tokens.len(),
                    block_table: &core.block_table,
                    k: core.draft.len(),
                })
            })
            .collect();
        if jobs.len() != chosen.len() {
            return Ok(vec![Vec::new(); chosen.len()]);
        }
        drafter.propose(&jobs, &embed)
    }

    /// Each chunk of a step the model ran: its running index, first position and rows (its
    /// input tokens and draft), before [`Scheduler::commit`] moves the positions on.
    fn step_spans(&self, chunks: &[ScheduledChunk]) -> Vec<(usize, usize, usize)> {
        if self.speculator.as_ref().and_then(|s| s.eagle3()).is_none() {
            return Vec::new();
        }
        chunks
            .iter()
            .map(|c| {
                let start = self.scheduler.running_at(c.index).core.num_computed;
                (c.index, start, c.num_tokens + c.draft_tokens)
            })
            .collect()
    }

    /// Keeps the step's standing rows (`spans`, their hidden states `aux`) for the EAGLE-3
    /// head, and feeds it those of the sequences that gathered [`CATCH_UP_ROWS`] (a prompt
    /// chunk at once). A failure only costs drafts.
    fn catch_up_head(&mut self, spans: &[(usize, usize, usize)], aux: Option<&Tensor>) {
        let (Some(spec), Some(aux)) = (&self.speculator, aux) else {
            return;
        };
        let Some(drafter) = spec.eagle3() else {
            return;
        };
        let mut full = Vec::new();
        let mut offset = 0;
        for &(index, start, rows) in spans {
            let first = offset;
            offset += rows;
            let Entry { core, data } = self.scheduler.running_entry_mut(index);
            if data.finished.is_some() || data.pooling.is_some() {
                continue;
            }
            // Rows whose next token is known: a draft's stand as far as it was accepted.
            let standing = rows.min(core.tokens.len().saturating_sub(start + 1));
            // A copy: the step's hidden states are not kept alive by a row of them.
            let kept = aux.narrow(0, first, standing).and_then(|rows| rows.copy());
            let state = &mut data
                .speculation
                .get_or_insert_with(|| spec.new_request())
                .eagle;
            match kept {
                Ok(kept) => state.push(start, kept),
                Err(e) => tracing::warn!(error = %e, "EAGLE-3: a step's hidden states are lost"),
            }
            if state.pending_rows() >= CATCH_UP_ROWS {
                full.push(index);
            }
        }
        if full.is_empty() {
            return;
        }
        if let Err(e) = feed_head(drafter, &self.model, &mut self.scheduler, &full) {
            tracing::warn!(error = %e, "the EAGLE-3 head failed to catch up; drafts wait");
        }
    }

    /// Counts the accepted draft tokens of `chunks`' sequences as computed (see
    /// [`Scheduler::settle_draft`]); a draft that was not verified counts none.
    fn settle_drafts(&mut self, chunks: &[ScheduledChunk], settled: &[(u64, usize)]) {
        for chunk in chunks.iter().filter(|c| c.draft_tokens > 0) {
            let id = self.scheduler.running_at(chunk.index).core.id;
            let accepted = settled
                .iter()
                .find(|(s, _)| *s == id)
                .map_or(0, |&(_, n)| n);
            self.scheduler.settle_draft(chunk.index, accepted);
            if let Some(spec) = &mut self.speculator {
                spec.record(chunk.draft_tokens, accepted);
            }
        }
    }

    /// Restores the tier-held continuation of the next admission's prefix hit into the pool,
    /// saving first what making room for it evicts.
    fn restore_from_tiers(&mut self) {
        let Some(offload) = &mut self.offload else {
            return;
        };
        let Some(restore) = offload.plan(&mut self.scheduler, RequestState::is_parked) else {
            return;
        };
        self.settle_pool_events();
        if let Some(offload) = &mut self.offload {
            offload.fill(restore, &mut self.scheduler, &self.cache);
        }
    }

    /// Saves the prefix cache to the disk tier, if there is one (the engine is stopping).
    pub fn persist_prefix_cache(&mut self) {
        self.settle_pool_events();
        if let Some(offload) = &mut self.offload {
            offload.persist(self.scheduler.blocks_mut(), &self.cache);
        }
    }

    /// Hands the pool's recorded events on: evicted blocks' KV to the tiers, stored and
    /// removed blocks to the event stream.
    fn settle_pool_events(&mut self) {
        if self.offload.is_none() && self.events.is_none() {
            return;
        }
        let events = self.scheduler.blocks_mut().drain_events();
        if events.is_empty() {
            return;
        }
        if let Some(offload) = &mut self.offload {
            offload.save_evicted(&events, &self.cache);
        }
        if let Some(sink) = &mut self.events {
            sink.publish(&events);
        }
    }

    /// Runs the model on `chunks`. If that fails, retries once as two halves and fails the
    /// requests of a half that fails again. Returns the chunks whose KV is now computed and
    /// their output rows, or why nothing was computed (every request of the step has failed).
    fn forward_isolated(
        &mut self,
        chunks: &[ScheduledChunk],
    ) -> std::result::Result<(Vec<ScheduledChunk>, StepOutput), String> {
        let first = match self.forward(chunks) {
            Ok(logits) => return Ok((chunks.to_vec(), logits)),
            Err(e) => e,
        };
        if chunks.len() < 2 {
            tracing::error!(error = %first, "engine step failed");
            self.fail_chunks(chunks, &format!("engine error: {first}"));
            return Err(first.to_string());
        }
        tracing::warn!(error = %first, sequences = chunks.len(), "engine step failed; retrying it split in two");
        let (left, right) = chunks.split_at(chunks.len() / 2);
        let mut computed = Vec::new();
        let mut pieces = Vec::new();
        let mut last_error = first.to_string();
        for half in [left, right] {
            match self.forward(half) {
                Ok(logits) => {
                    computed.extend_from_slice(half);
                    pieces.push(logits);
                }
                Err(e) => {
                    tracing::error!(error = %e, sequences = half.len(), "half of a failed step failed again");
                    self.fail_chunks(half, &format!("engine error: {e}"));
                    last_error = e.to_string();
                }
            }
        }
        let output = match pieces.len() {
            0 => return Err(last_error),
            1 => pieces.pop().ok_or(last_error)?,
            _ => join_outputs(&pieces).map_err(|e| {
                self.fail_chunks(&computed, &format!("engine error: {e}"));
                e.to_string()
            })?,
        };
        Ok((computed, output))
    }

    /// One forward pass over `chunks`: the output rows of the chunks that finish their input
    /// (logits, or the hidden state of a pooling request's).
    fn forward(&mut self, chunks: &[ScheduledChunk]) -> Result<StepOutput> {
        let batch = self.scheduler.batch_input(chunks);
        #[cfg(test)]
        if let Some(faults) = self.faults.as_mut() {
            faults.before_forward(&self.scheduler.ids_of(chunks))?;
        }
        // One flag per output row: a chunk verifying a draft has several, never pooled.
        let pooled: Vec<bool> = chunks
            .iter()
            .zip(&batch.chunks)
            .flat_map(|(c, b)| {
                let hidden = Pooling::is_hidden(&self.scheduler.running_at(c.index).data.pooling);
                std::iter::repeat_n(hidden, b.logits_tokens)
            })
            .collect();
        #[allow(unused_mut)]
        let mut output = self.model.forward_pooled(
            &batch,
            &self.cache,
            self.config.attention_backend,
            &pooled,
        )?;
        #[cfg(test)]
        if let Some(faults) = self.faults.as_mut() {
            output.logits = faults.logits(&self.scheduler.ids_of(chunks), output.logits)?;
        }
        Ok(output)
    }

    /// Ends the requests of `chunks` with an error event (their blocks are freed at retire).
    fn fail_chunks(&mut self, chunks: &[ScheduledChunk], message: &str) {
        let indices: Vec<usize> = chunks.iter().map(|c| c.index).collect();
        for entry in self.scheduler.running_at_mut(&indices) {
            entry.data.fail_with(message);
        }
    }

    /// Removes finished requests, freeing their blocks.
    fn retire(&mut self) {
        let done = self.scheduler.retire(|e| e.data.finished.is_some());
        for entry in done {
            if let Some(spec) = &mut self.speculator
                && entry.data.finished != Some(FinishReason::Abort)
            {
                spec.finished(&entry.core.tokens[entry.core.prompt_len..]);
            }
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

    /// Parks the requests whose clients stopped reading (no room in their channels for a
    /// step's events) and ends with an error those parked longer than
    /// `--stream-stall-timeout`; their blocks return to the pool.
    fn check_backpressure(&mut self) {
        let now = Instant::now();
        let timeout = self.config.stream_stall_timeout;
        let message = |waited: Duration| {
            format!(
                "the client read nothing of its stream for {:.1} s; the request was aborted \
                 (--stream-stall-timeout {})",
                waited.as_secs_f64(),
                timeout.map_or(0, |t| t.as_secs())
            )
        };
        let stalled = |data: &mut RequestState| {
            let waited = data.update_backpressure(now)?;
            timeout.filter(|&t| waited >= t).map(|_| waited)
        };
        for entry in self.scheduler.running_mut() {
            if let Some(waited) = stalled(&mut entry.data) {
                entry.data.fail_with(&message(waited));
            }
        }
        self.retire();
        self.scheduler.drop_waiting(|e| e.data.finished.is_some());
        for entry in self.scheduler.waiting_mut() {
            if let Some(waited) = stalled(&mut entry.data) {
                entry.data.fail_with(&message(waited));
            }
        }
        self.scheduler.drop_waiting(|e| e.data.finished.is_some());
    }

    /// Whether a parked request's client has read since the last step (it can run again).
    pub fn any_parked_has_room(&self) -> bool {
        self.scheduler
            .entries()
            .any(|e| e.data.is_parked() && e.data.has_room())
    }

    /// How long the engine may wait, when nothing can run, before it must look again: the
    /// nearest stall deadline, at most `cap`.
    pub fn parked_wait(&self, cap: Duration) -> Duration {
        let Some(timeout) = self.config.stream_stall_timeout else {
            return cap;
        };
        let now = Instant::now();
        let nearest = self
            .scheduler
            .entries()
            .filter_map(|e| e.data.stalled_since)
            .map(|since| (since + timeout).saturating_duration_since(now))
            .min();
        nearest.map_or(cap, |d| d.min(cap))
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
        for entry in self.scheduler.running_at_mut(&plan.admitted) {
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
            entry.data.fail_with(message);
        }
        self.retire();
    }

    /// Fails every request, running and waiting (the engine is going away).
    pub fn fail_all(&mut self, message: &str) {
        self.fail_running(message);
        for entry in self.scheduler.drain_waiting() {
            let _ = entry.data.events.try_send(Event::Error(message.to_owned()));
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

/// The drafts the running sequences carry, each with its request's acceptance, for the gate.
fn offers_of(scheduler: &mut Scheduler<RequestState>) -> Vec<Offer<'_>> {
    scheduler
        .running_mut()
        .filter(|e| !e.core.draft.is_empty())
        .filter_map(|Entry { core, data }| {
            let state = data.speculation.as_mut()?;
            Some(Offer {
                draft: &mut core.draft,
                acceptance: &mut state.acceptance,
            })
        })
        .collect()
}

/// Feeds the EAGLE-3 head the pending positions of the running sequences at `indices`.
fn feed_head(
    drafter: &Eagle3Drafter,
    model: &Qwen3Model,
    scheduler: &mut Scheduler<RequestState>,
    indices: &[usize],
) -> Result<()> {
    let embed = |ids: &Tensor| model.embed(ids);
    let mut jobs: Vec<CatchUp<'_>> = scheduler
        .running_at_mut(indices)
        .filter_map(|Entry { core, data }| {
            Some(CatchUp {
                tokens: &core.tokens,
                block_table: &core.block_table,
                state: &mut data.speculation.as_mut()?.eagle,
            })
        })
        .collect();
    drafter.catch_up(&mut jobs, &embed)
}

/// The output rows of two halves of a step, in order.
fn join_outputs(pieces: &[StepOutput]) -> Result<StepOutput> {
    let logits: Vec<&Tensor> = pieces.iter().map(|p| &p.logits).collect();
    let hidden: Vec<&Tensor> = pieces.iter().map(|p| &p.hidden).collect();
    let aux: Option<Vec<&Tensor>> = pieces.iter().map(|p| p.aux.as_ref()).collect();
    Ok(StepOutput {
        logits: Tensor::cat(&logits, 0)?,
        hidden: Tensor::cat(&hidden, 0)?,
        aux: aux.map(|a| Tensor::cat(&a, 0)).transpose()?,
    })
}

/// Ends each pooling request of `rows` with its row of `hidden` (in order). The rows come to
/// the host in one copy, not one a request.
fn deliver_pooled(rows: Vec<&mut Running>, hidden: &Tensor) {
    if rows.is_empty() {
        return;
    }
    match hidden.to_vec2::<f32>() {
        Ok(values) => {
            for (Entry { core, data }, values) in rows.into_iter().zip(values) {
                data.pooled(core, values);
            }
        }
        Err(e) => {
            for Entry { data, .. } in rows {
                data.fail_with(&format!("engine error: pooling: {e}"));
            }
        }
    }
}

/// Ends each request of `rows` that asked for chosen logits with them (its row of `logits`);
/// returns the rows left to sample and their logits.
fn deliver_scores(
    rows: Vec<&mut Running>,
    logits: Tensor,
) -> std::result::Result<(Vec<&mut Running>, Tensor), String> {
    if !rows
        .iter()
        .any(|e| matches!(e.data.pooling, Some(Pooling::TokenLogits(_))))
    {
        return Ok((rows, logits));
    }
    let mut keep = Vec::with_capacity(rows.len());
    let mut sampled = Vec::with_capacity(rows.len());
    let firsts = first_logits_rows(&rows);
    for (entry, first) in rows.into_iter().zip(firsts) {
        // A sampled request's rows: its pending token's and its draft's.
        let own = 1 + entry.core.draft.len();
        let Some(Pooling::TokenLogits(ids)) = &entry.data.pooling else {
            keep.extend((first..first + own).map(|r| r as u32));
            sampled.push(entry);
            continue;
        };
        let chosen = Tensor::new(ids.as_slice(), logits.device())
            .and_then(|ids| logits.get(first)?.index_select(&ids, 0)?.to_vec1::<f32>());
        let Entry { core, data } = entry;
        match chosen {
            Ok(values) => data.pooled(core, values),
            Err(e) => data.fail_with(&format!("engine error: scoring: {e}")),
        }
    }
    match Tensor::new(keep.as_slice(), logits.device())
        .and_then(|keep| logits.index_select(&keep, 0))
    {
        Ok(kept) => Ok((sampled, kept)),
        // The rows left to sample get no token this step: they end with the error, as the
        // requests of a failed forward do.
        Err(e) => {
            for Entry { data, .. } in sampled {
                data.fail_with(&format!("engine error: {e}"));
            }
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
