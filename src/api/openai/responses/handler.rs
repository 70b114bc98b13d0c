//! `POST /v1/responses` and `GET /v1/responses/{id}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::{HeaderValue, header};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::events::ResponseEvent;
use super::input::{Conversation, input_items, messages, tool_catalog};
use super::render::ResponseRenderer;
use super::retain::{KeptItems, echoed_tool};
use super::types::{ResponseObject, ResponsesRequest, TextConfig, TextFormat};
use super::{fields, references, truncate};
use crate::api::conversation::ToolCatalog;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::ApiJsonWith;
use crate::api::field_names::FieldNames;
use crate::api::generate::{self, Generation, MaxTokens, Prompt, PromptSpec};
use crate::api::output::{self, Renderer};
use crate::api::request_builder::{self, random_id};
use crate::api::response_store::{ResponseStore, StoredResponse};
use crate::api::state::{AppState, Ready, ServerConfig, unix_now};
use crate::api::types::chat::{JsonSchemaFormat, ResponseFormat};
use crate::api::types::sampling::SamplingFields;
use crate::engine::Event;
use crate::sampling::{SamplingOverrides, SamplingParams};
use crate::tokenizer::PromptEnd;

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJsonWith(req, sampling): ApiJsonWith<ResponsesRequest, SamplingFields>,
) -> ApiResult<Response> {
    let ready = state.ready()?;
    let config = state.config();
    let cache_salt = request_builder::cache_salt(config, &headers, req.cache_salt.clone())?;
    let model = ready.serve_model(req.model.as_deref(), config.strict_model_name)?;
    let streamed = req.stream.unwrap_or(false);
    let (mut req, (turn, requests)) = generate::prepare(&state, &ready, req, {
        let store = state.responses().clone();
        move |ready, config, req| {
            let turn = prepare(&store, ready, config, req)?;
            let max_tokens = match req.max_output_tokens {
                Some(m) => MaxTokens::Exact(m),
                None => MaxTokens::Rest,
            };
            let generation = Generation {
                max_tokens,
                stop: Vec::new(),
                sampling: SamplingOverrides {
                    logprobs: fields::top_logprobs(req),
                    ..sampling.into_overrides()
                },
                cache_salt,
            };
            let fields = generation.into_fields(ready, &turn.prompt);
            let collected = fields.sampling.logprobs.is_some() && !streamed;
            let requests = generate::build(ready, config, &turn.prompt, fields, collected)?;
            Ok((turn, requests))
        }
    })
    .await?;
    // The prompt and the kept items are made: the parsed input need not live as long as the
    // generation does.
    req.input = None;
    // The settings the request runs with, as the response echoes them.
    let resolved = requests
        .first()
        .map(|r| r.request().sampling.clone())
        .ok_or_else(|| ApiError::internal("no request was built"))?;
    let logprobs = resolved.logprobs.is_some();
    let Turn {
        catalog,
        prompt,
        has_tools,
        kept,
    } = turn;
    let events = generate::submit(&ready, config, &prompt.plan, requests).await?;

    let shell = shell(&req, model, &resolved, has_tools);
    let store = kept.map(|k| (state.responses().clone(), k));
    let mut inner = ResponseRenderer::new(shell, catalog, prompt.tracker(config, true));
    if logprobs {
        inner = inner.with_logprobs(ready.tokenizer.clone());
    }
    let renderer = Storing { inner, store };
    output::respond(events, renderer, streamed, config.limits.sse_keep_alive).await
}

/// A Responses request as a turn: what [`prepare`] works out on the blocking pool.
struct Turn {
    catalog: ToolCatalog,
    prompt: Prompt,
    has_tools: bool,
    /// The conversation the prompt was made of (the previous response's and this input, less
    /// what truncation dropped) as the store keeps it; `None` when `store` is off.
    kept: Option<KeptItems>,
}

/// The history of `previous_response_id`, the request in chat form (truncated to the context
/// with `truncation: "auto"`), its rendered prompt.
fn prepare(
    store: &ResponseStore,
    ready: &Ready,
    config: &ServerConfig,
    req: &ResponsesRequest,
) -> ApiResult<Turn> {
    fields::check(req, config)?;
    let history = match &req.previous_response_id {
        Some(id) => store
            .get(id)
            .ok_or_else(|| unknown_response(id, "previous_response_id"))?
            .conversation_items(),
        None => Vec::new(),
    };
    let conversation = Conversation {
        history,
        input: references::resolve(store, input_items(req.input.as_ref())?),
    };
    let (catalog, tool_choice) = tool_catalog(req.tools.as_deref(), req.tool_choice.as_ref())?;
    let response_format = response_format(req.text.as_ref())?;
    let render = |skip: usize| -> ApiResult<(Prompt, usize)> {
        let messages = messages(req.instructions.as_deref(), &conversation, skip)?;
        let spec = PromptSpec {
            messages: &messages,
            tools: catalog.chat_tools(),
            tool_choice: tool_choice.as_ref(),
            parallel_tool_calls: req.parallel_tool_calls,
            response_format: response_format.as_ref(),
            template_kwargs: None,
            enable_thinking: req
                .reasoning
                .as_ref()
                .filter(|r| r.disables_thinking())
                .map(|_| false),
            end: PromptEnd::Generation(true),
            names: FieldNames::RESPONSES,
        };
        let prompt = generate::render(ready, config, &spec)?;
        let tokens = prompt.ids.len();
        Ok((prompt, tokens))
    };
    let (prompt, skip) = if req.truncation.as_deref() == Some("auto") && !conversation.is_empty() {
        // Room for the output asked for (at least one token).
        let reserve = req
            .max_output_tokens
            .and_then(|m| usize::try_from(m).ok())
            .unwrap_or(1)
            .max(1);
        let cuts = truncate::cut_points(&conversation);
        truncate::fit(&cuts, reserve, ready.max_model_len(), render)?
    } else {
        (render(0)?.0, 0)
    };
    let has_tools = !catalog.chat_tools().is_empty();
    let kept = req.store.unwrap_or(true).then(|| {
        let mut kept = KeptItems::default();
        for i in skip..conversation.len() {
            kept.push(conversation.item(i).0);
        }
        kept
    });
    Ok(Turn {
        catalog,
        prompt,
        has_tools,
        kept,
    })
}

/// The stored response's JSON as it was stored: no parse, no copy, nothing sized by the
/// response done on the async workers.
pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let stored = state
        .responses()
        .get(&id)
        .ok_or_else(|| unknown_response(&id, "response_id"))?;
    let mut response = Body::from(stored.response.clone()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn unknown_response(id: &str, param: &str) -> ApiError {
    let mut e = ApiError::not_found(format!(
        "Response with id '{id}' not found (responses are kept in memory for a limited time)."
    ));
    e.param = Some(param.to_owned());
    e
}

/// `text.format` as the chat `response_format` the tool planner reads.
fn response_format(text: Option<&TextConfig>) -> ApiResult<Option<ResponseFormat>> {
    let Some(format) = text.and_then(|t| t.format.as_ref()) else {
        return Ok(None);
    };
    let json_schema = match format.kind.as_str() {
        "json_schema" if format.schema.is_none() => {
            return Err(ApiError::invalid(
                "text.format",
                "text.format of type json_schema needs a schema",
            ));
        }
        "json_schema" => Some(JsonSchemaFormat {
            name: format.name.clone(),
            schema: format.schema.clone(),
            strict: format.strict,
        }),
        _ => None,
    };
    Ok(Some(ResponseFormat {
        kind: format.kind.clone(),
        json_schema,
    }))
}

/// The in-progress response, echoing the settings the request runs with.
fn shell(
    req: &ResponsesRequest,
    model: String,
    sampling: &SamplingParams,
    has_tools: bool,
) -> ResponseObject {
    let mut r = ResponseObject::in_progress(random_id("resp_"), model, unix_now());
    r.instructions = req.instructions.clone();
    r.max_output_tokens = req.max_output_tokens;
    r.max_tool_calls = req.max_tool_calls;
    r.parallel_tool_calls = req.parallel_tool_calls.unwrap_or(true);
    r.previous_response_id = req.previous_response_id.clone();
    r.reasoning = req.reasoning.clone();
    r.store = req.store.unwrap_or(true);
    r.top_logprobs = req.top_logprobs.unwrap_or(0);
    r.temperature = decimal(sampling.temperature);
    r.top_p = decimal(sampling.top_p);
    r.presence_penalty = decimal(sampling.presence_penalty);
    r.frequency_penalty = decimal(sampling.frequency_penalty);
    if let Some(format) = req.text.as_ref().and_then(|t| t.format.clone()) {
        r.text.format = Some(format);
    } else {
        r.text.format = Some(TextFormat {
            kind: "text".into(),
            name: None,
            schema: None,
            strict: None,
            description: None,
        });
    }
    r.tool_choice = req
        .tool_choice
        .clone()
        .unwrap_or_else(|| Value::String(if has_tools { "auto" } else { "none" }.into()));
    r.tools = req.tools.iter().flatten().map(echoed_tool).collect();
    r.truncation = req.truncation.clone().unwrap_or_else(|| "disabled".into());
    r.user = req.user.clone();
    r.metadata = req.metadata.clone().unwrap_or_default();
    r.safety_identifier = req.safety_identifier.clone();
    r.prompt_cache_key = req.prompt_cache_key.clone();
    r
}

/// A sampling setting as the decimal the client wrote (0.6, not 0.6000000238418579).
fn decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

/// The renderer, plus the store the finished response goes into (when `store` is on).
struct Storing {
    inner: ResponseRenderer,
    store: Option<(Arc<ResponseStore>, KeptItems)>,
}

impl Storing {
    fn after(&mut self, events: Vec<ResponseEvent>) -> Vec<ResponseEvent> {
        if self.inner.is_finished()
            && let Some((store, mut kept)) = self.store.take()
        {
            let response = self.inner.response();
            if response.status != "failed"
                && let Ok(json) = serde_json::to_vec(response)
            {
                for item in &response.output {
                    kept.push(item);
                }
                let (conversation, item_ids) = kept.finish();
                store.insert(StoredResponse {
                    id: response.id.clone(),
                    response: Bytes::from(json),
                    conversation,
                    item_ids,
                });
            }
        }
        events
    }
}

impl Renderer for Storing {
    type Event = ResponseEvent;
    type Whole = ResponseObject;

    fn into_whole(self) -> ApiResult<ResponseObject> {
        self.inner.into_whole()
    }

    fn start(&mut self) -> Vec<ResponseEvent> {
        self.inner.start()
    }

    fn on_engine(&mut self, choice: usize, event: Event) -> Vec<ResponseEvent> {
        let events = self.inner.on_engine(choice, event);
        self.after(events)
    }

    fn fail(&mut self, error: &ApiError) -> Vec<ResponseEvent> {
        let events = self.inner.fail(error);
        self.after(events)
    }

    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }

    fn to_sse(event: ResponseEvent) -> SseEvent {
        event.into_sse()
    }
}
