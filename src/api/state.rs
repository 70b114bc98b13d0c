//! What every handler shares: the server's configuration, and the loaded model once it is ready.
//!
//! The listener starts before the model loads (so `/health` can answer 503 while it does);
//! `ready` is filled once loading is done, and `draining` is set on shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::error::{ApiError, ApiResult};
use super::metrics::HttpMetrics;
use super::metrics_vllm::MetricsCompat;
use crate::cli::serve::{Loaded, ServeArgs};
use crate::engine::EngineHandle;
use crate::error::{Error, Result};
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
        }
    }
}

/// Server settings from the command line.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    pub api_key: Option<String>,
    /// `None`: no CORS headers. `Some(["*"])`: any origin.
    pub allowed_origins: Option<Vec<String>>,
    pub log_requests: bool,
    /// `--reasoning-parser qwen3`.
    pub reasoning_parser: bool,
    /// `--tool-call-parser hermes`.
    pub tool_parser: bool,
    /// `--enable-auto-tool-choice`.
    pub auto_tool_choice: bool,
    /// `--seed`: used by requests that set none.
    pub default_seed: Option<u64>,
    pub shutdown_timeout: Duration,
    /// `--metrics-compat`: extra metric names on `/metrics`.
    pub metrics_compat: MetricsCompat,
    pub limits: Limits,
}

impl ServerConfig {
    /// Reads and checks the API-related flags (unknown parser names fail at startup).
    pub fn from_args(args: &ServeArgs) -> Result<Self> {
        let reasoning_parser = match args.reasoning_parser.as_deref() {
            None => false,
            Some("qwen3") | Some("deepseek_r1") => true,
            Some(other) => {
                return Err(Error::invalid_request(format!(
                    "--reasoning-parser {other}: unknown parser (available: qwen3)"
                )));
            }
        };
        let tool_parser = match args.tool_call_parser.as_deref() {
            None => false,
            Some("hermes") => true,
            Some(other) => {
                return Err(Error::invalid_request(format!(
                    "--tool-call-parser {other}: unknown parser (available: hermes)"
                )));
            }
        };
        if args.enable_auto_tool_choice && !tool_parser {
            return Err(Error::invalid_request(
                "--enable-auto-tool-choice needs --tool-call-parser (e.g. hermes)",
            ));
        }
        Ok(Self {
            api_key: args.api_key(),
            allowed_origins: args
                .allowed_origins
                .as_deref()
                .map(parse_origins)
                .transpose()?,
            log_requests: !args.disable_log_requests,
            reasoning_parser,
            tool_parser,
            auto_tool_choice: args.enable_auto_tool_choice,
            default_seed: args.seed,
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
            metrics_compat: args.metrics_compat,
            limits: Limits::default(),
        })
    }
}

/// `--allowed-origins`: a JSON list (vLLM's form, e.g. `["*"]`) or a comma-separated list.
pub fn parse_origins(value: &str) -> Result<Vec<String>> {
    let value = value.trim();
    let origins: Vec<String> = if value.starts_with('[') {
        serde_json::from_str(value).map_err(|e| {
            Error::invalid_request(format!(
                "--allowed-origins: not a JSON list of strings: {e}"
            ))
        })?
    } else {
        value
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    Ok(origins)
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
}

impl Ready {
    pub fn from_loaded(loaded: Loaded) -> Self {
        Self {
            engine: loaded.engine,
            tokenizer: loaded.tokenizer,
            template: loaded.template,
            defaults: loaded.defaults,
            served_model_names: loaded.served_model_names,
            model_path: loaded.model_path,
            created: unix_now(),
        }
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

    /// Checks a request's `model` (absent = the served model), vLLM's 404 otherwise.
    pub fn check_model(&self, requested: Option<&str>) -> ApiResult<String> {
        match requested {
            None | Some("") => Ok(self.model_name().to_owned()),
            Some(name) if self.served_model_names.iter().any(|n| n == name) => Ok(name.to_owned()),
            Some(name) => Err(ApiError {
                status: axum::http::StatusCode::NOT_FOUND,
                message: format!("The model `{name}` does not exist."),
                param: Some("model".into()),
            }),
        }
    }
}

struct Shared {
    config: ServerConfig,
    ready: OnceLock<Arc<Ready>>,
    draining: AtomicBool,
    http: HttpMetrics,
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(config: ServerConfig) -> Self {
        Self(Arc::new(Shared {
            config,
            ready: OnceLock::new(),
            draining: AtomicBool::new(false),
            http: HttpMetrics::new(),
        }))
    }

    /// A state that is ready at once (tests, and callers that loaded the model themselves).
    pub fn with_loaded(config: ServerConfig, loaded: Loaded) -> Self {
        let state = Self::new(config);
        state.set_ready(loaded);
        state
    }

    pub fn set_ready(&self, loaded: Loaded) {
        let _ = self.0.ready.set(Arc::new(Ready::from_loaded(loaded)));
    }

    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    pub fn http_metrics(&self) -> &HttpMetrics {
        &self.0.http
    }

    /// The loaded model, if loading has finished.
    pub fn loaded(&self) -> Option<&Arc<Ready>> {
        self.0.ready.get()
    }

    /// The loaded model for a request that needs it: 503 while loading or draining.
    pub fn ready(&self) -> ApiResult<Arc<Ready>> {
        if self.is_draining() {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        self.loaded()
            .cloned()
            .ok_or_else(|| ApiError::unavailable("the model is still loading"))
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
