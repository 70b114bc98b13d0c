//! The model's chat template: messages → prompt text, byte-identical to transformers'
//! `tokenizer.apply_chat_template(messages, tools=..., add_generation_prompt=...,
//! tokenize=False, **kwargs)`.
//!
//! The template is the model's own Jinja source (from `tokenizer_config.json` or
//! `chat_template.jinja`, or replaced by `--chat-template`), never a hard-coded format: the
//! model was trained on exactly what its template produces, and clients compare prompts and
//! token counts with vLLM's, which renders the same source.

use std::path::Path;

use serde_json::{Map, Value};

use super::jinja;
use super::messages::{parse_call_arguments, template_messages};
use crate::error::{Error, RequestPart, Result};
use crate::parsers::ToolCallFormat;

/// The named special tokens transformers passes to every template (`special_tokens_map`).
const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// Appended to the final message by transformers for `continue_final_message`, to find where
/// that message ends in the rendered prompt.
const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// Name of the template used when a model has only one.
const DEFAULT_NAME: &str = "default";
/// Name of the template transformers prefers when tools are given, if the model has it.
const TOOL_USE_NAME: &str = "tool_use";

/// A compiled chat template plus the special-token strings it is rendered with.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    /// `(name, source)` of every template; a model usually has just `default`.
    sources: Vec<(String, String)>,
    /// `bos_token`, `eos_token`, ... as strings; absent when the config has them as null.
    special_tokens: Map<String, Value>,
    /// The tool-call format the templates teach.
    tool_format: ToolCallFormat,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sources.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ChatTemplate")
            .field("templates", &names)
            .field("special_tokens", &self.special_tokens)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles a template source; `special_tokens` are the variables such as `eos_token`
    /// (see [`special_tokens_from_config`]).
    pub fn new(source: impl Into<String>, special_tokens: Map<String, Value>) -> Result<Self> {
        Self::from_named(
            vec![(DEFAULT_NAME.to_owned(), source.into())],
            special_tokens,
        )
        .map_err(Error::Template)
    }

    /// Named template sources (`default`, `tool_use`, …), as a model file lists them.
    pub fn from_sources(
        sources: Vec<(String, String)>,
        special_tokens: Map<String, Value>,
    ) -> Result<Self> {
        Self::from_named(sources, special_tokens).map_err(Error::Template)
    }

    /// The template and special tokens of a `tokenizer_config.json`. Its `chat_template` may
    /// be a string or a list of `{"name", "template"}` (models with a separate tool-use
    /// template). Errors name the file.
    pub fn from_tokenizer_config(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let config = read_json(path)?;
        let special_tokens = special_tokens_from_config(&config);
        let sources = match config.get("chat_template") {
            Some(Value::String(source)) => vec![(DEFAULT_NAME.to_owned(), source.clone())],
            Some(Value::Array(entries)) => named_sources(entries).ok_or_else(|| {
                Error::checkpoint(
                    path,
                    "chat_template list entries need a string name and template",
                )
            })?,
            Some(_) => {
                return Err(Error::checkpoint(
                    path,
                    "chat_template must be a string or a list",
                ));
            }
            None => return Err(Error::checkpoint(path, "has no chat_template")),
        };
        Self::from_named(sources, special_tokens)
            .map_err(|e| Error::checkpoint(path, format!("chat template: {e}")))
    }

    /// The template of a model directory the way transformers finds it: `chat_template.jinja`
    /// if present (it takes priority), else `tokenizer_config.json`'s `chat_template`. Special
    /// tokens come from `tokenizer_config.json`.
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join("tokenizer_config.json");
        let jinja_path = dir.join("chat_template.jinja");
        if !jinja_path.is_file() {
            return Self::from_tokenizer_config(&config_path);
        }
        let special_tokens = if config_path.is_file() {
            special_tokens_from_config(&read_json(&config_path)?)
        } else {
            Map::new()
        };
        let source = std::fs::read_to_string(&jinja_path)
            .map_err(|e| Error::checkpoint(&jinja_path, e.to_string()))?;
        Self::from_named(vec![(DEFAULT_NAME.to_owned(), source)], special_tokens)
            .map_err(|e| Error::checkpoint(&jinja_path, format!("chat template: {e}")))
    }

    /// The value of a `--chat-template` flag, as vLLM reads it: a path to a template file, or
    /// else the template itself. A value that is neither an existing file nor looks like a
    /// template (no `{{` or `{%`) is reported as a missing file, since that is the likely typo.
    pub fn from_flag(value: &str, special_tokens: Map<String, Value>) -> Result<Self> {
        let path = Path::new(value);
        if path.is_file() {
            let source = std::fs::read_to_string(path)
                .map_err(|e| Error::checkpoint(path, e.to_string()))?;
            return Self::from_named(vec![(DEFAULT_NAME.to_owned(), source)], special_tokens)
                .map_err(|e| Error::checkpoint(path, format!("chat template: {e}")));
        }
        if value.contains("{{") || value.contains("{%") {
            return Self::new(value, special_tokens);
        }
        Err(Error::checkpoint(
            path,
            "chat template file not found (and the value is not a Jinja template)",
        ))
    }

    fn from_named(
        sources: Vec<(String, String)>,
        special_tokens: Map<String, Value>,
    ) -> std::result::Result<Self, String> {
        let mut env = jinja::environment();
        for (name, source) in &sources {
            env.add_template_owned(name.clone(), source.clone())
                .map_err(|e| format!("template {name:?} does not compile: {e}"))?;
        }
        let tool_format = ToolCallFormat::of_template(sources.iter().map(|(_, s)| s.as_str()));
        Ok(Self {
            env,
            sources,
            special_tokens,
            tool_format,
        })
    }

    /// The special-token variables templates see (`eos_token`, ...).
    pub fn special_tokens(&self) -> &Map<String, Value> {
        &self.special_tokens
    }

    /// The source of the template used without tools.
    pub fn source(&self) -> &str {
        self.pick(false).1
    }

    /// The tool-call format this template teaches its model (any of its named templates).
    pub fn tool_call_format(&self) -> ToolCallFormat {
        self.tool_format
    }

    /// Renders a conversation to the prompt text.
    ///
    /// `messages` are JSON objects as the client sent them, after [`super::prepare_messages`]
    /// (templates read arbitrary fields: `reasoning_content`, `tool_calls`, `tool_call_id`).
    /// `tools` are OpenAI tool definitions, passed as `tools` (`None` renders as Python `None`).
    /// `extra` are `chat_template_kwargs` such as `enable_thinking`; they are template
    /// variables and override the special tokens, but not `messages`, `tools`,
    /// `add_generation_prompt` or `documents`.
    ///
    /// Errors: an empty conversation or a message that is not an object is an
    /// `InvalidRequest`; a failure inside the template (including its `raise_exception`) is a
    /// `Template` error, caused by the request's messages.
    pub fn render(
        &self,
        messages: &[Value],
        tools: Option<&[Value]>,
        add_generation_prompt: bool,
        extra: &Map<String, Value>,
    ) -> Result<String> {
        let chat = template_messages(non_empty(messages)?)?;
        self.render_chat(chat, tools, add_generation_prompt, extra)
    }

    /// Renders a conversation whose final message is left open for the model to continue (an
    /// assistant prefill), like transformers' `continue_final_message=True`: the prompt ends
    /// right after that message's content, without its end-of-turn marker. No generation
    /// prompt is added.
    pub fn render_continue_final_message(
        &self,
        messages: &[Value],
        tools: Option<&[Value]>,
        extra: &Map<String, Value>,
    ) -> Result<String> {
        let mut chat = template_messages(non_empty(messages)?)?;
        let final_content = chat
            .last_mut()
            .and_then(Value::as_object_mut)
            .and_then(|m| m.get_mut("content"))
            .and_then(|c| match c {
                Value::String(s) => {
                    let original = s.clone();
                    s.push_str(CONTINUE_TAG);
                    Some(original)
                }
                _ => None,
            })
            .ok_or_else(|| {
                Error::invalid(
                    RequestPart::Prompt,
                    "continue_final_message needs a final message with text content",
                )
            })?;
        if !self.pick(tools.is_some()).1.contains("content") {
            return Err(Error::Template(
                "continue_final_message: the chat template does not read message content".into(),
            ));
        }
        let rendered = self.render_chat(chat, tools, false, extra)?;

        // Cut the prompt where the tag starts. If the template kept the tag's trailing space,
        // the message's own trailing whitespace is intact; otherwise the template trimmed the
        // message and so must we.
        let tag = CONTINUE_TAG.trim_end();
        let final_text = final_content.trim_matches(jinja::is_python_space);
        let found = rendered.contains(final_text) && rendered.contains(tag);
        let Some(at) = rendered.rfind(tag).filter(|_| found) else {
            return Err(Error::Template(
                "continue_final_message: the final message does not appear in the rendered prompt"
                    .into(),
            ));
        };
        let head = &rendered[..at];
        if rendered[at..].starts_with(CONTINUE_TAG) {
            Ok(head.to_owned())
        } else {
            Ok(head.trim_end_matches(jinja::is_python_space).to_owned())
        }
    }

    fn render_chat(
        &self,
        mut chat: Vec<Value>,
        tools: Option<&[Value]>,
        add_generation_prompt: bool,
        extra: &Map<String, Value>,
    ) -> Result<String> {
        // Qwen3-Coder's template iterates a call's arguments as a mapping and fails on the
        // string OpenAI clients send; Qwen3's renders the string as sent (as transformers
        // passes it), so only the Coder template gets them parsed.
        if self.tool_call_format() == ToolCallFormat::Qwen3Coder {
            parse_call_arguments(&mut chat);
        }
        let mut ctx = self.special_tokens.clone();
        for (key, value) in extra {
            ctx.insert(key.clone(), value.clone());
        }
        ctx.insert("messages".into(), Value::Array(chat));
        ctx.insert(
            "tools".into(),
            tools.map_or(Value::Null, |t| Value::Array(t.to_vec())),
        );
        ctx.insert("documents".into(), Value::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            Value::Bool(add_generation_prompt),
        );

        let (name, _) = self.pick(tools.is_some());
        let template = self
            .env
            .get_template(name)
            .map_err(|e| Error::Internal(format!("chat template {name:?} missing: {e}")))?;
        template
            .render(minijinja::Value::from(minijinja::value::Serde(&ctx)))
            .map_err(|e| Error::Template(describe(&e)))
    }

    /// transformers' choice among several templates: `tool_use` when tools are given and it
    /// exists, else `default`, else the only one there is.
    fn pick(&self, with_tools: bool) -> (&str, &str) {
        let find = |wanted: &str| self.sources.iter().find(|(n, _)| n == wanted);
        let chosen = with_tools
            .then(|| find(TOOL_USE_NAME))
            .flatten()
            .or_else(|| find(DEFAULT_NAME))
            .or(self.sources.first());
        chosen.map_or(("", ""), |(n, s)| (n.as_str(), s.as_str()))
    }
}

/// The named special tokens of a `tokenizer_config.json` as template variables. Each may be
/// a string, an `AddedToken` object with `content`, or null (then it is left undefined, as
/// transformers leaves it out of `special_tokens_map`).
pub fn special_tokens_from_config(config: &Value) -> Map<String, Value> {
    SPECIAL_TOKEN_NAMES
        .iter()
        .filter_map(|&name| {
            let token = match config.get(name)? {
                Value::String(s) => s.clone(),
                Value::Object(o) => o.get("content")?.as_str()?.to_owned(),
                _ => return None,
            };
            Some((name.to_owned(), Value::String(token)))
        })
        .collect()
}

fn named_sources(entries: &[Value]) -> Option<Vec<(String, String)>> {
    entries
        .iter()
        .map(|e| {
            let name = e.get("name")?.as_str()?.to_owned();
            let source = e.get("template")?.as_str()?.to_owned();
            Some((name, source))
        })
        .collect()
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::checkpoint(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| Error::checkpoint(path, format!("invalid JSON: {e}")))
}

fn non_empty(messages: &[Value]) -> Result<&[Value]> {
    if messages.is_empty() {
        return Err(Error::invalid(
            RequestPart::Prompt,
            "the conversation has no messages",
        ));
    }
    Ok(messages)
}

/// A one-line description of a render error: what went wrong and where in the template.
fn describe(err: &minijinja::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
