//! Flags → the HTTP layer's settings. Unknown parser names and malformed lists fail at start-up.

use std::time::Duration;

use crate::api::response_store::StoreLimits;
use crate::api::state::GrammarLimits;
use crate::api::transport::TransportLimits;
use crate::api::{Limits, ServerConfig};
use crate::cli::serve::ServeArgs;
use crate::error::{Error, Result};
use crate::guided::SchemaLimits;
use crate::parsers::ToolCallFormat;

/// Sizes that must be positive, checked before anything is loaded or divided by them.
fn check_sizes(args: &ServeArgs) -> Result<()> {
    let sizes = [
        ("--block-size", Some(args.block_size)),
        ("--max-num-seqs", Some(args.max_num_seqs)),
        ("--max-num-batched-tokens", args.max_num_batched_tokens),
        ("--max-model-len", args.max_model_len),
        ("--max-n", Some(args.max_n)),
        ("--max-prompts", Some(args.max_prompts)),
        ("--max-choices", Some(args.max_choices)),
        ("--max-pooling-inputs", Some(args.max_pooling_inputs)),
        (
            "--max-request-body-bytes",
            Some(args.max_request_body_bytes.as_u64() as usize),
        ),
    ];
    for (flag, value) in sizes {
        if value == Some(0) {
            return Err(Error::config(format!("{flag} must be positive, got 0")));
        }
    }
    Ok(())
}

/// Reads and checks the API-related flags (and the sizes every part relies on). The server runs
/// Qwen3 only, so its parsers are on unless turned off: the reasoning parser
/// (`--reasoning-parser none`), tool calls (`--tool-call-parser none`; `hermes` or
/// `qwen3_coder` picks the format, which is otherwise the chat template's) and automatic tool
/// choice (`--disable-auto-tool-choice`).
pub fn server_config(args: &ServeArgs) -> Result<ServerConfig> {
    check_sizes(args)?;
    let reasoning_parser = match args.reasoning_parser.as_deref() {
        None | Some("qwen3") | Some("deepseek_r1") => true,
        Some("none") => false,
        Some(other) => {
            return Err(Error::config(format!(
                "--reasoning-parser {other}: unknown parser (available: qwen3, none)"
            )));
        }
    };
    let (tool_parser, tool_call_format) = match args.tool_call_parser.as_deref() {
        None => (true, None),
        Some("none") => (false, None),
        Some(name) => match ToolCallFormat::from_name(name) {
            Some(format) => (true, Some(format)),
            None => {
                return Err(Error::config(format!(
                    "--tool-call-parser {name}: unknown parser (available: hermes, qwen3_coder (or qwen3_xml), none)"
                )));
            }
        },
    };
    if args.enable_auto_tool_choice && !tool_parser {
        return Err(Error::config(
            "--enable-auto-tool-choice needs a tool-call parser (hermes or qwen3_coder)",
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
        tool_call_format,
        auto_tool_choice: tool_parser && !args.disable_auto_tool_choice,
        default_seed: args.seed,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        metrics_compat: args.metrics_compat,
        limits: Limits {
            sse_keep_alive: keep_alive(args.sse_keep_alive)?,
            max_tools: args.max_tools,
            max_body_bytes: usize::try_from(args.max_request_body_bytes.as_u64())
                .unwrap_or(usize::MAX),
            max_n: args.max_n,
            max_prompts: args.max_prompts,
            max_choices: args.max_choices,
            max_pooling_inputs: args.max_pooling_inputs,
            max_stop: args.max_stop,
            max_stop_token_ids: args.max_stop_token_ids,
            max_logit_bias: args.max_logit_bias,
            max_logprob_entries: args.max_logprob_entries,
            ..Limits::default()
        },
        strict_model_name: args.strict_model_name,
        response_store: StoreLimits {
            max_entries: args.response_store_max_entries,
            max_age: Duration::from_secs(args.response_store_ttl),
            max_bytes: usize::try_from(args.response_store_max_bytes.as_u64())
                .unwrap_or(usize::MAX),
        },
        prefix_cache_salt_per_key: args.prefix_cache_salt_per_key,
        allow_special_tokens_in_content: args.allow_special_tokens_in_content,
        transport: transport_limits(args)?,
        grammar: grammar_limits(args)?,
    })
}

/// `--max-schema-properties`, `--max-schema-nodes`, `--max-schema-depth` and
/// `--grammar-compile-timeout`. The depth is capped by what a request body can nest (serde's
/// parser stops at 128), the width by what a compile thread's stack is sized for.
fn grammar_limits(args: &ServeArgs) -> Result<GrammarLimits> {
    let positive = |flag: &str, n: usize, max: usize| {
        if (1..=max).contains(&n) {
            Ok(n)
        } else {
            Err(Error::config(format!(
                "{flag} must be between 1 and {max}, got {n}"
            )))
        }
    };
    let seconds = args.grammar_compile_timeout;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        return Err(Error::config(format!(
            "--grammar-compile-timeout must be between 0 and 3600 seconds, got {seconds}"
        )));
    }
    Ok(GrammarLimits {
        schema: SchemaLimits {
            max_properties: positive(
                "--max-schema-properties",
                args.max_schema_properties,
                20_000,
            )?,
            max_nodes: positive("--max-schema-nodes", args.max_schema_nodes, 10_000_000)?,
            max_depth: positive("--max-schema-depth", args.max_schema_depth, 128)?,
        },
        compile_timeout: Duration::from_secs_f64(seconds),
    })
}

/// The transport's flags: positive timeouts, a positive connection cap, and a body budget that
/// holds at least one body of the largest size accepted.
fn transport_limits(args: &ServeArgs) -> Result<TransportLimits> {
    let limits = TransportLimits {
        header_read_timeout: seconds("--header-read-timeout", args.header_read_timeout)?,
        keep_alive_timeout: seconds("--keep-alive-timeout", args.keep_alive_timeout)?,
        body_read_timeout: seconds("--body-read-timeout", args.body_read_timeout)?,
        max_connections: args.max_connections,
        max_buffered_body_bytes: usize::try_from(args.max_buffered_body_bytes.as_u64())
            .unwrap_or(usize::MAX),
    };
    if limits.max_connections == 0 {
        return Err(Error::config("--max-connections must be positive"));
    }
    if limits.max_buffered_body_bytes < 1 << 20 {
        return Err(Error::config(format!(
            "--max-buffered-body-bytes must be at least 1MiB, got {}",
            args.max_buffered_body_bytes
        )));
    }
    Ok(limits)
}

/// A timeout flag: a positive number of seconds, at most a day.
fn seconds(flag: &str, value: f64) -> Result<Duration> {
    if value.is_finite() && value > 0.0 && value <= 86_400.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(Error::config(format!(
            "{flag} must be between 0 and 86400 seconds, got {value}"
        )))
    }
}

/// `--sse-keep-alive`: a positive number of seconds.
fn keep_alive(seconds: f64) -> Result<Duration> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0 {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(Error::config(format!(
            "--sse-keep-alive must be between 0 and 3600 seconds, got {seconds}"
        )))
    }
}

/// `--allowed-origins`: a JSON list (vLLM's form, e.g. `["*"]`) or a comma-separated list.
pub fn parse_origins(value: &str) -> Result<Vec<String>> {
    let value = value.trim();
    let origins: Vec<String> = if value.starts_with('[') {
        serde_json::from_str(value).map_err(|e| {
            Error::config(format!(
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn config(flags: &[&str]) -> Result<ServerConfig> {
        let mut argv = vec!["serve"];
        argv.extend(flags);
        server_config(&Cli::try_parse_from(argv).expect("flags parse").args)
    }

    #[test]
    fn qwen3_parsers_are_on_unless_turned_off() {
        let c = config(&[]).unwrap();
        assert!(c.reasoning_parser && c.tool_parser && c.auto_tool_choice);
        assert_eq!(c.tool_call_format, None, "the chat template's");
        assert!(!c.strict_model_name);
        // vLLM's spelling still works and changes nothing.
        let c = config(&[
            "--reasoning-parser",
            "qwen3",
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "hermes",
        ])
        .unwrap();
        assert!(c.reasoning_parser && c.tool_parser && c.auto_tool_choice);
        assert_eq!(c.tool_call_format, Some(ToolCallFormat::Hermes));
        let c = config(&["--tool-call-parser", "qwen3_coder"]).unwrap();
        assert!(c.tool_parser && c.auto_tool_choice);
        assert_eq!(c.tool_call_format, Some(ToolCallFormat::Qwen3Coder));
        let c = config(&["--tool-call-parser", "qwen3_xml"]).unwrap();
        assert_eq!(c.tool_call_format, Some(ToolCallFormat::Qwen3Coder));
        assert!(config(&["--tool-call-parser", "qwen3"]).is_err());
        let c = config(&["--reasoning-parser", "none", "--tool-call-parser", "none"]).unwrap();
        assert!(!c.reasoning_parser && !c.tool_parser && !c.auto_tool_choice);
        let c = config(&["--disable-auto-tool-choice", "--strict-model-name"]).unwrap();
        assert!(c.tool_parser && !c.auto_tool_choice && c.strict_model_name);
        assert!(config(&["--tool-call-parser", "none", "--enable-auto-tool-choice"]).is_err());
        assert!(config(&["--reasoning-parser", "r2"]).is_err());
        let t = config(&[]).unwrap().transport;
        assert_eq!(t.header_read_timeout, Duration::from_secs(10));
        assert_eq!(t.keep_alive_timeout, Duration::from_secs(5));
        assert_eq!(t.max_buffered_body_bytes, 256 << 20);
        let t = config(&["--header-read-timeout", "0.5", "--max-connections", "7"])
            .unwrap()
            .transport;
        assert_eq!(t.header_read_timeout, Duration::from_millis(500));
        assert_eq!(t.max_connections, 7);
        assert!(config(&["--body-read-timeout", "0"]).is_err());
        assert!(config(&["--max-connections", "0"]).is_err());
        assert!(config(&["--max-buffered-body-bytes", "1KiB"]).is_err());
        assert!(
            Cli::try_parse_from([
                "serve",
                "--enable-auto-tool-choice",
                "--disable-auto-tool-choice"
            ])
            .is_err()
        );
    }
}
