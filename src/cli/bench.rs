//! `tealight bench`: load-test any OpenAI endpoint the way `vllm bench serve` does.

use crate::error::{Error, Result};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> Result<()> {
    Err(Error::Internal("`tealight bench` is not built yet".into()))
}
