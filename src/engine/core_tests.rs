//! Faults in a step stay with the requests they belong to: the tiny model runs real steps while
//! a test hook fails forward passes or poisons logits rows.

use super::*;
use crate::engine::block_manager::BlockManager;
use crate::engine::request::{Event, GenerationRequest};
use crate::engine::scheduler::{SchedulerConfig, SequenceCore};
use crate::error::Error;
use crate::model::AttentionBackend;
use crate::model::loader::{DtypeChoice, load_model};
use crate::sampling::SamplingParams;
use crate::tokenizer::Tokenizer;
use crate::weights::checkpoint::CheckpointFiles;
use candle_core::Device;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc::{Receiver, channel};

/// Test hooks around each forward pass.
pub(crate) trait StepFaults: Send {
    /// Called before a forward pass over the sequences `ids`; an error fails that pass.
    fn before_forward(&mut self, _ids: &[u64]) -> Result<()> {
        Ok(())
    }
    /// The logits of a pass over `ids` (one row per id in these tests), possibly altered.
    fn logits(&mut self, _ids: &[u64], logits: Tensor) -> Result<Tensor> {
        Ok(logits)
    }
}

const EOS: [u32; 2] = [151645, 151643];

fn engine() -> (EngineCore, Arc<Tokenizer>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models/qwen3-tiny");
    let files = CheckpointFiles::resolve(dir).unwrap();
    let tokenizer = Arc::new(Tokenizer::from_file(&files.tokenizer).unwrap());
    let model = load_model(files, &Device::Cpu, DtypeChoice::Auto)
        .unwrap()
        .model;
    let config = EngineConfig {
        max_model_len: 512,
        max_num_seqs: 16,
        max_num_batched_tokens: 1024,
        max_waiting: 64,
        block_size: 16,
        num_blocks: 128,
        enable_prefix_caching: true,
        attention_backend: AttentionBackend::Auto.resolve(model.device()).unwrap(),
        sampler: crate::sampling::Backend::Auto,
        stream_buffer_events: 1024,
        stream_stall_timeout: None,
        report_cached_tokens: true,
        kv_cache_dtype: None,
        kv_offload: Default::default(),
        kv_events: None,
        speculative: None,
    };
    let cache = KvCache::new(
        model.config(),
        config.num_blocks,
        config.block_size,
        model.dtype(),
        model.device(),
    )
    .unwrap();
    let scheduler = Scheduler::new(
        SchedulerConfig {
            max_num_seqs: config.max_num_seqs,
            max_num_batched_tokens: config.max_num_batched_tokens,
        },
        BlockManager::new(config.num_blocks, config.block_size, true),
    );
    let core = EngineCore::new(
        model,
        cache,
        scheduler,
        config,
        EOS.to_vec(),
        Arc::new(EngineMetrics::new()),
        Arc::new(AtomicUsize::new(0)),
    );
    (core, tokenizer)
}

/// Four requests, ids 1..=4: two greedy, two seeded.
fn requests(tokenizer: &Tokenizer) -> Vec<GenerationRequest> {
    (0..4u64)
        .map(|i| {
            let prompt = tokenizer
                .encode(&format!("Request {i}: tell me about the number {i}"), false)
                .unwrap();
            let sampling = if i % 2 == 0 {
                SamplingParams::greedy()
            } else {
                SamplingParams {
                    temperature: 0.8,
                    top_p: 0.9,
                    seed: Some(100 + i),
                    ..SamplingParams::default()
                }
            };
            let mut r = GenerationRequest::new(prompt, sampling);
            r.max_tokens = Some(8);
            r.ignore_eos = true;
            r
        })
        .collect()
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Tokens(Vec<u32>),
    Error(String),
}

impl Outcome {
    fn clone_tokens(&self) -> Vec<u32> {
        match self {
            Outcome::Tokens(t) => t.clone(),
            Outcome::Error(e) => panic!("{e}"),
        }
    }
}

/// What a run to the end left: per request id its tokens or its error, the core, and how many
/// steps reported [`StepOutcome::Failed`] (what the worker counts towards a fatal run).
struct Run {
    outcomes: HashMap<u64, Outcome>,
    core: EngineCore,
    failed_steps: usize,
}

/// Runs `requests` to the end.
fn run(
    faults: Option<Box<dyn StepFaults>>,
    requests: Vec<GenerationRequest>,
    tokenizer: Arc<Tokenizer>,
    mut core: EngineCore,
) -> Run {
    core.faults = faults;
    let mut receivers: Vec<(u64, Receiver<Event>)> = Vec::new();
    for (i, request) in requests.into_iter().enumerate() {
        let id = i as u64 + 1;
        let (tx, rx) = channel(1024);
        let max_tokens = request.max_tokens.unwrap_or(64);
        let data = RequestState::new(&request, tokenizer.clone(), None, max_tokens, tx);
        core.add(Entry {
            core: SequenceCore::new(id, request.prompt_ids),
            data,
        });
        receivers.push((id, rx));
    }
    let mut steps = 0;
    let mut failed_steps = 0;
    while !core.is_idle() {
        if let StepOutcome::Failed(_) = core.step() {
            failed_steps += 1;
        }
        steps += 1;
        assert!(steps < 1000, "the engine never finished");
    }
    let mut outcomes = HashMap::new();
    for (id, mut rx) in receivers {
        let mut tokens = Vec::new();
        let outcome = loop {
            match rx.try_recv().expect("a final event") {
                Event::Delta { token_ids, .. } => tokens.extend(token_ids),
                Event::Finished { .. } => break Outcome::Tokens(tokens),
                Event::Error(e) => break Outcome::Error(e),
                Event::Pooled(_) => panic!("a generation request got a pooled result"),
            }
        };
        outcomes.insert(id, outcome);
    }
    Run {
        outcomes,
        core,
        failed_steps,
    }
}

fn clean_run() -> HashMap<u64, Outcome> {
    let (core, tokenizer) = engine();
    let requests = requests(&tokenizer);
    let Run { outcomes, .. } = run(None, requests, tokenizer, core);
    assert!(
        outcomes
            .values()
            .all(|o| matches!(o, Outcome::Tokens(t) if t.len() == 8))
    );
    outcomes
}

/// Turns request `victim`'s logits row to NaN from its `after`-th forward pass on.
struct NanRow {
    victim: u64,
    after: usize,
    seen: usize,
}

impl StepFaults for NanRow {
    fn logits(&mut self, ids: &[u64], logits: Tensor) -> Result<Tensor> {
        let Some(row) = ids.iter().position(|&id| id == self.victim) else {
            return Ok(logits);
        };
        self.seen += 1;
        if self.seen <= self.after {
            return Ok(logits);
        }
        let mut rows = logits.to_vec2::<f32>()?;
        rows[row].iter_mut().for_each(|x| *x = f32::NAN);
        Ok(Tensor::new(rows, logits.device())?)
    }
}

#[test]
fn a_nan_row_fails_only_its_own_request() {
    let clean = clean_run();
    let (core, tokenizer) = engine();
    let requests = requests(&tokenizer);
    let faults = NanRow {
        victim: 3, // greedy: NaN logits have no maximum
        after: 2,
        seen: 0,
    };
    let Run {
        outcomes,
        core,
        failed_steps,
    } = run(Some(Box::new(faults)), requests, tokenizer, core);
    assert_eq!(failed_steps, 0, "a step with one failed row still ran");
    assert!(
        matches!(&outcomes[&3], Outcome::Error(e) if e.contains("sampling")),
        "{:?}",
        outcomes[&3]
    );
    for id in [1, 2, 4] {
        assert_eq!(outcomes[&id], clean[&id], "request {id}");
    }
    assert_eq!(core.scheduler.occupancy().blocks_used, 0);
}

/// Fails every forward pass over more than `max` sequences (a batch too big for memory).
struct TooBig {
    max: usize,
    failures: Arc<AtomicUsize>,
}

impl StepFaults for TooBig {
    fn before_forward(&mut self, ids: &[u64]) -> Result<()> {
        if ids.len() > self.max {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Internal("out of memory (injected)".into()));
        }
        Ok(())
    }
}

#[test]
fn a_step_that_fails_whole_succeeds_split_and_nobody_fails() {
    let clean = clean_run();
    let (core, tokenizer) = engine();
    let requests = requests(&tokenizer);
    let failures = Arc::new(AtomicUsize::new(0));
    let faults = TooBig {
        max: 2,
        failures: failures.clone(),
    };
    let Run {
        outcomes,
        core,
        failed_steps,
    } = run(Some(Box::new(faults)), requests, tokenizer, core);
    assert!(failures.load(Ordering::Relaxed) > 0, "the fault fired");
    assert_eq!(failed_steps, 0, "a step retried split is not a failed step");
    assert_eq!(outcomes, clean);
    assert_eq!(core.scheduler.occupancy().blocks_used, 0);
}

/// Fails every forward pass that includes request `culprit`.
struct Poisoned {
    culprit: u64,
}

impl StepFaults for Poisoned {
    fn before_forward(&mut self, ids: &[u64]) -> Result<()> {
        if ids.contains(&self.culprit) {
            return Err(Error::Internal("device fault (injected)".into()));
        }
        Ok(())
    }
}

#[test]
fn a_step_that_fails_split_fails_only_the_failing_half() {
    let clean = clean_run();
    let (core, tokenizer) = engine();
    let requests = requests(&tokenizer);
    let Run {
        outcomes,
        core,
        failed_steps,
    } = run(
        Some(Box::new(Poisoned { culprit: 4 })),
        requests,
        tokenizer,
        core,
    );
    // Halves of the four: {1, 2} run, {3, 4} fail together.
    for id in [1, 2] {
        assert_eq!(outcomes[&id], clean[&id], "request {id}");
    }
    for id in [3, 4] {
        assert!(
            matches!(&outcomes[&id], Outcome::Error(e) if e.contains("device fault")),
            "{:?}",
            outcomes[&id]
        );
    }
    assert_eq!(failed_steps, 0, "half of the step ran");
    assert_eq!(core.scheduler.occupancy().blocks_used, 0);
}

/// Fails every forward pass: a device that is gone.
struct DeviceGone;

impl StepFaults for DeviceGone {
    fn before_forward(&mut self, _ids: &[u64]) -> Result<()> {
        Err(Error::Internal("device lost (injected)".into()))
    }
}

/// A step in which nothing could run, whole or split, is a failed step (the worker counts
/// these towards its fatal run), and every request in it gets the error.
#[test]
fn a_step_that_fails_whole_and_split_is_a_failed_step() {
    let (core, tokenizer) = engine();
    let requests = requests(&tokenizer);
    let Run {
        outcomes,
        core,
        failed_steps,
    } = run(Some(Box::new(DeviceGone)), requests, tokenizer, core);
    assert_eq!(failed_steps, 1);
    for (id, outcome) in &outcomes {
        assert!(
            matches!(outcome, Outcome::Error(e) if e.contains("device lost")),
            "request {id}: {outcome:?}"
        );
    }
    assert_eq!(core.scheduler.occupancy().blocks_used, 0);
}

/// Turns every logits row to NaN: each row fails sampling on its own too.
struct AllNan;

impl StepFaults for AllNan {
    fn logits(&mut self, _ids: &[u64], logits: Tensor) -> Result<Tensor> {
        logits.affine(0.0, f64::NAN).map_err(Into::into)
    }
}

#[test]
fn a_step_whose_every_row_fails_sampling_is_a_failed_step() {
    let (core, tokenizer) = engine();
    let mut requests = requests(&tokenizer);
    for r in &mut requests {
        r.sampling = SamplingParams::greedy(); // NaN logits have no maximum
    }
    let Run {
        outcomes,
        core,
        failed_steps,
    } = run(Some(Box::new(AllNan)), requests, tokenizer, core);
    assert_eq!(failed_steps, 1);
    assert!(
        outcomes
            .values()
            .all(|o| matches!(o, Outcome::Error(e) if e.contains("sampling")))
    );
    assert_eq!(core.scheduler.occupancy().blocks_used, 0);
}

/// A client that goes away is noticed at the next step: a running request's blocks are free
/// after one step, and a queued request leaves the queue (and the backpressure count).
#[test]
fn a_departed_client_is_freed_within_one_step() {
    let (mut core, tokenizer) = engine();
    core.scheduler = Scheduler::new(
        SchedulerConfig {
            max_num_seqs: 1,
            max_num_batched_tokens: 1024,
        },
        BlockManager::new(128, 16, true),
    );
    let queued = core.queued.clone();
    let mut receivers = Vec::new();
    for (i, mut request) in requests(&tokenizer).into_iter().take(2).enumerate() {
        request.max_tokens = Some(400);
        let (tx, rx) = channel(1024);
        let data = RequestState::new(&request, tokenizer.clone(), None, 400, tx);
        core.add(Entry {
            core: SequenceCore::new(i as u64 + 1, request.prompt_ids),
            data,
        });
        queued.fetch_add(1, Ordering::Relaxed);
        receivers.push(rx);
    }
    for _ in 0..3 {
        core.step();
    }
    let o = core.scheduler.occupancy();
    assert_eq!((o.running, o.waiting), (1, 1));
    assert!(o.blocks_used > 0);
    assert_eq!(queued.load(Ordering::Relaxed), 1, "one request still waits");
    // The queued client leaves: gone from the queue after one step.
    drop(receivers.pop());
    core.step();
    let o = core.scheduler.occupancy();
    assert_eq!((o.running, o.waiting), (1, 0));
    assert_eq!(queued.load(Ordering::Relaxed), 0);
    // The running client leaves: its blocks are free after one step.
    drop(receivers.pop());
    core.step();
    let o = core.scheduler.occupancy();
    assert_eq!((o.running, o.blocks_used), (0, 0));
}

/// Adds request `id` with a stream of `capacity` events; returns its receiver.
fn add_with_buffer(
    core: &mut EngineCore,
    tokenizer: &Arc<Tokenizer>,
    request: GenerationRequest,
    id: u64,
    capacity: usize,
) -> Receiver<Event> {
    let (tx, rx) = channel(capacity);
    let max_tokens = request.max_tokens.unwrap_or(64);
    let data = RequestState::new(&request, tokenizer.clone(), None, max_tokens, tx);
    core.add(Entry {
        core: SequenceCore::new(id, request.prompt_ids),
        data,
    });
    rx
}

/// Every event waiting in `rx`.
fn drain(rx: &mut Receiver<Event>) -> Vec<Event> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn deltas(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Delta { .. }))
        .count()
}

#[test]
fn a_client_that_stops_reading_is_parked_then_aborted_and_its_blocks_freed() {
    let (mut core, tokenizer) = engine();
    let mut reqs = requests(&tokenizer).into_iter();
    let mut stalled = reqs.next().unwrap();
    stalled.max_tokens = Some(100);
    let mut other = reqs.next().unwrap();
    other.max_tokens = Some(20);
    let mut stalled_rx = add_with_buffer(&mut core, &tokenizer, stalled, 1, 4);
    let mut other_rx = add_with_buffer(&mut core, &tokenizer, other, 2, 1024);
    for _ in 0..25 {
        core.step();
    }
    // The reader got all 20 tokens; the other request stopped at what its buffer holds and
    // keeps its blocks while parked.
    let other_events = drain(&mut other_rx);
    assert_eq!(deltas(&other_events), 20);
    assert!(matches!(other_events.last(), Some(Event::Finished { .. })));
    let o = core.scheduler.occupancy();
    assert_eq!(o.running, 1);
    assert!(o.blocks_used > 0);
    // Room for a step's events while two slots are free: three tokens, then parked with one
    // slot kept for the final event.
    assert_eq!(stalled_rx.len(), 3);
    // Parked with nothing else to run: the step is idle, not a hot loop of empty passes.
    assert!(matches!(core.step(), StepOutcome::Idle));
    // The timeout counts from when it parked.
    core.config.stream_stall_timeout = Some(Duration::from_millis(300));
    std::thread::sleep(Duration::from_millis(350));
    core.step();
    let events = drain(&mut stalled_rx);
    assert_eq!(deltas(&events), 3);
    match events.last() {
        Some(Event::Error(message)) => {
            assert!(message.contains("--stream-stall-timeout"), "{message}")
        }
        other => panic!("expected an error event, got {other:?}"),
    }
    let o = core.scheduler.occupancy();
    assert_eq!((o.running, o.waiting), (0, 0));
    assert_eq!(o.blocks_used, 0);
}

#[test]
fn a_parked_request_resumes_where_it_stopped_when_its_client_reads() {
    let (mut core, tokenizer) = engine();
    let mut request = requests(&tokenizer).remove(0);
    request.max_tokens = Some(12);
    let expected = {
        let (core, tokenizer) = engine();
        let Run { outcomes, .. } = run(None, vec![request.clone()], tokenizer, core);
        outcomes[&1].clone_tokens()
    };
    let mut rx = add_with_buffer(&mut core, &tokenizer, request, 1, 4);
    let mut tokens = Vec::new();
    let mut finished = false;
    for _ in 0..100 {
        core.step();
        // Read only every third step: the request parks in between.
        core.step();
        core.step();
        for event in drain(&mut rx) {
            match event {
                Event::Delta { token_ids, .. } => tokens.extend(token_ids),
                Event::Finished { .. } => finished = true,
                Event::Error(e) => panic!("{e}"),
                Event::Pooled(_) => panic!("a generation request got a pooled result"),
            }
        }
        if finished {
            break;
        }
    }
    assert!(finished);
    assert_eq!(tokens, expected);
}

#[test]
fn parked_requests_give_way_to_waiting_ones() {
    let (mut core, tokenizer) = engine();
    core.scheduler = Scheduler::new(
        SchedulerConfig {
            max_num_seqs: 1,
            max_num_batched_tokens: 1024,
        },
        BlockManager::new(128, 16, true),
    );
    let mut reqs = requests(&tokenizer).into_iter();
    let mut parked = reqs.next().unwrap();
    parked.max_tokens = Some(10);
    let mut waiting = reqs.next().unwrap();
    waiting.max_tokens = Some(5);
    let mut parked_rx = add_with_buffer(&mut core, &tokenizer, parked, 1, 4);
    let mut waiting_rx = add_with_buffer(&mut core, &tokenizer, waiting, 2, 1024);
    for _ in 0..10 {
        core.step();
    }
    // The only slot was held by a request whose client does not read: it was preempted.
    let events = drain(&mut waiting_rx);
    assert_eq!(deltas(&events), 5);
    assert!(matches!(events.last(), Some(Event::Finished { .. })));
    // Its client reads again: it is re-admitted and finishes.
    let mut seen = drain(&mut parked_rx);
    for _ in 0..40 {
        core.step();
        seen.extend(drain(&mut parked_rx));
    }
    assert_eq!(deltas(&seen), 10);
    assert!(matches!(seen.last(), Some(Event::Finished { .. })));
    assert!(core.is_idle());
}
