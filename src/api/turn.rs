//! The one path the agent APIs (`/v1/responses`, `/v1/messages`) share from a request in chat
//! form to an engine event stream: tool plan → messages checked → prompt rendered and tokenized
//! → limits and sampling resolved → submitted. Each API only translates its request into a
//! [`TurnSpec`] and renders the events with its own renderer ([`crate::api::openai::responses::render`],
//! [`crate::api::anthropic::render`]), driven like every API's by [`crate::api::output`].
//!
//! As for chat completions, the conversion, rendering and tokenization of a turn are blocking
//! work: the handlers run them (and [`render`]) on the bounded pool ([`blocking_pool::run`]), and
//! [`submit`] compiles the grammar and submits there too.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::blocking_pool;
use super::error::{ApiError, ApiResult};
use super::output::blocks::BlockTracker;
use super::prompt_length;
use super::request_builder::{self, GenerationFields};
use super::state::{AppState, Ready, ServerConfig};
use super::tools::{self, SchemaFields, ToolPlan};
use super::types::chat::ResponseFormat;
use crate::engine::EventStream;
use crate::parsers::prompt_opens_thinking;
use crate::sampling::SamplingOverrides;
use crate::tokenizer::{Conversation, PromptEnd, prepare_messages, render_chat};

/// A conversation in chat form plus what shapes its output.
pub struct TurnSpec<'a> {
    pub messages: &'a [Value],
    /// Chat-shaped function tools.
    pub tools: &'a [Value],
    pub tool_choice: Option<&'a Value>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<&'a ResponseFormat>,
    /// Qwen3's `enable_thinking` (`None`: the template's default).
    pub enable_thinking: Option<bool>,
    /// The request field that holds the conversation, for errors about the prompt.
    pub prompt_param: &'static str,
}

impl TurnSpec<'_> {
    /// Where the API keeps its output schemas: Responses takes its conversation from `input`,
    /// Messages from `messages`.
    fn schema_fields(&self) -> SchemaFields {
        match self.prompt_param {
            "input" => SchemaFields::RESPONSES,
            _ => SchemaFields::MESSAGES,
        }
    }
}

/// A rendered, tokenized prompt and how its output is parsed.
pub struct Prompt {
    pub text: String,
    pub ids: Vec<u32>,
    pub plan: ToolPlan,
    prompt_param: &'static str,
}

impl Prompt {
    /// The parser state for this prompt's output: reasoning split when the reasoning parser is
    /// on, tool calls parsed when the tool plan says so.
    pub fn tracker(&self, config: &ServerConfig, never_empty: bool) -> BlockTracker {
        let reasoning = config
            .reasoning_parser
            .then(|| prompt_opens_thinking(&self.text));
        BlockTracker::new(reasoning, self.plan.parse_calls, never_empty)
    }
}

/// How many tokens the turn may generate.
#[derive(Debug, Clone, Copy)]
pub enum MaxTokens {
    /// Up to the end of the context.
    Rest,
    /// Exactly this cap; beyond the context is a 400 (the Responses API's `max_output_tokens`).
    Exact(i64, &'static str),
    /// This cap, lowered to what the context has left (the Messages API's required
    /// `max_tokens`, which Claude Code sets far above any local model's context).
    Clamped(i64, &'static str),
}

pub struct Generation {
    pub max_tokens: MaxTokens,
    pub stop: Vec<String>,
    pub sampling: SamplingOverrides,
    /// A response collected whole (not streamed) with logprobs: the entries it may hold are
    /// bounded as on chat completions, and a refusal names this field.
    pub collected_logprobs: Option<&'static str>,
    /// The prefix-cache salt ([`request_builder::cache_salt`]).
    pub cache_salt: Option<String>,
}

/// Runs `work` (a request's conversion to a turn, [`render`] and whatever else it needs) on the
/// blocking pool: the request goes there and comes back with the result.
pub async fn prepare<T, U>(
    state: &AppState,
    ready: &Arc<Ready>,
    request: T,
    work: impl FnOnce(&Ready, &ServerConfig, &T) -> ApiResult<U> + Send + 'static,
) -> ApiResult<(T, U)>
where
    T: Send + 'static,
    U: Send + 'static,
{
    let (state, ready) = (state.clone(), ready.clone());
    blocking_pool::run(move || {
        let done = work(&ready, state.config(), &request)?;
        Ok((request, done))
    })
    .await?
}

/// The turn's tool plan, checked messages, rendered prompt and its ids; a prompt certainly too
/// long for the context is refused before it is tokenized. Blocking work: call it on the pool
/// ([`blocking_pool::run`]).
pub fn render(ready: &Ready, config: &ServerConfig, spec: &TurnSpec<'_>) -> ApiResult<Prompt> {
    let plan = tools::plan_for(
        Some(spec.tools),
        spec.tool_choice,
        spec.parallel_tool_calls,
        spec.response_format,
        config,
        spec.schema_fields(),
    )?;
    let messages = prepare_messages(spec.messages)?;
    let mut kwargs = Map::new();
    if let Some(thinking) = spec.enable_thinking {
        kwargs.insert("enable_thinking".into(), Value::Bool(thinking));
    }
    let conversation = Conversation {
        messages: &messages,
        tools: Some(spec.tools).filter(|t| !t.is_empty()),
        kwargs: &kwargs,
    };
    let rendered = render_chat(
        &ready.template,
        &ready.tokenizer,
        conversation,
        PromptEnd::Generation(true),
        !config.allow_special_tokens_in_content,
    )?;
    prompt_length::check_text_fits(
        &ready.tokenizer,
        &rendered.text,
        ready.max_model_len(),
        spec.prompt_param,
    )?;
    let ids = rendered.encode(&ready.tokenizer, false)?;
    Ok(Prompt {
        text: rendered.text,
        ids,
        plan,
        prompt_param: spec.prompt_param,
    })
}

/// Builds the turn's one engine request and submits it (the grammar compiles on a thread of
/// its own, the submission runs on the pool).
pub async fn submit(
    ready: &Arc<Ready>,
    config: &ServerConfig,
    prompt: &Prompt,
    generation: Generation,
) -> ApiResult<EventStream> {
    let left = ready.max_model_len() as i64 - prompt.ids.len() as i64;
    let max_tokens = match generation.max_tokens {
        MaxTokens::Rest => None,
        MaxTokens::Exact(m, param) => Some((m, param)),
        // At least 1 so that a prompt that fills the context gets the usual error, not a
        // clamp to nothing.
        MaxTokens::Clamped(m, param) if m >= 1 => Some((m.min(left.max(1)), param)),
        MaxTokens::Clamped(m, param) => Some((m, param)),
    };
    let fields = GenerationFields {
        max_tokens,
        stop: (!generation.stop.is_empty())
            .then_some(super::types::common::StopSpec::Many(generation.stop)),
        sampling: generation.sampling,
        cache_salt: generation.cache_salt,
        ..Default::default()
    };
    let requests = request_builder::build(
        ready,
        config,
        prompt.ids.clone(),
        prompt.prompt_param,
        fields,
    )?;
    if let Some(param) = generation.collected_logprobs {
        request_builder::check_collected_logprobs(ready, config, &requests, false, param)?;
    }
    request_builder::submit_guided(ready, &config.grammar, requests, prompt.plan.guided.clone())
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("no request was submitted"))
}
