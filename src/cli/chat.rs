//! `tealight chat`: a multi-turn streaming chat in the terminal against any OpenAI endpoint.

use crate::error::{Error, Result};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ChatArgs {}

pub fn run(_args: ChatArgs) -> Result<()> {
    Err(Error::Internal("`tealight chat` is not built yet".into()))
}
