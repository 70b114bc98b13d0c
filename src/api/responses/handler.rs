//! `POST /v1/responses` and `GET /v1/responses/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::input::chat_form;
use super::render::{ResponseRenderer, StreamEvent};
use super::store::{ResponseStore, StoredResponse};
use super::types::{ResponseObject, ResponsesRequest, TextConfig, TextFormat};
use crate::api::conversation::ToolCatalog;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::ApiJson;
use crate::api::request_builder::random_id;
use crate::api::state::{AppState, Ready, ServerConfig, unix_now};
use crate::api::turn::{self, Generation, MaxTokens, Prompt, TurnRenderer, TurnSpec};
use crate::api::types::chat::{JsonSchemaFormat, ResponseFormat};
use crate::engine::Event;
use crate::sampling::{SamplingOverrides, SamplingParams};

pub async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ResponsesRequest>,
) -> ApiResult<Response> {
    let ready = state.ready()?;
    let config = state.config();
    let model = ready.serve_model(req.model.as_deref(), config.strict_model_name)?;
    let (req, turn) = turn::prepare(&state, &ready, req, {
        let store = state.responses().clone();
        move |ready, config, req| prepare(&store, ready, config, req)
    })
    .await?;
    let sampling = SamplingOverrides {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        min_p: req.min_p,
        repetition_penalty: req.repetition_penalty,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        seed: req.seed,
        ..Default::default()
    };
    let resolved = SamplingParams::resolve(&ready.defaults, &sampling, ready.vocab_size())?;
    let max_tokens = match req.max_output_tokens {
        Some(m) => MaxTokens::Exact(m, "max_output_tokens"),
        None => MaxTokens::Rest,
    };
    let Turn {
        catalog,
        prompt,
        has_tools,
        conversation,
    } = turn;
    let events = turn::submit(
        &ready,
        config,
        &prompt,
        Generation {
            max_tokens,
            stop: Vec::new(),
            sampling,
        },
    )
    .await?;

    let shell = shell(&req, model, &resolved, has_tools);
    let store = conversation.map(|c| (state.responses().clone(), c));
    let renderer = Storing {
        inner: ResponseRenderer::new(shell, catalog, prompt.tracker(config, true)),
        store,
    };
    if req.stream.unwrap_or(false) {
        return Ok(turn::stream(
            events,
            renderer,
            config.limits.sse_keep_alive,
            SseEvent::default().comment("keep-alive"),
        ));
    }
    let done = turn::collect(events, renderer).await;
    Ok(Json(done.inner.into_response()).into_response())
}

/// A Responses request as a turn: what [`prepare`] works out on the blocking pool.
struct Turn {
    catalog: ToolCatalog,
    prompt: Prompt,
    has_tools: bool,
    /// The conversation so far (the previous response's and this input), to store the response
    /// with; `None` when `store` is off.
    conversation: Option<Vec<Value>>,
}

/// The history of `previous_response_id`, the request in chat form, its rendered prompt.
fn prepare(
    store: &ResponseStore,
    ready: &Ready,
    config: &ServerConfig,
    req: &ResponsesRequest,
) -> ApiResult<Turn> {
    let history = match &req.previous_response_id {
        Some(id) => store
            .get(id)
            .ok_or_else(|| unknown_response(id, "previous_response_id"))?
            .conversation
            .clone(),
        None => Vec::new(),
    };
    let form = chat_form(
        req.instructions.as_deref(),
        req.input.as_ref(),
        req.tools.as_deref(),
        req.tool_choice.as_ref(),
        history.clone(),
    )?;
    let response_format = response_format(req.text.as_ref())?;
    let spec = TurnSpec {
        messages: &form.messages,
        tools: form.catalog.chat_tools(),
        tool_choice: form.tool_choice.as_ref(),
        parallel_tool_calls: req.parallel_tool_calls,
        response_format: response_format.as_ref(),
        enable_thinking: req
            .reasoning
            .as_ref()
            .filter(|r| r.disables_thinking())
            .map(|_| false),
        prompt_param: "input",
    };
    let prompt = turn::render(ready, config, &spec)?;
    let has_tools = !spec.tools.is_empty();
    let conversation = req.store.unwrap_or(true).then(|| {
        let mut conversation = history;
        conversation.extend(input_items(req.input.as_ref()));
        conversation
    });
    Ok(Turn {
        catalog: form.catalog,
        prompt,
        has_tools,
        conversation,
    })
}

/// A stored response can be as large as a request: it is serialized on the pool.
pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let stored = state
        .responses()
        .get(&id)
        .ok_or_else(|| unknown_response(&id, "response_id"))?;
    let body = crate::api::offload::run(move || serde_json::to_vec(&stored.response))
        .await?
        .map_err(|e| ApiError::internal(format!("serializing the stored response: {e}")))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
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
    r.tools = req.tools.clone().unwrap_or_default();
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

/// The request's `input` as items, for the stored conversation.
fn input_items(input: Option<&Value>) -> Vec<Value> {
    match input {
        Some(Value::String(text)) => {
            vec![json!({"type": "message", "role": "user", "content": text})]
        }
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// The renderer, plus the store the finished response goes into (when `store` is on).
struct Storing {
    inner: ResponseRenderer,
    store: Option<(Arc<ResponseStore>, Vec<Value>)>,
}

impl Storing {
    fn after(&mut self, events: Vec<StreamEvent>) -> Vec<StreamEvent> {
        if self.inner.is_finished()
            && let Some((store, mut conversation)) = self.store.take()
        {
            let response = self.inner.response().clone();
            if response.status != "failed" {
                conversation.extend(response.output.iter().cloned());
                store.insert(StoredResponse {
                    response,
                    conversation,
                });
            }
        }
        events
    }
}

impl TurnRenderer for Storing {
    fn start(&mut self) -> Vec<StreamEvent> {
        self.inner.start()
    }

    fn on_engine(&mut self, event: Event) -> Vec<StreamEvent> {
        let events = self.inner.on_engine(event);
        self.after(events)
    }

    fn fail(&mut self, message: &str) -> Vec<StreamEvent> {
        let events = self.inner.fail(message);
        self.after(events)
    }

    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}
