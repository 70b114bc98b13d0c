//! A whole `tealight bench` invocation: resolve the model, make the prompts, warm up, run
//! each concurrency level, print the reports, and write the result file and sweep plot.

use super::arrivals::RequestRate;
use super::dataset::{PromptTokenizer, save_prompts};
use super::measure::measure;
use super::metrics::compute;
use super::plot::write_sweep_plot;
use super::report::render;
use super::request::{EndpointKind, RequestShape};
use super::result::{BenchResult, RunConfig};
use super::runner::{Load, run_load};
use super::spec_stats::SpecCounters;
use crate::client::Endpoint;
use crate::error::{Error, Result};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a benchmark needs, already validated by the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: Option<String>,
    pub endpoint: EndpointKind,
    pub tokenizer: PathBuf,
    pub input_len: usize,
    pub output_len: usize,
    pub num_prompts: usize,
    pub request_rate: RequestRate,
    pub burstiness: f64,
    /// One run per entry; `None` = no client-side cap.
    pub concurrency_levels: Vec<Option<usize>>,
    pub seed: u64,
    pub num_warmups: usize,
    pub temperature: f64,
    pub ignore_eos: bool,
    pub prompt_as_ids: bool,
    pub percentiles: Vec<f64>,
    pub result_file: Option<PathBuf>,
    pub save_detailed: bool,
    /// Where the sweep plot goes (`.svg` and `.png` are added); only with several levels.
    pub plot: Option<PathBuf>,
    pub save_prompts: Option<PathBuf>,
    /// Only make (and save) the prompts; contact no server.
    pub prompts_only: bool,
    pub request_timeout: Duration,
    pub progress: bool,
}

/// Runs the benchmark; returns the results of each level.
pub async fn run(opts: &Options) -> Result<Vec<BenchResult>> {
    let tokenizer = PromptTokenizer::load(&opts.tokenizer)?;
    let overhead = match opts.endpoint {
        EndpointKind::Chat => tokenizer.chat_overhead()?,
        EndpointKind::Completions => None,
    };
    // A chat prompt is wrapped by the template: shorten the text so the server sees about
    // `input_len` prompt tokens in all.
    let text_len = opts.input_len.saturating_sub(overhead.unwrap_or(0)).max(1);
    // Every level gets prompts of its own and the warm-up one more: a server with prefix
    // caching would otherwise answer repeated prompts from its cache and flatter every level
    // after the first (and the first request of each). The draw is sequential, so the first
    // `num_prompts` are the same whatever the number of levels.
    let levels = opts.concurrency_levels.len().max(1);
    let n = opts.num_prompts;
    let all = tokenizer.random_prompts(n * levels + 1, text_len, opts.seed)?;
    let (level_prompts, warm_up_prompt) = all.split_at(n * levels);
    let prompts = &level_prompts[..n];
    if let Some(path) = &opts.save_prompts {
        save_prompts(path, prompts)?;
        eprintln!("Wrote {} prompts to {}", prompts.len(), path.display());
    }
    if opts.prompts_only {
        return Ok(Vec::new());
    }
    let client = |e: crate::client::ClientError| Error::Unavailable(e.to_string());
    let endpoint = Endpoint::new(&opts.base_url, opts.api_key.clone()).map_err(client)?;
    let model = match &opts.model {
        Some(model) => model.clone(),
        None => endpoint.first_model().await.map_err(client)?,
    };
    let shape = RequestShape {
        endpoint: opts.endpoint,
        model: model.clone(),
        output_len: opts.output_len,
        temperature: opts.temperature,
        ignore_eos: opts.ignore_eos,
        prompt_as_ids: opts.prompt_as_ids,
    };
    eprintln!(
        "Benchmarking {model} at {} ({}): {} prompts, {} input / {} output tokens{}",
        endpoint.url(opts.endpoint.path()),
        opts.endpoint.path(),
        prompts.len(),
        opts.input_len,
        opts.output_len,
        overhead.map_or(String::new(), |o| format!(
            " ({text_len} of text + {o} of chat template)"
        )),
    );
    warm_up(&endpoint, &shape, warm_up_prompt, opts).await?;

    let mut results = Vec::with_capacity(opts.concurrency_levels.len());
    for (i, &max_concurrency) in opts.concurrency_levels.iter().enumerate() {
        let load = Load {
            request_rate: opts.request_rate,
            burstiness: opts.burstiness,
            max_concurrency,
            seed: opts.seed.wrapping_add(i as u64),
            request_timeout: opts.request_timeout,
            progress: opts.progress,
        };
        let date = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
        let prompts = &level_prompts[i * n..(i + 1) * n];
        let client_lens: Vec<usize> = prompts
            .iter()
            .map(|p| p.ids.len() + overhead.unwrap_or(0))
            .collect();
        let counters = spec_counters(&endpoint).await;
        let run = run_load(&endpoint, &shape, prompts, &load)
            .await
            .map_err(Error::config)?;
        let spec = match (counters, spec_counters(&endpoint).await) {
            (Some(before), Some(after)) => before.until(&after),
            _ => None,
        };
        let metrics = compute(&run.outcomes, &client_lens, run.duration, &opts.percentiles);
        let result = BenchResult {
            config: RunConfig {
                base_url: endpoint.base_url().to_owned(),
                endpoint: opts.endpoint,
                model: model.clone(),
                tokenizer: tokenizer.source.display().to_string(),
                input_len: opts.input_len,
                output_len: opts.output_len,
                num_prompts: prompts.len(),
                request_rate: opts.request_rate,
                burstiness: opts.burstiness,
                max_concurrency,
                seed: opts.seed,
                template_overhead: overhead,
            },
            metrics,
            date,
            spec,
        };
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "{}", render(&result));
        let _ = stdout.flush();
        results.push(result);
    }
    save(opts, &results)?;
    Ok(results)
}

/// The server's speculative decoding counters, if it exposes them.
async fn spec_counters(endpoint: &Endpoint) -> Option<SpecCounters> {
    let page = endpoint.server_metrics().await.ok()?;
    SpecCounters::parse(&page)
}

/// Sends `num_warmups` requests one at a time before measuring. The first failure ends the
/// benchmark with its message: a misconfigured endpoint should not produce a report of
/// nothing but failures.
async fn warm_up(
    endpoint: &Endpoint,
    shape: &RequestShape,
    prompts: &[super::dataset::Prompt],
    opts: &Options,
) -> Result<()> {
    let Some(prompt) = prompts.first() else {
        return Ok(());
    };
    let body = shape.body(prompt);
    let expected = shape.ignore_eos.then_some(shape.output_len);
    for _ in 0..opts.num_warmups {
        let outcome = measure(
            endpoint,
            shape.endpoint.path(),
            &body,
            expected,
            opts.request_timeout,
        )
        .await;
        if let Some(failure) = outcome.error {
            return Err(Error::Unavailable(format!(
                "warm-up request failed ({}): {}",
                failure.kind, failure.message
            )));
        }
    }
    Ok(())
}

fn save(opts: &Options, results: &[BenchResult]) -> Result<()> {
    let sweep = results.len() > 1;
    if let Some(path) = &opts.result_file {
        let body = if sweep {
            json!({
                "sweep_concurrency": results.iter().map(|r| r.config.max_concurrency).collect::<Vec<_>>(),
                "runs": results.iter().map(|r| r.to_json(opts.save_detailed)).collect::<Vec<Value>>(),
            })
        } else {
            results
                .first()
                .map_or(Value::Null, |r| r.to_json(opts.save_detailed))
        };
        let text = serde_json::to_string_pretty(&body)
            .map_err(|e| Error::Internal(format!("result to JSON: {e}")))?;
        std::fs::write(path, text).map_err(|e| Error::checkpoint(path, e.to_string()))?;
        eprintln!("Wrote {}", path.display());
    }
    if sweep && let Some(prefix) = &opts.plot {
        let files = write_sweep_plot(prefix, results).map_err(Error::Internal)?;
        for file in files {
            eprintln!("Wrote {}", file.display());
        }
    }
    Ok(())
}
