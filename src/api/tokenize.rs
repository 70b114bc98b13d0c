//! vLLM's `/tokenize` and `/detokenize`: the exact ids a prompt or conversation becomes (the
//! count generation requests are charged), and back.

use axum::Json;
use axum::extract::State;

use super::blocking_pool;
use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use super::field_names::{FieldNames, Named};
use super::prompt_length;
use super::state::{AppState, Ready};
use super::types::tokenize::{
    DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse,
};
use crate::engine::rules;
use crate::error::RequestPart;
use crate::tokenizer::PromptEnd;

pub async fn tokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> ApiResult<Json<TokenizeResponse>> {
    let ready = state.ready()?;
    ready.check_model(req.model.as_deref())?;
    let plain_content = !state.config().allow_special_tokens_in_content;
    blocking_pool::run(move || tokenize_blocking(&ready, req, plain_content)).await?
}

/// Rendering and tokenizing: blocking work (see [`blocking_pool`]). `plain_content`: special-token
/// text in messages is plain text (`--allow-special-tokens-in-content` unset).
fn tokenize_blocking(
    ready: &Ready,
    req: TokenizeRequest,
    plain_content: bool,
) -> ApiResult<Json<TokenizeResponse>> {
    let max_len = ready.max_model_len();
    let tokens = match (req.messages, req.prompt) {
        (Some(messages), _) => {
            let kwargs = req.chat_template_kwargs.unwrap_or_default();
            let end = if req.continue_final_message.unwrap_or(false) {
                PromptEnd::ContinueFinal
            } else {
                PromptEnd::Generation(req.add_generation_prompt.unwrap_or(true))
            };
            let (_, prompt) = super::chat_prompt::render_checked(
                ready,
                &messages,
                req.tools.as_deref(),
                &kwargs,
                end,
                plain_content,
                &FieldNames::CHAT,
            )?;
            prompt.encode(&ready.tokenizer, req.add_special_tokens.unwrap_or(false))?
        }
        (None, Some(prompt)) => {
            prompt_length::check_text_fits(&ready.tokenizer, &prompt, max_len, "prompt")?;
            ready
                .tokenizer
                .encode(&prompt, req.add_special_tokens.unwrap_or(true))?
        }
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
        max_model_len: max_len,
        tokens,
        token_strs,
    }))
}

/// `/detokenize`: at most `max_model_len` ids (the longest sequence the server handles), checked
/// and decoded on the pool.
pub async fn detokenize(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DetokenizeRequest>,
) -> ApiResult<Json<DetokenizeResponse>> {
    let ready = state.ready()?;
    ready.check_model(req.model.as_deref())?;
    check_id_count(req.tokens.len(), ready.max_model_len())?;
    blocking_pool::run(move || {
        // The ids to decode stand where a prompt's would; the request calls them `tokens`.
        let names = FieldNames {
            prompt: "tokens",
            ..FieldNames::COMPLETIONS
        };
        let ids = rules::token_ids(
            req.tokens.iter().copied(),
            ready.vocab_size(),
            RequestPart::Prompt,
        )
        .named(&names)?;
        Ok(Json(DetokenizeResponse {
            prompt: ready.tokenizer.decode(&ids, false)?,
        }))
    })
    .await?
}

fn check_id_count(count: usize, max_model_len: usize) -> ApiResult<()> {
    if count > max_model_len {
        return Err(ApiError::invalid(
            "tokens",
            format!(
                "{count} token ids is more than the model's maximum context length \
                 ({max_model_len} tokens, --max-model-len); detokenize at most that many at once"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detokenize_takes_at_most_a_context_of_ids() {
        assert!(check_id_count(4096, 4096).is_ok());
        let e = check_id_count(4097, 4096).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tokens"));
        assert!(e.message.contains("--max-model-len"), "{}", e.message);
    }
}
