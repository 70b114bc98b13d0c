//! The chat loop: read a line, act on commands, otherwise send the conversation and stream the
//! answer, then show its usage. The conversation survives failed turns and stopped answers.

use super::answer::{Answer, stream_answer};
use super::command::Command;
use super::history::History;
use super::input::{InputEvent, LineInput};
use super::style::Style;
use crate::client::{ClientError, Endpoint};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};

/// How the chat talks to the server.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: Option<String>,
    pub system: Option<String>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
}

const PROMPT: &str = ">>> ";

/// Runs the chat until `exit`, Ctrl-D or the end of input.
pub async fn run(opts: ChatOptions) -> Result<(), ClientError> {
    let endpoint = Endpoint::new(&opts.base_url, opts.api_key.clone())?;
    let model = resolve_model(&endpoint, opts.model.clone()).await?;
    let input = LineInput::start();
    let style = Style {
        terminal: std::io::stdout().is_terminal(),
    };
    eprintln!(
        "Chatting with {model} at {}. `clear` starts over, `exit` or Ctrl-D leaves, Ctrl-C stops an answer.",
        endpoint.base_url()
    );
    let mut history = History::new(opts.system.clone());
    loop {
        let event = tokio::select! {
            event = input.read(PROMPT) => event,
            // Piped input has no raw mode to turn Ctrl-C into a key: take it as "leave".
            _ = tokio::signal::ctrl_c(), if !input.is_terminal() => InputEvent::Eof,
        };
        let line = match event {
            InputEvent::Line(line) => line,
            InputEvent::Interrupted => continue,
            InputEvent::Eof => break,
        };
        match Command::parse(&line) {
            Command::Empty => continue,
            Command::Exit => break,
            Command::Clear => {
                history.clear();
                say(&style.dim("(conversation cleared)"));
            }
            Command::Send(text) => {
                history.push_user(&text);
                let body = request_body(&model, &history, &opts);
                let mut stdout = std::io::stdout();
                let interrupt = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                match stream_answer(&endpoint, &body, &mut stdout, style, interrupt).await {
                    Ok(answer) => record(&mut history, &answer, style),
                    Err(e) => {
                        history.pop_user();
                        eprintln!("error: {e}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// `--model`, else the first model the server lists. Either way the server is asked once at
/// the start, so a wrong address or key is reported before anything is typed.
async fn resolve_model(endpoint: &Endpoint, model: Option<String>) -> Result<String, ClientError> {
    match (endpoint.models().await, model) {
        (Ok(_), Some(model)) => Ok(model),
        (Ok(models), None) => models.into_iter().next().ok_or_else(|| {
            ClientError::Protocol("the server lists no models; pass --model".into())
        }),
        (Err(e @ (ClientError::Unreachable { .. } | ClientError::Unauthorized { .. })), _) => {
            Err(e)
        }
        // A server without /v1/models can still chat if the model is named.
        (Err(_), Some(model)) => Ok(model),
        (Err(e), None) => Err(e),
    }
}

fn request_body(model: &str, history: &History, opts: &ChatOptions) -> Value {
    let mut body = json!({
        "model": model,
        "messages": history.messages(),
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(n) = opts.max_tokens {
        body["max_tokens"] = json!(n);
    }
    if let Some(t) = opts.temperature {
        body["temperature"] = json!(t);
    }
    body
}

/// Keeps the answer (without its reasoning) and shows the usage line. A stopped answer keeps
/// what was shown; one stopped before any text takes the question back too.
fn record(history: &mut History, answer: &Answer, style: Style) {
    if answer.content.is_empty() && answer.interrupted {
        history.pop_user();
    } else {
        history.push_assistant(&answer.content);
    }
    say(&style.dim(&answer.usage_line()));
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
