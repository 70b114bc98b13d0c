//! The one path from a conversation in chat form to engine streams, shared by chat completions,
//! the Responses API and the Messages API: tool plan → messages checked → prompt rendered and
//! tokenized → limits, sampling and the engine's rules ([`crate::engine::CheckedRequest`]) →
//! grammar compiled → submitted. Each API translates its request into a [`PromptSpec`] and
//! generation fields, and renders the events with its own [`crate::api::output::Renderer`].
//!
//! Everything sized by the request (tool schemas, the template, tokenization, the rules that read
//! the whole prompt) is blocking work, done in one trip to the bounded pool: [`prepare`] runs a
//! handler's [`render`] and [`build`] there. What comes back are checked requests: the grammar
//! (if any) compiles on a thread of its own, and [`submit`] only takes queue slots.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::blocking_pool;
use super::chat_prompt::render_checked;
use super::error::ApiResult;
use super::field_names::FieldNames;
use super::output::blocks::BlockTracker;
use super::request_builder::{self, GenerationFields};
use super::state::{AppState, Ready, ServerConfig};
use super::tools::{self, ToolPlan};
use super::types::chat::ResponseFormat;
use super::types::common::StopSpec;
use crate::engine::{CheckedRequest, EventStream};
use crate::parsers::prompt_opens_thinking;
use crate::sampling::SamplingOverrides;
use crate::tokenizer::PromptEnd;

/// A conversation in chat form plus what shapes its output.
pub struct PromptSpec<'a> {
    pub messages: &'a [Value],
    /// Chat-shaped function tools.
    pub tools: &'a [Value],
    pub tool_choice: Option<&'a Value>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<&'a ResponseFormat>,
    /// Template variables (chat's `chat_template_kwargs`).
    pub template_kwargs: Option<&'a Map<String, Value>>,
    /// Qwen3's `enable_thinking` (`None`: the template's or the kwargs' choice).
    pub enable_thinking: Option<bool>,
    /// How the prompt ends: the assistant's turn opened, or the final message continued.
    pub end: PromptEnd,
    /// What the API calls the request's parts, for errors about them.
    pub names: FieldNames,
}

/// A rendered, tokenized prompt and how its output is parsed.
pub struct Prompt {
    pub text: String,
    pub ids: Vec<u32>,
    pub plan: ToolPlan,
    /// The final message's text when the assistant wrote it (chat's `echo` repeats it).
    pub final_assistant_text: Option<String>,
    names: FieldNames,
}

impl Prompt {
    /// Whether the output opens inside a `<think>` block, when the reasoning parser is on.
    pub fn reasoning(&self, config: &ServerConfig) -> Option<bool> {
        config
            .reasoning_parser
            .then(|| prompt_opens_thinking(&self.text))
    }

    /// The block parser for this prompt's output: reasoning split when the reasoning parser is
    /// on, tool calls parsed when the tool plan says so.
    pub fn tracker(&self, config: &ServerConfig, never_empty: bool) -> BlockTracker {
        BlockTracker::new(
            self.reasoning(config),
            self.plan.calls.as_ref(),
            never_empty,
        )
    }
}

/// How many tokens an agent API's turn may generate.
#[derive(Debug, Clone, Copy)]
pub enum MaxTokens {
    /// Up to the end of the context.
    Rest,
    /// Exactly this cap; beyond the context is a 400 (the Responses API's `max_output_tokens`).
    Exact(i64),
    /// This cap, lowered to what the context has left (the Messages API's required
    /// `max_tokens`, which Claude Code sets far above any local model's context).
    Clamped(i64),
}

/// The generation settings the agent APIs have (a subset of chat's).
pub struct Generation {
    pub max_tokens: MaxTokens,
    pub stop: Vec<String>,
    pub sampling: SamplingOverrides,
    /// The prefix-cache salt ([`request_builder::cache_salt`]).
    pub cache_salt: Option<String>,
}

impl Generation {
    /// The fields chat completions would send for this turn of `prompt`.
    pub fn into_fields(self, ready: &Ready, prompt: &Prompt) -> GenerationFields {
        let left = ready.max_model_len() as i64 - prompt.ids.len() as i64;
        let max_tokens = match self.max_tokens {
            MaxTokens::Rest => None,
            MaxTokens::Exact(m) => Some(m),
            // At least 1 so that a prompt that fills the context gets the usual error, not a
            // clamp to nothing.
            MaxTokens::Clamped(m) if m >= 1 => Some(m.min(left.max(1))),
            MaxTokens::Clamped(m) => Some(m),
        };
        GenerationFields {
            max_tokens,
            stop: (!self.stop.is_empty()).then_some(StopSpec::Many(self.stop)),
            sampling: self.sampling,
            cache_salt: self.cache_salt,
            ..Default::default()
        }
    }
}

/// Runs `work` (a request's conversion to a prompt, [`render`], [`build`]) on the blocking pool:
/// the request goes there and comes back with the result. Refused first when the served model
/// does not generate (an embedding model).
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
    ready.task.check_generates()?;
    let (state, ready) = (state.clone(), ready.clone());
    blocking_pool::run(move || {
        let done = work(&ready, state.config(), &request)?;
        Ok((request, done))
    })
    .await?
}

/// The tool plan, checked messages, rendered prompt and its ids; a prompt certainly too long for
/// the context is refused before it is tokenized. Blocking work (see [`prepare`]).
pub fn render(ready: &Ready, config: &ServerConfig, spec: &PromptSpec<'_>) -> ApiResult<Prompt> {
    let plan = tools::plan(
        Some(spec.tools),
        spec.tool_choice,
        spec.parallel_tool_calls,
        spec.response_format,
        config,
        ready.tool_call_format(config),
        &spec.names,
    )?;
    let mut kwargs = spec.template_kwargs.cloned().unwrap_or_default();
    if let Some(thinking) = spec.enable_thinking {
        kwargs.insert("enable_thinking".into(), Value::Bool(thinking));
    }
    let (messages, rendered) = render_checked(
        ready,
        spec.messages,
        Some(spec.tools),
        &kwargs,
        spec.end,
        !config.allow_special_tokens_in_content,
        &spec.names,
    )?;
    let ids = rendered.encode(&ready.tokenizer, false)?;
    let final_assistant_text = messages
        .last()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
        .and_then(|m| m.get("content").and_then(Value::as_str))
        .map(str::to_owned);
    Ok(Prompt {
        text: rendered.text,
        ids,
        plan,
        final_assistant_text,
        names: spec.names,
    })
}

/// The checked engine requests for `prompt` (`n` of them). `collected_logprobs`: the response is
/// sent whole with logprobs, so the entries it may hold are bounded. Blocking work (see
/// [`prepare`]).
pub fn build(
    ready: &Ready,
    config: &ServerConfig,
    prompt: &Prompt,
    fields: GenerationFields,
    collected_logprobs: bool,
) -> ApiResult<Vec<CheckedRequest>> {
    let requests =
        request_builder::build(ready, config, prompt.ids.clone(), &prompt.names, fields)?;
    if collected_logprobs {
        request_builder::check_collected_logprobs(ready, config, &requests, false, &prompt.names)?;
    }
    Ok(requests)
}

/// Submits checked requests under the prompt's output constraint (compiled once for all, on a
/// thread of its own).
pub async fn submit(
    ready: &Arc<Ready>,
    config: &ServerConfig,
    plan: &ToolPlan,
    requests: Vec<CheckedRequest>,
) -> ApiResult<Vec<EventStream>> {
    request_builder::submit_guided(ready, &config.grammar, requests, plan.guided.clone()).await
}
