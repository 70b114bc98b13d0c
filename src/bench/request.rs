//! The body of one benchmark request, for either endpoint. Every request asks for exactly
//! `output_len` tokens (`ignore_eos` plus `min_tokens` = `max_tokens`), streamed, with the
//! usage chunk at the end, so lengths are fixed and counts come from the server.

use super::dataset::{Prompt, chat_messages};
use serde_json::{Value, json};

/// Which OpenAI route the benchmark drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// `/v1/completions`: the prompt goes in as token ids (exact prompt length).
    Completions,
    /// `/v1/chat/completions`: the prompt is one user message, wrapped by the chat template.
    Chat,
}

impl EndpointKind {
    pub fn path(self) -> &'static str {
        match self {
            EndpointKind::Completions => "/completions",
            EndpointKind::Chat => "/chat/completions",
        }
    }

    /// Accepts `chat`, `completions`, and vLLM's paths (`/v1/chat/completions`).
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim().trim_end_matches('/');
        let v = v.strip_prefix("/v1").unwrap_or(v).trim_start_matches('/');
        match v {
            "completions" => Some(EndpointKind::Completions),
            "chat" | "chat/completions" => Some(EndpointKind::Chat),
            _ => None,
        }
    }
}

/// What every request of a run shares.
#[derive(Debug, Clone)]
pub struct RequestShape {
    pub endpoint: EndpointKind,
    pub model: String,
    pub output_len: usize,
    pub temperature: f64,
    pub ignore_eos: bool,
    /// Completions only: send the prompt as token ids rather than text.
    pub prompt_as_ids: bool,
}

impl RequestShape {
    /// The JSON body for `prompt`.
    pub fn body(&self, prompt: &Prompt) -> Value {
        let mut body = json!({
            "model": self.model,
            "max_tokens": self.output_len,
            "temperature": self.temperature,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if self.ignore_eos {
            body["ignore_eos"] = json!(true);
            body["min_tokens"] = json!(self.output_len);
        }
        match self.endpoint {
            EndpointKind::Chat => body["messages"] = chat_messages(prompt),
            EndpointKind::Completions if self.prompt_as_ids => body["prompt"] = json!(prompt.ids),
            EndpointKind::Completions => body["prompt"] = json!(prompt.text),
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_and_vllm_paths_parse() {
        assert_eq!(EndpointKind::parse("chat"), Some(EndpointKind::Chat));
        assert_eq!(
            EndpointKind::parse("/v1/chat/completions"),
            Some(EndpointKind::Chat)
        );
        assert_eq!(
            EndpointKind::parse("/v1/completions"),
            Some(EndpointKind::Completions)
        );
        assert_eq!(EndpointKind::parse("embeddings"), None);
    }

    #[test]
    fn bodies_fix_the_output_length() {
        let shape = RequestShape {
            endpoint: EndpointKind::Completions,
            model: "m".into(),
            output_len: 7,
            temperature: 0.0,
            ignore_eos: true,
            prompt_as_ids: true,
        };
        let prompt = Prompt {
            ids: vec![1, 2],
            text: "ab".into(),
        };
        let body = shape.body(&prompt);
        assert_eq!(body["prompt"], json!([1, 2]));
        assert_eq!(body["max_tokens"], json!(7));
        assert_eq!(body["min_tokens"], json!(7));
        assert_eq!(body["ignore_eos"], json!(true));
        assert_eq!(body["stream_options"]["include_usage"], json!(true));
        let chat = RequestShape {
            endpoint: EndpointKind::Chat,
            ..shape
        }
        .body(&prompt);
        assert_eq!(chat["messages"][0]["content"], json!("ab"));
        assert!(chat.get("prompt").is_none());
    }
}
