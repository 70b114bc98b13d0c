//! The engine's thread and the handle the rest of the program talks to it through.
//!
//! `submit` hands a request to the engine thread and returns its event stream; dropping the
//! stream cancels the request (the engine notices the closed channel at its next step and frees
//! the blocks). The waiting queue is bounded: beyond `max_waiting` submit fails fast with
//! `Error::Overloaded`. `shutdown` refuses new work and lets running requests finish, up to a
//! deadline.

use super::block_manager::BlockManager;
use super::checked::CheckedRequest;
use super::command::Command;
use super::config::EngineConfig;
use super::core::EngineCore;
use super::info::EngineInfo;
use super::kv_events::KvEventSink;
use super::kv_offload::offloader::Offloader;
use super::kv_offload::{KvTiers, layout_of};
use super::metrics::EngineMetrics;
use super::pool_events::PoolJournal;
use super::request::{Event, GenerationRequest};
use super::request_state::RequestState;
use super::scheduler::{Entry, Scheduler, SchedulerConfig, SequenceCore};
use super::speculative::Speculator;
use super::speculative::config::{Method, SpeculativeConfig};
use super::speculative::draft_model::DraftModel;
use super::speculative::eagle3::Eagle3Drafter;
use super::wake::ReadWake;
use super::worker::{self, Liveness};
use crate::error::{Error, RequestPart, Result};
use crate::guided::{GuidedFactory, GuidedMatcher};
use crate::model::eagle3::{Eagle3Config, Eagle3Head};
use crate::model::loader::{DtypeChoice, load_source};
use crate::model::{KvCache, Qwen3Model};
use crate::tokenizer::Tokenizer;
use crate::weights::store::WeightStore;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{Receiver, channel};

pub struct EngineHandle {
    commands: Mutex<mpsc::Sender<Command>>,
    metrics: Arc<EngineMetrics>,
    queued: Arc<AtomicUsize>,
    draining: AtomicBool,
    next_id: AtomicU64,
    max_waiting: usize,
    info: EngineInfo,
    tokenizer: Arc<Tokenizer>,
    /// Compiles output constraints; the reason it could not be built otherwise (then only
    /// constrained requests are refused).
    guided: std::result::Result<Arc<GuidedFactory>, String>,
    liveness: Arc<Liveness>,
    wake: Arc<ReadWake>,
    stream_buffer_events: usize,
    report_cached_tokens: bool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A request's events: deltas, then exactly one `Finished` or `Error`.
pub struct EventStream {
    /// Bounded (`--stream-buffer-events`): the engine stops running the request while it is
    /// full.
    rx: Receiver<Event>,
    wake: Arc<ReadWake>,
}

impl EventStream {
    /// The next event; `None` only if the engine thread is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.rx.recv().await;
        self.wake.notify();
        event
    }

    /// Blocking variant for callers outside an async runtime.
    pub fn blocking_recv(&mut self) -> Option<Event> {
        let event = self.rx.blocking_recv();
        self.wake.notify();
        event
    }
}

impl EngineHandle {
    /// Starts the engine thread; it owns the model and the KV cache from here on.
    pub fn start(
        mut model: Qwen3Model,
        tokenizer: Arc<Tokenizer>,
        eos_ids: Vec<u32>,
        config: EngineConfig,
    ) -> Result<Self> {
        config
            .validate(model.config().max_position_embeddings)
            .map_err(Error::config)?;
        let backend = config.attention_backend.resolve(model.device())?;
        let config = EngineConfig {
            attention_backend: backend,
            ..config
        };
        let kv_dtype = kv_cache_dtype(&config, &model)?;
        let mut cache = KvCache::new(
            model.config(),
            config.num_blocks,
            config.block_size,
            kv_dtype,
            model.device(),
        )?;
        // Only an fp8 cache is scaled (as in vLLM); a checkpoint's scales are its calibration.
        if let (candle_core::DType::F8E4M3, Some(scales)) = (kv_dtype, model.kv_scales()) {
            cache.set_scales(scales)?;
            tracing::info!("fp8 KV cache: the checkpoint's k_scale/v_scale for each layer");
        }
        tracing::info!(
            blocks = config.num_blocks,
            tokens = config.pool_tokens(),
            dtype = ?kv_dtype,
            "KV cache: {} blocks = {} tokens",
            config.num_blocks,
            config.pool_tokens()
        );
        let info = EngineInfo {
            max_model_len: config.max_model_len,
            vocab_size: model.config().vocab_size,
            hidden_size: model.config().hidden_size,
            num_blocks: config.num_blocks,
            block_size: config.block_size,
            eos_ids: eos_ids.clone(),
            device: crate::device::describe(model.device()),
            attention_backend: format!("{:?}", config.attention_backend).to_lowercase(),
        };
        // Built once here (a trie over the whole vocabulary) and shared by every request.
        let built = Instant::now();
        let guided = GuidedFactory::new(&tokenizer, info.vocab_size, &eos_ids)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        match &guided {
            Ok(_) => tracing::info!(
                ms = built.elapsed().as_millis() as u64,
                "guided decoding ready"
            ),
            Err(e) => tracing::warn!(error = %e, "guided decoding unavailable"),
        }
        let metrics = Arc::new(EngineMetrics::new());
        let queued = Arc::new(AtomicUsize::new(0));
        let tiers = open_tiers(&config, &cache)?;
        let events = start_events(&config, model.device())?;
        let mut pool = BlockManager::new(
            config.num_blocks,
            config.block_size,
            config.enable_prefix_caching,
        );
        if tiers.is_some() || events.is_some() {
            let namespace = tiers.as_ref().map(|t| *t.namespace()).unwrap_or_default();
            let journal = PoolJournal::new(events.is_some(), true);
            pool = pool.with_digests(namespace, journal);
        }
        let scheduler = Scheduler::new(
            SchedulerConfig {
                max_num_seqs: config.max_num_seqs,
                max_num_batched_tokens: config.max_num_batched_tokens,
            },
            pool,
        );
        let max_waiting = config.max_waiting;
        let stream_buffer_events = config.stream_buffer_events;
        let report_cached_tokens = config.report_cached_tokens;
        let speculator = match config.speculative.clone() {
            Some(spec) => Some(speculator_for(spec, &mut model, &config, kv_dtype)?),
            None => None,
        };
        let core = EngineCore::new(
            model,
            cache,
            scheduler,
            config,
            eos_ids,
            metrics.clone(),
            queued.clone(),
        );
        let core = match tiers {
            Some(tiers) => core.with_offload(Offloader::new(tiers, metrics.clone())),
            None => core,
        };
        let core = match events {
            Some(events) => core.with_events(events),
            None => core,
        };
        let core = match speculator {
            Some(speculator) => core.with_speculation(speculator),
            None => core,
        };
        let liveness = Arc::new(Liveness::default());
        let wake = core.wake().clone();
        let (tx, thread) = worker::spawn(core, liveness.clone())?;
        wake.connect(tx.clone());
        Ok(Self {
            commands: Mutex::new(tx),
            metrics,
            queued,
            draining: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            max_waiting,
            info,
            tokenizer,
            guided,
            liveness,
            wake,
            stream_buffer_events,
            report_cached_tokens,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// Brings the gauges that can be read outside the engine thread up to this instant (the
    /// waiting count includes requests submitted since the engine's last step).
    pub fn refresh_metrics(&self) {
        self.metrics
            .set_waiting(self.queued.load(Ordering::Relaxed));
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// The constraint compiler, for callers that want to check a schema or grammar without
    /// submitting (`None` if the tokenizer cannot be mapped to bytes).
    pub fn guided_factory(&self) -> Option<&Arc<GuidedFactory>> {
        self.guided.as_ref().ok()
    }

    /// Compiles a request's output constraint; failures are the client's (bad schema or
    /// grammar) unless this server cannot constrain output at all.
    fn compile_guided(&self, request: &GenerationRequest) -> Result<Option<GuidedMatcher>> {
        let Some(spec) = &request.guided else {
            return Ok(None);
        };
        match &self.guided {
            Ok(factory) => factory.compile(spec).map(Some),
            Err(why) => Err(Error::invalid(
                RequestPart::OutputConstraint,
                format!("structured outputs are not available with this tokenizer: {why}"),
            )),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether the engine thread is alive (see [`Liveness`]).
    pub fn is_alive(&self) -> bool {
        self.liveness.is_alive()
    }

    /// The engine thread's liveness, to wait for its death.
    pub fn liveness(&self) -> &Arc<Liveness> {
        &self.liveness
    }

    /// Test-only: makes the engine thread panic at its next step.
    #[doc(hidden)]
    pub fn inject_fault(&self) {
        if let Ok(tx) = self.commands.lock() {
            let _ = tx.send(Command::InjectPanic);
        }
    }

    /// Checks a request ([`CheckedRequest::new`]), compiles its constraint and queues it: the
    /// whole path, for callers that build requests themselves (the CLI, benchmarks, tests).
    pub fn submit(&self, request: GenerationRequest) -> Result<EventStream> {
        self.check_open()?;
        let guided = self.compile_guided(&request)?;
        let checked = CheckedRequest::new(request, &self.info)?;
        self.enqueue(checked.into_request(), guided)
    }

    /// Queues a checked request with its constraint already compiled (`guided` replaces
    /// `request.guided`): the API layer checks and compiles once per request, off the engine
    /// thread, and this only takes a slot in the queue. Fails fast when the server is draining
    /// or overloaded.
    pub fn submit_checked(
        &self,
        request: CheckedRequest,
        guided: Option<GuidedMatcher>,
    ) -> Result<EventStream> {
        self.check_open()?;
        self.enqueue(request.into_request(), guided)
    }

    fn check_open(&self) -> Result<()> {
        if self.is_draining() {
            return Err(Error::Unavailable("the server is shutting down".into()));
        }
        if let Some(why) = self.liveness.cause() {
            return Err(Error::Unavailable(format!("the engine has stopped: {why}")));
        }
        Ok(())
    }

    fn enqueue(
        &self,
        request: GenerationRequest,
        guided: Option<GuidedMatcher>,
    ) -> Result<EventStream> {
        let prompt_len = request.prompt_ids.len();
        let limit = self.info.max_model_len;
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::Overloaded(format!(
                "the server is overloaded: {} requests are already waiting",
                self.max_waiting
            )));
        }
        let (tx, rx) = channel(self.stream_buffer_events);
        let room = limit - prompt_len;
        let max_tokens = request.max_tokens.unwrap_or(room).min(room);
        let mut state = RequestState::new(&request, self.tokenizer.clone(), guided, max_tokens, tx);
        state.report_cached_tokens = self.report_cached_tokens;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut core = SequenceCore::new(id, request.prompt_ids);
        core.cache_salt = request.cache_salt.map(Arc::from);
        let entry = Entry { core, data: state };
        let sent = self
            .commands
            .lock()
            .map_err(|_| Error::Internal("engine handle poisoned".into()))?
            .send(Command::Submit(Box::new(entry)));
        if sent.is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::Unavailable("the engine has stopped".into()));
        }
        Ok(EventStream {
            rx,
            wake: self.wake.clone(),
        })
    }

    /// Refuses new requests, lets running and waiting ones finish until `timeout`, aborts the
    /// rest, and joins the engine thread.
    pub fn shutdown(&self, timeout: Duration) {
        self.draining.store(true, Ordering::Relaxed);
        if let Ok(tx) = self.commands.lock() {
            let _ = tx.send(Command::Drain {
                deadline: Instant::now() + timeout,
            });
        }
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

/// The offload tiers `config` asks for, over `cache`'s layout.
/// The speculation `spec` configures; a draft model is loaded beside `model` (its device and
/// dtype), its cache of the pool's blocks in the pool's KV dtype.
fn speculator_for(
    spec: SpeculativeConfig,
    model: &mut Qwen3Model,
    config: &EngineConfig,
    kv_dtype: candle_core::DType,
) -> Result<Speculator> {
    let path = match &spec.method {
        Method::DraftModel { model: path } => path,
        Method::Eagle3 { model: path } => {
            let drafter = eagle3_drafter(path, model, config, kv_dtype)?;
            return Ok(Speculator::new(spec).with_eagle3(drafter));
        }
        Method::Ngram { .. } | Method::Suffix(_) => return Ok(Speculator::new(spec)),
    };
    let source = crate::weights::ModelSource::resolve(path)?;
    let dtype = match model.dtype() {
        candle_core::DType::F16 => DtypeChoice::F16,
        candle_core::DType::BF16 => DtypeChoice::Bf16,
        _ => DtypeChoice::F32,
    };
    let draft = load_source(&source, model.device(), dtype, None)?;
    tracing::info!(
        model = %path,
        layers = draft.config().num_hidden_layers,
        hidden = draft.config().hidden_size,
        "draft model loaded"
    );
    let draft = DraftModel::new(
        draft,
        model.config().vocab_size,
        config.num_blocks,
        config.block_size,
        kv_dtype,
        config.attention_backend,
    )?;
    Ok(Speculator::new(spec).with_model(draft))
}

/// The EAGLE-3 head at `path` (directory or hub id) for `model`, which from now on returns the
/// hidden states the head reads; its cache is one layer of the pool's blocks.
fn eagle3_drafter(
    path: &str,
    model: &mut Qwen3Model,
    config: &EngineConfig,
    kv_dtype: candle_core::DType,
) -> Result<Eagle3Drafter> {
    let fail = |why: String| Error::config(format!("--speculative-config: {why}"));
    let (config_file, weights) = crate::weights::checkpoint::resolve_head(path)?;
    let cfg = Eagle3Config::from_file(&config_file)?;
    let target = model.config();
    if cfg.vocab_size != target.vocab_size {
        return Err(fail(format!(
            "the EAGLE-3 head's vocabulary has {} tokens, the served model's {}: a head is \
             trained for one model",
            cfg.vocab_size, target.vocab_size
        )));
    }
    if cfg.target_hidden_size != target.hidden_size {
        return Err(fail(format!(
            "the EAGLE-3 head reads hidden states of {} values, the served model's have {}",
            cfg.target_hidden_size, target.hidden_size
        )));
    }
    let layers = cfg.aux_layer_ids(target.num_hidden_layers).map_err(fail)?;
    let store = WeightStore::open(
        &weights,
        model.device(),
        model.dtype(),
        Eagle3Head::tensor_count(),
    )?;
    let head = Eagle3Head::load(&store, &cfg)?;
    store.finish_progress();
    if !head.has_own_embedding() && cfg.hidden_size != target.hidden_size {
        return Err(fail(format!(
            "the EAGLE-3 head has no embedding and its width {} is not the served model's {}",
            cfg.hidden_size, target.hidden_size
        )));
    }
    let cache = head.new_cache(config.num_blocks, config.block_size, kv_dtype)?;
    tracing::info!(
        model = %path,
        layers = ?layers,
        draft_vocab = cfg.draft_vocab_size,
        "EAGLE-3 head loaded"
    );
    model.capture_hidden_states(layers);
    Ok(Eagle3Drafter::new(head, cache, config.attention_backend))
}

fn open_tiers(config: &EngineConfig, cache: &KvCache) -> Result<Option<KvTiers>> {
    let offload = &config.kv_offload;
    if !offload.enabled() {
        return Ok(None);
    }
    if !config.enable_prefix_caching {
        return Err(Error::config(
            "the KV offload tiers keep prefix-cache blocks: they need prefix caching",
        ));
    }
    let tiers = KvTiers::open(offload, layout_of(cache))?;
    tracing::info!(
        host_bytes = offload.host_bytes,
        dir = ?offload.dir,
        dir_bytes = offload.dir_bytes,
        "KV offload tiers on"
    );
    Ok(Some(tiers))
}

/// The KV event stream `config` asks for.
fn start_events(
    config: &EngineConfig,
    device: &candle_core::Device,
) -> Result<Option<KvEventSink>> {
    let Some(events) = &config.kv_events else {
        return Ok(None);
    };
    if !config.enable_prefix_caching {
        return Err(Error::config(
            "--kv-events-config reports prefix-cache blocks: it needs prefix caching",
        ));
    }
    // vLLM's name for where the blocks live.
    let medium = if device.is_cpu() { "CPU" } else { "GPU" };
    Ok(Some(KvEventSink::start(events, config.block_size, medium)?))
}

/// Whether `backend` reads a cache of `kv` beside a model computing in `model_dtype` (a cache
/// of the model's own dtype is read by every backend).
fn backend_reads_cache(
    backend: crate::model::AttentionBackend,
    model_dtype: candle_core::DType,
    on_cpu: bool,
    kv: candle_core::DType,
) -> bool {
    use crate::model::AttentionBackend;
    use candle_core::DType;
    let narrow = matches!(kv, DType::F16 | DType::BF16 | DType::F8E4M3);
    match backend {
        AttentionBackend::Cpu => narrow && model_dtype == DType::F32 && on_cpu,
        AttentionBackend::Generic => narrow,
        AttentionBackend::Cuda => crate::kernels::kernel_name(model_dtype, kv).is_some(),
        AttentionBackend::Auto => false,
    }
}

/// The KV cache's dtype: the model's, or `--kv-cache-dtype`'s where the backend reads it. The
/// `cpu` backend stores f16/bf16 or fp8 (e4m3) beside f32 activations and widens in registers;
/// the `generic` backend (candle ops, CUDA's default) beside any float model on any device: it
/// rounds as it writes and widens what it gathers. The own CUDA kernels (`cuda`) read every pair
/// they are built for (`kernels::kernel_name`: a 16-bit or fp8 cache beside any float model).
fn kv_cache_dtype(config: &EngineConfig, model: &Qwen3Model) -> Result<candle_core::DType> {
    use candle_core::DType;
    let model_dtype = model.dtype();
    let Some(kv) = config.kv_cache_dtype.filter(|&kv| kv != model_dtype) else {
        return Ok(model_dtype);
    };
    let reads_it = backend_reads_cache(
        config.attention_backend,
        model_dtype,
        model.device().is_cpu(),
        kv,
    );
    if !reads_it {
        let name = match kv {
            DType::F8E4M3 => "fp8 (e4m3)".to_owned(),
            other => format!("{other:?}"),
        };
        return Err(Error::config(format!(
            "--kv-cache-dtype {name} beside a {model_dtype:?} model on {} with the {:?} attention \
             backend: a 16-bit or fp8 cache is read by the `generic` and `cuda` backends (any \
             float model) and the `cpu` backend (f32 activations)",
            crate::device::describe(model.device()),
            config.attention_backend
        )));
    }
    Ok(kv)
}

#[cfg(test)]
mod tests {
    use super::backend_reads_cache;
    use crate::model::AttentionBackend::{Cpu, Cuda, Generic};
    use candle_core::DType::{BF16, F8E4M3, F16, F32};

    #[test]
    fn which_backend_reads_which_cache() {
        // The CPU kernels widen 16-bit and fp8 rows beside f32 activations only.
        assert!(backend_reads_cache(Cpu, F32, true, F16));
        assert!(backend_reads_cache(Cpu, F32, true, F8E4M3));
        assert!(!backend_reads_cache(Cpu, BF16, true, F8E4M3));
        // candle's ops and the own CUDA kernels: any narrower cache beside any float model.
        for model in [F32, F16, BF16] {
            assert!(backend_reads_cache(Generic, model, false, F8E4M3));
            assert!(backend_reads_cache(Cuda, model, false, F8E4M3));
        }
        assert!(backend_reads_cache(Cuda, BF16, false, F16));
        assert!(backend_reads_cache(Cuda, F16, false, BF16));
        // Never a wider cache than the kernels are built for.
        assert!(!backend_reads_cache(Cuda, BF16, false, F32));
    }
}
