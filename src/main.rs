//! `tealight`: serve Qwen3 over the OpenAI API, benchmark an endpoint, or chat with one.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tealight::cli;

#[derive(Parser)]
#[command(
    name = "tealight",
    version,
    about = "A local LLM inference server for Qwen3, speaking the OpenAI API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a model over the OpenAI API (vLLM-compatible flags).
    Serve(Box<cli::serve::ServeArgs>),
    /// Benchmark an OpenAI-compatible endpoint (`vllm bench serve` methodology).
    Bench(Box<cli::bench::BenchArgs>),
    /// Chat with an OpenAI-compatible endpoint in the terminal.
    Chat(Box<cli::chat::ChatArgs>),
    /// Checks for a GPU machine (scripts/gpu/): logits, kernels against their twins, streams.
    #[command(hide = true)]
    Debug(Box<cli::debug::DebugArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Serve(args) => args.threads,
        Command::Bench(_) | Command::Chat(_) | Command::Debug(_) => None,
    };
    cli::set_cpu_threads(threads);
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => run_serve(*args),
        Command::Bench(args) => cli::bench::run(*args),
        Command::Chat(args) => cli::chat::run(*args),
        Command::Debug(args) => cli::debug::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn run_serve(args: cli::serve::ServeArgs) -> tealight::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(tealight::server::run(args));
    // The drain has answered every request: pool work still running for abandoned requests
    // (and a model still loading when the process was told to stop) is not waited for.
    runtime.shutdown_background();
    result
}
