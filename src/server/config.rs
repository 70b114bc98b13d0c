//! Flags → the HTTP layer's settings. Unknown parser names and malformed lists fail at start-up.

use std::time::Duration;

use crate::api::{Limits, ServerConfig};
use crate::cli::serve::ServeArgs;
use crate::error::{Error, Result};

/// Reads and checks the API-related flags.
pub fn server_config(args: &ServeArgs) -> Result<ServerConfig> {
    let reasoning_parser = match args.reasoning_parser.as_deref() {
        None => false,
        Some("qwen3") | Some("deepseek_r1") => true,
        Some(other) => {
            return Err(Error::invalid_request(format!(
                "--reasoning-parser {other}: unknown parser (available: qwen3)"
            )));
        }
    };
    let tool_parser = match args.tool_call_parser.as_deref() {
        None => false,
        Some("hermes") => true,
        Some(other) => {
            return Err(Error::invalid_request(format!(
                "--tool-call-parser {other}: unknown parser (available: hermes)"
            )));
        }
    };
    if args.enable_auto_tool_choice && !tool_parser {
        return Err(Error::invalid_request(
            "--enable-auto-tool-choice needs --tool-call-parser (e.g. hermes)",
        ));
    }
    Ok(ServerConfig {
        api_key: args.api_key(),
        allowed_origins: args
            .allowed_origins
            .as_deref()
            .map(parse_origins)
            .transpose()?,
        log_requests: !args.disable_log_requests,
        reasoning_parser,
        tool_parser,
        auto_tool_choice: args.enable_auto_tool_choice,
        default_seed: args.seed,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        limits: Limits::default(),
    })
}

/// `--allowed-origins`: a JSON list (vLLM's form, e.g. `["*"]`) or a comma-separated list.
pub fn parse_origins(value: &str) -> Result<Vec<String>> {
    let value = value.trim();
    let origins: Vec<String> = if value.starts_with('[') {
        serde_json::from_str(value).map_err(|e| {
            Error::invalid_request(format!(
                "--allowed-origins: not a JSON list of strings: {e}"
            ))
        })?
    } else {
        value
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    Ok(origins)
}
