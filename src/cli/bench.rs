//! `tealight bench`: load-test any OpenAI endpoint the way `vllm bench serve` does.
//! Flags keep vLLM's names (and aliases for its `--random-*` ones) so command lines carry over.

use crate::bench::arrivals::RequestRate;
use crate::bench::driver::{Options, run as run_bench};
use crate::bench::request::EndpointKind;
use crate::error::{Error, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Server URL, with or without `/v1` (default: http://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    #[arg(long, default_value_t = 8000)]
    pub port: u16,

    /// Bearer key (also from $OPENAI_API_KEY).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Model name to send (default: the first model the server lists).
    #[arg(long)]
    pub model: Option<String>,

    /// `completions` (/v1/completions) or `chat` (/v1/chat/completions); vLLM's paths work too.
    #[arg(long, default_value = "completions", value_parser = parse_endpoint)]
    pub endpoint: EndpointKind,

    /// Tokenizer of the served model: a checkpoint directory or a tokenizer.json
    /// (default: the embedded model's).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,

    /// Prompt tokens per request.
    #[arg(long, alias = "random-input-len", default_value_t = 1024)]
    pub input_len: usize,

    /// Generated tokens per request (exact: `ignore_eos`).
    #[arg(long, alias = "random-output-len", default_value_t = 128)]
    pub output_len: usize,

    #[arg(long, default_value_t = 100)]
    pub num_prompts: usize,

    /// Most requests in flight at once (default: no limit).
    #[arg(long)]
    pub max_concurrency: Option<usize>,

    /// Requests per second, Poisson arrivals; `inf` sends all at once.
    #[arg(long, default_value = "inf")]
    pub request_rate: RequestRate,

    /// Shape of the gamma distribution of arrival gaps (1 = Poisson; lower = burstier).
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,

    /// Run once per concurrency in this list (e.g. `1,4,16`) and plot the sweep.
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    pub sweep_concurrency: Vec<usize>,

    /// Where the sweep plot goes: PREFIX.svg and PREFIX.png (default: the result file's name,
    /// else `bench-sweep`).
    #[arg(long, value_name = "PREFIX")]
    pub plot: Option<PathBuf>,

    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Requests sent one at a time before measuring.
    #[arg(long, default_value_t = 1)]
    pub num_warmups: usize,

    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,

    /// Let requests stop at end-of-sequence (output lengths are then not fixed).
    #[arg(long)]
    pub no_ignore_eos: bool,

    /// Completions: send the prompt as text rather than token ids.
    #[arg(long)]
    pub prompt_as_text: bool,

    /// Percentiles to report, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "99")]
    pub metric_percentiles: Vec<f64>,

    /// Write the results as JSON here.
    #[arg(long, value_name = "PATH")]
    pub result_file: Option<PathBuf>,

    /// Include per-request lengths, TTFTs, ITLs and errors in the result file.
    #[arg(long)]
    pub save_detailed: bool,

    /// Write the prompts (ids and text) as JSON, to run the same prompts elsewhere.
    #[arg(long, value_name = "PATH")]
    pub save_prompts: Option<PathBuf>,

    /// Only write the prompts (with --save-prompts) and stop, without contacting a server.
    #[arg(long, requires = "save_prompts")]
    pub prompts_only: bool,

    /// Seconds one request may take.
    #[arg(long, default_value_t = 3600.0)]
    pub request_timeout: f64,

    /// No progress bar.
    #[arg(long, alias = "disable-tqdm")]
    pub no_progress: bool,
}

fn parse_endpoint(value: &str) -> std::result::Result<EndpointKind, String> {
    EndpointKind::parse(value).ok_or_else(|| format!("{value:?}: expected `completions` or `chat`"))
}

impl BenchArgs {
    fn options(&self) -> Result<Options> {
        if self.num_prompts == 0 || self.input_len == 0 || self.output_len == 0 {
            return Err(Error::config(
                "--num-prompts, --input-len and --output-len must be at least 1",
            ));
        }
        if self.max_concurrency == Some(0) || self.sweep_concurrency.contains(&0) {
            return Err(Error::config("a concurrency of 0 sends nothing"));
        }
        if !(self.request_timeout > 0.0 && self.request_timeout.is_finite()) {
            return Err(Error::config("--request-timeout must be positive"));
        }
        if let Some(p) = self
            .metric_percentiles
            .iter()
            .find(|p| !(0.0..=100.0).contains(*p))
        {
            return Err(Error::config(format!(
                "--metric-percentiles: {p} is not between 0 and 100"
            )));
        }
        let levels = if self.sweep_concurrency.is_empty() {
            vec![self.max_concurrency]
        } else {
            self.sweep_concurrency.iter().map(|&c| Some(c)).collect()
        };
        let plot = self.plot.clone().or_else(|| {
            let from_result = self.result_file.as_ref().map(|p| p.with_extension(""));
            Some(from_result.unwrap_or_else(|| PathBuf::from("bench-sweep")))
        });
        Ok(Options {
            base_url: self
                .base_url
                .clone()
                .unwrap_or_else(|| format!("http://{}:{}", self.host, self.port)),
            api_key: self.api_key.clone(),
            model: self.model.clone(),
            endpoint: self.endpoint,
            tokenizer: self
                .tokenizer
                .clone()
                .unwrap_or_else(super::default_model_dir),
            input_len: self.input_len,
            output_len: self.output_len,
            num_prompts: self.num_prompts,
            request_rate: self.request_rate,
            burstiness: self.burstiness,
            concurrency_levels: levels,
            seed: self.seed,
            num_warmups: self.num_warmups,
            temperature: self.temperature,
            ignore_eos: !self.no_ignore_eos,
            prompt_as_ids: !self.prompt_as_text,
            percentiles: self.metric_percentiles.clone(),
            result_file: self.result_file.clone(),
            save_detailed: self.save_detailed,
            plot,
            save_prompts: self.save_prompts.clone(),
            prompts_only: self.prompts_only,
            request_timeout: Duration::from_secs_f64(self.request_timeout),
            progress: !self.no_progress,
        })
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let options = args.options()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run_bench(&options)).map(|_| ())
}
