//! The Responses request fields that ask for something beyond a prompt: each one either works
//! (`truncation`, `include` values that have a meaning here, `top_logprobs`) or is refused with
//! a 400 naming it (`conversation`, `background: true`, other `include` values), never dropped
//! in silence. Also the bounds on what the
//! store would keep of a request but no prompt reads (`metadata`, the caller's ids), so a
//! stored response holds only what its size was measured from and a prompt can use.

use serde_json::Value;

use super::types::ResponsesRequest;
use crate::api::error::{ApiError, ApiResult};
use crate::api::state::ServerConfig;

/// `include` values that work: tealight's reasoning items carry their text, which is what a
/// client resends in place of OpenAI's encrypted reasoning (Codex asks for it every turn), and
/// the output text's logprobs.
pub const INCLUDABLE: &[&str] = &["reasoning.encrypted_content", LOGPROBS];

/// The `include` value that asks for the output text's logprobs.
pub const LOGPROBS: &str = "message.output_text.logprobs";

/// The alternatives per token the request asks for, when it asks for logprobs at all
/// (`top_logprobs` above 0, or `include` naming them); a bad count is refused by the sampler's
/// checks, naming `top_logprobs`.
pub fn top_logprobs(req: &ResponsesRequest) -> Option<i64> {
    let included = req.include.iter().flatten().any(|i| i == LOGPROBS);
    match req.top_logprobs {
        Some(n) if n != 0 => Some(n),
        n if included => Some(n.unwrap_or(0)),
        _ => None,
    }
}

/// OpenAI's bounds on `metadata`: 16 pairs, keys of 64 characters, string values of 512.
const METADATA_PAIRS: usize = 16;
const METADATA_KEY_CHARS: usize = 64;
const METADATA_VALUE_CHARS: usize = 512;
/// The caller's identifiers (`user`, `safety_identifier`, `prompt_cache_key`).
const IDENTIFIER_CHARS: usize = 512;

pub fn check(req: &ResponsesRequest, config: &ServerConfig) -> ApiResult<()> {
    if req.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(ApiError::invalid(
            "conversation",
            "`conversation` is not supported: this server keeps no conversations; send the \
             history in `input` or chain with `previous_response_id`",
        ));
    }
    if req.background == Some(true) {
        return Err(ApiError::invalid(
            "background",
            "`background: true` is not supported: responses run while the request is open; \
             stream it (`stream: true`) instead",
        ));
    }
    for (i, value) in req.include.iter().flatten().enumerate() {
        if !INCLUDABLE.contains(&value.as_str()) {
            return Err(ApiError::invalid(
                format!("include[{i}]"),
                format!(
                    "include value '{value}' is not supported (supported: {})",
                    INCLUDABLE.join(", ")
                ),
            ));
        }
    }
    match req.truncation.as_deref() {
        None | Some("auto" | "disabled") => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "truncation",
                format!("truncation must be 'auto' or 'disabled', got '{other}'"),
            ));
        }
    }
    let max_tools = config.limits.max_tools;
    if req.tools.as_ref().is_some_and(|t| t.len() > max_tools) {
        return Err(ApiError::invalid(
            "tools",
            format!("at most {max_tools} tools are allowed (--max-tools)"),
        ));
    }
    check_metadata(req.metadata.as_ref())?;
    for (param, value) in [
        ("user", &req.user),
        ("safety_identifier", &req.safety_identifier),
        ("prompt_cache_key", &req.prompt_cache_key),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.chars().count() > IDENTIFIER_CHARS)
        {
            return Err(ApiError::invalid(
                param,
                format!("{param} may be at most {IDENTIFIER_CHARS} characters"),
            ));
        }
    }
    Ok(())
}

fn check_metadata(metadata: Option<&serde_json::Map<String, Value>>) -> ApiResult<()> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    let bad = |msg: String| ApiError::invalid("metadata", msg);
    if metadata.len() > METADATA_PAIRS {
        return Err(bad(format!(
            "metadata may hold at most {METADATA_PAIRS} pairs"
        )));
    }
    for (key, value) in metadata {
        if key.chars().count() > METADATA_KEY_CHARS {
            return Err(bad(format!(
                "metadata keys may be at most {METADATA_KEY_CHARS} characters"
            )));
        }
        match value {
            Value::String(s) if s.chars().count() <= METADATA_VALUE_CHARS => {}
            _ => {
                return Err(bad(format!(
                    "metadata['{key}'] must be a string of at most {METADATA_VALUE_CHARS} characters"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(body: Value) -> Option<String> {
        let req: ResponsesRequest = serde_json::from_value(body).unwrap();
        check(&req, &ServerConfig::default())
            .err()
            .map(|e| e.param.unwrap_or_default())
    }

    #[test]
    fn each_unimplemented_field_is_refused_by_name() {
        let cases = [
            (json!({"conversation": "conv_1"}), "conversation"),
            (json!({"conversation": {"id": "conv_1"}}), "conversation"),
            (json!({"background": true}), "background"),
            (
                json!({"include": ["reasoning.encrypted_content", "file_search_call.results"]}),
                "include[1]",
            ),
            (
                json!({"include": ["web_search_call.results"]}),
                "include[0]",
            ),
            (json!({"truncation": "sometimes"}), "truncation"),
            (json!({"metadata": {"k": [1, 2, 3]}}), "metadata"),
            (json!({"metadata": {"k": "v".repeat(513)}}), "metadata"),
            (json!({"user": "u".repeat(513)}), "user"),
        ];
        for (body, param) in cases {
            assert_eq!(refusal(body.clone()).as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn neutral_values_and_working_ones_pass() {
        for body in [
            json!({}),
            json!({"conversation": null, "background": false, "top_logprobs": 0}),
            json!({"include": ["reasoning.encrypted_content"], "truncation": "auto"}),
            json!({"include": ["message.output_text.logprobs"], "top_logprobs": 3}),
            json!({"truncation": "disabled", "metadata": {"k": "v"}, "user": "u"}),
        ] {
            assert_eq!(refusal(body.clone()), None, "{body}");
        }
    }

    #[test]
    fn logprobs_are_asked_for_by_count_or_include() {
        let top = |body: Value| top_logprobs(&serde_json::from_value(body).unwrap());
        assert_eq!(top(json!({})), None);
        assert_eq!(top(json!({"top_logprobs": 0})), None);
        assert_eq!(top(json!({"top_logprobs": 3})), Some(3));
        assert_eq!(top(json!({"top_logprobs": -1})), Some(-1));
        assert_eq!(top(json!({"include": [LOGPROBS]})), Some(0));
        assert_eq!(
            top(json!({"include": [LOGPROBS], "top_logprobs": 2})),
            Some(2)
        );
    }

    #[test]
    fn the_tool_count_is_the_flag() {
        let tools: Vec<Value> = (0..3).map(|_| json!({"type": "web_search"})).collect();
        let req: ResponsesRequest = serde_json::from_value(json!({"tools": tools})).unwrap();
        let mut config = ServerConfig::default();
        config.limits.max_tools = 2;
        let err = check(&req, &config).unwrap_err();
        assert!(err.message.contains("--max-tools"), "{}", err.message);
    }
}
