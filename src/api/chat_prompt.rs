//! Chat messages to a prompt: checked, rendered through the template and held to the context
//! by their text before anything tokenizes them. Every chat-form API ([`super::generate`]) and
//! `/tokenize` share it.

use serde_json::{Map, Value};

use super::error::ApiResult;
use super::field_names::{FieldNames, Named};
use super::prompt_length;
use super::state::Ready;
use crate::tokenizer::{ChatPrompt, Conversation, PromptEnd, prepare_messages, render_chat};

/// Chat messages checked, rendered through the template and held to the context (by their
/// text, before tokenizing): what chat completions and `/tokenize` share. `plain_content`:
/// special-token text in messages stays text (`--allow-special-tokens-in-content` unset);
/// `names`: what the API calls the request's parts, for errors about them.
pub fn render_checked(
    ready: &Ready,
    raw: &[Value],
    tools: Option<&[Value]>,
    kwargs: &Map<String, Value>,
    end: PromptEnd,
    plain_content: bool,
    names: &FieldNames,
) -> ApiResult<(Vec<Value>, ChatPrompt)> {
    let messages = prepare_messages(raw).named(names)?;
    let conversation = Conversation {
        messages: &messages,
        tools: tools.filter(|t| !t.is_empty()),
        kwargs,
    };
    let prompt = render_chat(
        &ready.template,
        &ready.tokenizer,
        conversation,
        end,
        plain_content,
    )
    .named(names)?;
    prompt_length::check_text_fits(
        &ready.tokenizer,
        &prompt.text,
        ready.max_model_len(),
        names.prompt,
    )?;
    Ok((messages, prompt))
}
