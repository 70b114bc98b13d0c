//! vLLM's `/tokenize` and `/detokenize`: the exact ids a prompt or conversation becomes (the
//! count generation requests are charged), and back.

use axum::Json;
use axum::extract::State;

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use super::state::AppState;
use super::types::tokenize::{
    DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse,
};
use crate::engine::rules;
use crate::tokenizer::prepare_messages;

pub async fn tokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> ApiResult<Json<TokenizeResponse>> {
    let ready = state.ready()?;
    ready.check_model(req.model.as_deref())?;
    let tokens = match (req.messages, req.prompt) {
        (Some(messages), _) => {
            let messages = prepare_messages(&messages)?;
            let kwargs = req.chat_template_kwargs.unwrap_or_default();
            let tools = req.tools.as_deref().filter(|t| !t.is_empty());
            let prompt = if req.continue_final_message.unwrap_or(false) {
                ready
                    .template
                    .render_continue_final_message(&messages, tools, &kwargs)?
            } else {
                let add = req.add_generation_prompt.unwrap_or(true);
                ready.template.render(&messages, tools, add, &kwargs)?
            };
            ready
                .tokenizer
                .encode(&prompt, req.add_special_tokens.unwrap_or(false))?
        }
        (None, Some(prompt)) => ready
            .tokenizer
            .encode(&prompt, req.add_special_tokens.unwrap_or(true))?,
        (None, None) => {
            return Err(ApiError::invalid(
                "prompt",
                "either prompt or messages is required",
            ));
        }
    };
    let token_strs = req.return_token_strs.unwrap_or(false).then(|| {
        tokens
            .iter()
            .map(|&id| ready.tokenizer.id_to_token(id).unwrap_or_default())
            .collect()
    });
    Ok(Json(TokenizeResponse {
        count: tokens.len(),
        max_model_len: ready.max_model_len(),
        tokens,
        token_strs,
    }))
}

pub async fn detokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DetokenizeRequest>,
) -> ApiResult<Json<DetokenizeResponse>> {
    let ready = state.ready()?;
    ready.check_model(req.model.as_deref())?;
    let vocab = ready.vocab_size();
    let ids = rules::token_ids(req.tokens.iter().copied(), vocab, "tokens")?;
    Ok(Json(DetokenizeResponse {
        prompt: ready.tokenizer.decode(&ids, false)?,
    }))
}
