//! `tealight bench`: load-tests any OpenAI-compatible endpoint with the methodology of
//! `vllm bench serve` (random prompts of fixed length, `ignore_eos`, Poisson arrivals or a
//! concurrency cap, TTFT/TPOT/ITL/E2EL), so tealight's numbers compare directly with vLLM's
//! and with any other server measured by the same tool.
//!
//! [`crate::client`] is the HTTP client it shares with `tealight chat`.

pub mod arrivals;
pub mod dataset;
pub mod driver;
pub mod measure;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod request;
pub mod result;
pub mod runner;
pub mod spec_stats;
pub mod stats;
