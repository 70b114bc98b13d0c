//! What every handler shares: the server's configuration, and the loaded model once it is ready.
//!
//! The listener starts before the model loads (so `/health` can answer 503 while it does);
//! `ready` is filled once loading is done, and `draining` is set on shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use super::body_budget::BodyBudget;
use super::error::{ApiError, ApiResult};
use super::http_metrics::HttpMetrics;
use super::metrics_vllm::MetricsCompat;
use super::response_store::{ResponseStore, StoreLimits};
use super::task::ServedTask;
use super::transport::{Registry, TransportLimits};
use crate::engine::EngineHandle;
use crate::guided::SchemaLimits;
use crate::parsers::ToolCallFormat;
use crate::sampling::{GenerationDefaults, MAX_LOGPROBS};
use crate::tokenizer::{ChatTemplate, Tokenizer};

/// Caps on request sizes, beyond the sampling ranges (documented in `api/mod.rs`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_n: usize,
    pub max_stop: usize,
    pub max_stop_token_ids: usize,
    pub max_logit_bias: usize,
    pub max_top_logprobs: usize,
    pub max_tools: usize,
    pub max_prompts: usize,
    /// Engine requests one API request may become (prompts × `n`).
    pub max_choices: usize,
    /// Inputs of one /v1/embeddings request, documents of one /v1/rerank, pairs of one
    /// /v1/score.
    pub max_pooling_inputs: usize,
    /// Logprob entries a non-streamed response may hold (choices × (1 + top) × tokens).
    pub max_logprob_entries: usize,
    /// Silence after which an SSE stream sends a comment line: keeps proxies from timing out
    /// and finds clients that went away while their request waits in the queue.
    pub sse_keep_alive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_n: 16,
            max_stop: 16,
            max_stop_token_ids: 64,
            max_logit_bias: 1024,
            max_top_logprobs: MAX_LOGPROBS,
            max_tools: 128,
            max_prompts: 64,
            max_choices: 128,
            max_pooling_inputs: 2048,
            max_logprob_entries: 1 << 20,
            sse_keep_alive: Duration::from_secs(5),
        }
    }
}

/// The HTTP layer's settings (built from the command line by [`crate::server`]).
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    pub api_key: Option<String>,
    /// `None`: no CORS headers. `Some(["*"])`: any origin.
    pub allowed_origins: Option<Vec<String>>,
    pub log_requests: bool,
    /// The qwen3 reasoning parser (on unless `--reasoning-parser none`).
    pub reasoning_parser: bool,
    /// Tool-call parsing (on unless `--tool-call-parser none`).
    pub tool_parser: bool,
    /// The tool-call format `--tool-call-parser` names; `None`: the chat template's
    /// ([`Ready::tool_call_format`]).
    pub tool_call_format: Option<ToolCallFormat>,
    /// `tool_choice: "auto"` allowed (unless `--disable-auto-tool-choice`).
    pub auto_tool_choice: bool,
    /// `--seed`: used by requests that set none.
    pub default_seed: Option<u64>,
    pub shutdown_timeout: Duration,
    /// `--metrics-compat`: extra metric names on `/metrics`.
    pub metrics_compat: MetricsCompat,
    pub limits: Limits,
    /// Structured outputs: schema bounds and the compile budget.
    pub grammar: GrammarLimits,
    /// `--strict-model-name`: the agent APIs (`/v1/responses`, `/v1/messages`) answer 404 for
    /// a model name that is not served, as chat completions do. Off by default: agents ask
    /// for other names (Claude Code's background tasks use `claude-haiku-*`), and the one
    /// model answers them all.
    pub strict_model_name: bool,
    pub response_store: StoreLimits,
    /// `--prefix-cache-salt-per-key`: the presented API key salts the prefix cache.
    pub prefix_cache_salt_per_key: bool,
    /// `--allow-special-tokens-in-content`: special-token text in messages becomes control
    /// tokens (else it is tokenized as plain text).
    pub allow_special_tokens_in_content: bool,
    /// Timeouts, the connection cap and the request-body budget ([`super::transport`]).
    pub transport: TransportLimits,
}

/// `--max-schema-properties`, `--max-schema-nodes`, `--max-schema-depth` and
/// `--grammar-compile-timeout`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrammarLimits {
    pub schema: SchemaLimits,
    /// How long a request waits for its grammar to compile before it is refused.
    pub compile_timeout: Duration,
}

impl Default for GrammarLimits {
    fn default() -> Self {
        Self {
            schema: SchemaLimits::default(),
            compile_timeout: Duration::from_secs(10),
        }
    }
}

/// The loaded model and everything derived from it.
pub struct Ready {
    pub engine: Arc<EngineHandle>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub defaults: GenerationDefaults,
    pub served_model_names: Vec<String>,
    pub model_path: String,
    /// Unix time the model became ready (`created` of `/v1/models`).
    pub created: i64,
    /// Generation or embeddings (see [`super::task`]).
    pub task: ServedTask,
    /// The tool-call format the chat template teaches.
    pub template_tool_format: ToolCallFormat,
}

impl Ready {
    pub fn new(
        engine: Arc<EngineHandle>,
        tokenizer: Arc<Tokenizer>,
        template: ChatTemplate,
        defaults: GenerationDefaults,
        served_model_names: Vec<String>,
        model_path: String,
    ) -> Self {
        Self {
            engine,
            tokenizer,
            template_tool_format: template.tool_call_format(),
            template,
            defaults,
            served_model_names,
            model_path,
            created: unix_now(),
            task: ServedTask::Generate,
        }
    }

    /// This model served for `task`.
    pub fn with_task(self, task: ServedTask) -> Self {
        Self { task, ..self }
    }

    /// The format tool calls are read and forced in: `--tool-call-parser`'s, else the one the
    /// chat template teaches (Qwen3-Coder's template writes `<function=…>` markup, every other
    /// Qwen3 template hermes JSON), so a Coder checkpoint works without the flag.
    pub fn tool_call_format(&self, config: &ServerConfig) -> ToolCallFormat {
        config.tool_call_format.unwrap_or(self.template_tool_format)
    }

    pub fn max_model_len(&self) -> usize {
        self.engine.info().max_model_len
    }

    pub fn vocab_size(&self) -> usize {
        self.engine.info().vocab_size
    }

    /// The name responses report: the first served name.
    pub fn model_name(&self) -> &str {
        self.served_model_names
            .first()
            .map_or(self.model_path.as_str(), String::as_str)
    }

    /// The name an agent-API response reports: the one the client asked for (any name is
    /// served by the one model), or with `strict` the checked served name.
    pub fn serve_model(&self, requested: Option<&str>, strict: bool) -> ApiResult<String> {
        match requested {
            Some(name) if !strict && !name.is_empty() => Ok(name.to_owned()),
            _ => self.check_model(requested),
        }
    }

    /// Checks a request's `model` (absent = the served model), vLLM's 404 otherwise.
    pub fn check_model(&self, requested: Option<&str>) -> ApiResult<String> {
        match requested {
            None | Some("") => Ok(self.model_name().to_owned()),
            Some(name) if self.served_model_names.iter().any(|n| n == name) => Ok(name.to_owned()),
            Some(name) => Err(ApiError {
                status: axum::http::StatusCode::NOT_FOUND,
                message: format!("The model `{name}` does not exist."),
                param: Some("model".into()),
                overflow: None,
            }),
        }
    }
}

struct Shared {
    config: ServerConfig,
    ready: OnceLock<Arc<Ready>>,
    draining: AtomicBool,
    http: HttpMetrics,
    responses: Arc<ResponseStore>,
    connections: Arc<Registry>,
    body_budget: BodyBudget,
    /// Set when shutdown's time is up: handlers still working answer 503 at once.
    cut: watch::Sender<bool>,
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(config: ServerConfig) -> Self {
        Self(Arc::new(Shared {
            ready: OnceLock::new(),
            draining: AtomicBool::new(false),
            http: HttpMetrics::new(),
            responses: Arc::new(ResponseStore::new(config.response_store)),
            connections: Arc::new(Registry::default()),
            body_budget: BodyBudget::new(config.transport.max_buffered_body_bytes),
            cut: watch::channel(false).0,
            config,
        }))
    }

    /// A state that is ready at once (tests, and callers that loaded the model themselves).
    pub fn with_ready(config: ServerConfig, ready: Ready) -> Self {
        let state = Self::new(config);
        state.set_ready(ready);
        state
    }

    pub fn set_ready(&self, ready: Ready) {
        let _ = self.0.ready.set(Arc::new(ready));
    }

    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    /// Finished responses of `/v1/responses` kept for retrieval and chaining.
    pub fn responses(&self) -> &Arc<ResponseStore> {
        &self.0.responses
    }

    /// The open connections and the requests in flight on them.
    pub fn connections(&self) -> &Arc<Registry> {
        &self.0.connections
    }

    pub fn body_budget(&self) -> &BodyBudget {
        &self.0.body_budget
    }

    /// Shutdown's time is up: requests still being handled are answered 503 now.
    pub fn cut_requests(&self) {
        self.0.cut.send_replace(true);
    }

    /// Resolves once [`Self::cut_requests`] has been called.
    pub async fn requests_cut(&self) {
        let mut cut = self.0.cut.subscribe();
        // The sender lives as long as the state, so this only ends when cut.
        let _ = cut.wait_for(|&cut| cut).await;
    }

    pub fn http_metrics(&self) -> &HttpMetrics {
        &self.0.http
    }

    /// The loaded model, if loading has finished.
    pub fn loaded(&self) -> Option<&Arc<Ready>> {
        self.0.ready.get()
    }

    /// The loaded model for a request that needs it: 503 while loading or draining, and once
    /// the engine has died.
    pub fn ready(&self) -> ApiResult<Arc<Ready>> {
        if self.is_draining() {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        let ready = self
            .loaded()
            .cloned()
            .ok_or_else(|| ApiError::unavailable("the model is still loading"))?;
        if let Some(why) = ready.engine.liveness().cause() {
            return Err(ApiError::unavailable(format!(
                "the engine has stopped: {why}"
            )));
        }
        Ok(ready)
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
