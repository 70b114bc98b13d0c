//! Runs one benchmark: sends the prompts on their schedule, at most `max_concurrency` at a
//! time, shows progress, and collects every outcome (failures included) in prompt order.

use super::arrivals::{RequestRate, send_times};
use super::dataset::Prompt;
use super::measure::{Outcome, measure};
use super::request::RequestShape;
use crate::client::Endpoint;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How load is applied.
#[derive(Debug, Clone)]
pub struct Load {
    pub request_rate: RequestRate,
    pub burstiness: f64,
    /// `None`: no client-side limit.
    pub max_concurrency: Option<usize>,
    pub seed: u64,
    pub request_timeout: Duration,
    pub progress: bool,
}

/// Every request's outcome, in prompt order, and the wall time of the run.
pub struct RunOutcomes {
    pub outcomes: Vec<Outcome>,
    pub duration: f64,
}

/// Sends every prompt and waits for all answers.
pub async fn run_load(
    endpoint: &Endpoint,
    shape: &RequestShape,
    prompts: &[Prompt],
    load: &Load,
) -> Result<RunOutcomes, String> {
    let times = send_times(prompts.len(), load.request_rate, load.burstiness, load.seed)?;
    let limit = load
        .max_concurrency
        .unwrap_or(Semaphore::MAX_PERMITS)
        .max(1);
    let semaphore = Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS)));
    let progress = progress_bar(prompts.len(), load.progress);
    let path = shape.endpoint.path();

    let start = Instant::now();
    let mut tasks = Vec::with_capacity(prompts.len());
    for (prompt, at) in prompts.iter().zip(times) {
        let due = start + Duration::from_secs_f64(at);
        tokio::time::sleep_until(due.into()).await;
        // Waiting for a slot happens after the arrival time, as in vLLM: a request that
        // arrives while all slots are busy queues at the client.
        let permit = Arc::clone(&semaphore)
            .acquire_owned()
            .await
            .map_err(|e| format!("concurrency limiter closed: {e}"))?;
        let endpoint = endpoint.clone();
        let body = shape.body(prompt);
        let expected = shape.ignore_eos.then_some(shape.output_len);
        let timeout = load.request_timeout;
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = measure(&endpoint, path, &body, expected, timeout).await;
            drop(permit);
            progress.inc(1);
            outcome
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        let outcome = task.await.unwrap_or_else(|e| Outcome {
            error: Some(super::measure::Failure {
                kind: "client".into(),
                message: format!("request task failed: {e}"),
            }),
            ..Outcome::default()
        });
        outcomes.push(outcome);
    }
    let duration = start.elapsed().as_secs_f64();
    progress.finish_and_clear();
    Ok(RunOutcomes { outcomes, duration })
}

fn progress_bar(len: usize, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    // Drawn on stderr and only on a terminal (indicatif hides it otherwise), so piped stdout
    // stays a clean report.
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {pos}/{len} requests [{elapsed_precise}<{eta_precise}]",
    ) {
        bar.set_style(style);
    }
    bar
}
