//! `tealight chat`: a multi-turn streaming chat in the terminal against any OpenAI endpoint.

use crate::chat::{ChatOptions, run as run_chat};
use crate::error::{Error, Result};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Server URL, with or without `/v1`.
    #[arg(long, default_value = "http://localhost:8000/v1", value_name = "URL")]
    pub base_url: String,

    /// Bearer key (also from $OPENAI_API_KEY).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Model name to send (default: the first model the server lists).
    #[arg(long)]
    pub model: Option<String>,

    /// System prompt, kept when the conversation is cleared.
    #[arg(long)]
    pub system: Option<String>,

    #[arg(long)]
    pub max_tokens: Option<u64>,

    #[arg(long)]
    pub temperature: Option<f64>,
}

pub fn run(args: ChatArgs) -> Result<()> {
    let options = ChatOptions {
        base_url: args.base_url,
        api_key: args.api_key,
        model: args.model,
        system: args.system,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime
        .block_on(run_chat(options))
        .map_err(|e| Error::Unavailable(e.to_string()))
}
