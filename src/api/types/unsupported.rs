//! vLLM request fields tealight does not implement. Accepting them silently would answer 200
//! with output that ignored what was asked, so a value that asks for something (anything but
//! null, `false`, an empty list or object, or the field's neutral default) is a 400 naming the
//! field. Fields that only describe the caller (`user`, `metadata`, ...) stay ignored.

use serde::Deserialize;
use serde_json::Value;

use crate::api::error::{ApiError, ApiResult};

/// Declares the struct of unsupported fields and the list of their names, with each field's
/// neutral value where it is not null/false/empty.
macro_rules! unsupported_fields {
    ($name:ident { $($field:ident $(= $neutral:expr)?),* $(,)? }) => {
        /// Fields read only to be refused (see the module docs).
        #[derive(Debug, Default, Deserialize)]
        pub struct $name {
            $(pub $field: Option<Value>,)*
        }

        impl $name {
            /// The first field that asks for something tealight does not do.
            pub fn refuse(&self) -> ApiResult<()> {
                $(
                    if let Some(value) = &self.$field {
                        #[allow(unused_mut, unused_assignments)]
                        let mut neutral: Option<Value> = None;
                        $(neutral = Some(serde_json::json!($neutral));)?
                        if asks_for_something(value, neutral.as_ref()) {
                            return Err(unsupported(stringify!($field)));
                        }
                    }
                )*
                Ok(())
            }
        }
    };
}

/// What the refusal tells the client.
pub const NOTE: &str = "tealight does not implement it; leave it out (or null)";

fn unsupported(field: &str) -> ApiError {
    ApiError::invalid(field, format!("`{field}` is not supported: {NOTE}"))
}

fn asks_for_something(value: &Value, neutral: Option<&Value>) -> bool {
    let is_neutral = neutral.is_some_and(|n| match (n.as_f64(), value.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => n == value,
    });
    if is_neutral {
        return false;
    }
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

// One list for chat and completions: a field a route implements is read by its own request
// type first and never reaches this struct (chat's `response_format`, completions' `best_of`).
unsupported_fields!(Unsupported {
    prompt_logprobs,
    prompt_embeds,
    use_beam_search,
    length_penalty = 1.0,
    allowed_token_ids,
    bad_words,
    logits_processors,
    truncate_prompt_tokens,
    guided_json,
    guided_regex,
    guided_choice,
    guided_grammar,
    guided_whitespace_pattern,
    structured_outputs,
    response_format,
    return_tokens_as_token_ids,
    return_token_ids,
    priority = 0,
    spaces_between_special_tokens = true,
    kv_transfer_params,
    vllm_xargs,
    mm_processor_kwargs,
    documents,
    chat_template,
    best_of = 1,
    functions,
    function_call,
    audio,
    prediction,
    modalities = ["text"],
});

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(body: &str) -> Option<String> {
        let fields: Unsupported = serde_json::from_str(body).unwrap();
        fields.refuse().err().and_then(|e| e.param)
    }

    #[test]
    fn asking_is_refused_by_name_and_neutral_values_pass() {
        assert_eq!(
            refuse(r#"{"prompt_logprobs": 1}"#).as_deref(),
            Some("prompt_logprobs")
        );
        assert_eq!(
            refuse(r#"{"use_beam_search": true}"#).as_deref(),
            Some("use_beam_search")
        );
        assert_eq!(
            refuse(r#"{"length_penalty": 0.5}"#).as_deref(),
            Some("length_penalty")
        );
        assert_eq!(
            refuse(r#"{"guided_json": {"type": "object"}}"#).as_deref(),
            Some("guided_json")
        );
        for neutral in [
            r#"{"prompt_logprobs": null}"#,
            r#"{"use_beam_search": false}"#,
            r#"{"length_penalty": 1.0}"#,
            r#"{"length_penalty": 1}"#,
            r#"{"priority": 0}"#,
            r#"{"bad_words": []}"#,
            r#"{"spaces_between_special_tokens": true}"#,
            r#"{"modalities": ["text"]}"#,
            r#"{}"#,
        ] {
            assert_eq!(refuse(neutral), None, "{neutral}");
        }
    }
}
