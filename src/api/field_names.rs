//! What each API calls the parts of a request the engine and the shared pipeline refuse. The
//! engine speaks of [`RequestPart`]s; one table per dialect turns a part into the field the
//! client sent, so a Responses client told about its prompt reads `input`, a chat client
//! `messages`, a completions client `prompt`.

use super::error::{ApiError, ApiResult};
use crate::error::{Error, RequestPart, Result};

/// One API's field names for the request parts whose names differ between APIs; every other
/// part has the same name everywhere ([`RequestPart::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldNames {
    /// The conversation or prompt.
    pub prompt: &'static str,
    /// The output limit.
    pub output_limit: &'static str,
    /// How many alternatives a token's logprobs list.
    pub logprobs: &'static str,
    /// The response format.
    pub format: &'static str,
    /// A tool's schema inside `tools[i]`.
    pub tool_schema: &'static str,
}

impl FieldNames {
    /// Chat completions (`max_completion_tokens` where the client sent it:
    /// [`Self::with_output_limit`]).
    pub const CHAT: Self = Self {
        prompt: "messages",
        output_limit: "max_tokens",
        logprobs: "top_logprobs",
        format: "response_format",
        tool_schema: "function.parameters",
    };
    /// Legacy completions: the engine's own names.
    pub const COMPLETIONS: Self = Self {
        prompt: "prompt",
        output_limit: "max_tokens",
        logprobs: "logprobs",
        format: "response_format",
        tool_schema: "function.parameters",
    };
    pub const RESPONSES: Self = Self {
        prompt: "input",
        output_limit: "max_output_tokens",
        logprobs: "top_logprobs",
        format: "text.format",
        tool_schema: "parameters",
    };
    /// `/v1/embeddings`.
    pub const EMBEDDINGS: Self = Self {
        prompt: "input",
        ..Self::COMPLETIONS
    };
    /// Anthropic's Messages API (it has no logprobs; the name is never used).
    pub const MESSAGES: Self = Self {
        prompt: "messages",
        output_limit: "max_tokens",
        logprobs: "top_logprobs",
        format: "output_config.format",
        tool_schema: "input_schema",
    };

    /// These names, with the output limit under another field (chat's `max_completion_tokens`).
    pub const fn with_output_limit(self, output_limit: &'static str) -> Self {
        Self {
            output_limit,
            ..self
        }
    }

    /// The field `part` is in, for this API.
    pub fn name(&self, part: RequestPart) -> &'static str {
        match part {
            RequestPart::Prompt => self.prompt,
            RequestPart::OutputLimit => self.output_limit,
            RequestPart::Logprobs => self.logprobs,
            RequestPart::OutputConstraint => self.format,
            other => other.name(),
        }
    }
}

/// An engine result seen through one API's field names (see [`ApiError::from_engine`]).
pub trait Named<T> {
    fn named(self, names: &FieldNames) -> ApiResult<T>;
}

impl<T> Named<T> for Result<T> {
    fn named(self, names: &FieldNames) -> ApiResult<T> {
        self.map_err(|e: Error| ApiError::from_engine(e, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_names_the_parts_its_own_way() {
        let prompt = |names: FieldNames| names.name(RequestPart::Prompt);
        assert_eq!(prompt(FieldNames::CHAT), "messages");
        assert_eq!(prompt(FieldNames::COMPLETIONS), "prompt");
        assert_eq!(prompt(FieldNames::RESPONSES), "input");
        let limit = |names: FieldNames| names.name(RequestPart::OutputLimit);
        assert_eq!(limit(FieldNames::RESPONSES), "max_output_tokens");
        assert_eq!(
            limit(FieldNames::CHAT.with_output_limit("max_completion_tokens")),
            "max_completion_tokens"
        );
        assert_eq!(FieldNames::CHAT.name(RequestPart::Logprobs), "top_logprobs");
        assert_eq!(FieldNames::RESPONSES.name(RequestPart::TopP), "top_p");
    }

    #[test]
    fn an_out_of_range_value_is_told_under_the_clients_field() {
        let err = Error::out_of_range(RequestPart::OutputLimit, "must be at least 1, got 0.");
        let api = ApiError::from_engine(err, &FieldNames::RESPONSES);
        assert_eq!(api.param.as_deref(), Some("max_output_tokens"));
        assert_eq!(api.message, "max_output_tokens must be at least 1, got 0.");
    }

    #[test]
    fn the_engine_default_names_are_the_completions_api_names() {
        for part in [
            RequestPart::Prompt,
            RequestPart::OutputLimit,
            RequestPart::Logprobs,
            RequestPart::OutputConstraint,
            RequestPart::StopTokenIds,
        ] {
            assert_eq!(FieldNames::COMPLETIONS.name(part), part.name());
        }
    }
}
