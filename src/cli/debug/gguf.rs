//! `tealight debug gguf`: a checkpoint directory written as one GGUF file, with the tensor
//! types of a plan (`f16`, `q8_0`, `q4_k_m`, …). The fixture scripts and the CPU comparison
//! make their GGUF files with it.

use crate::error::{Error, Result};
use crate::weights::gguf::{TypePlan, write_gguf};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct GgufArgs {
    /// Checkpoint directory (safetensors, config.json, tokenizer files).
    #[arg(long)]
    pub model: PathBuf,
    /// The GGUF file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// f32 | f16 | bf16 | q8_0 | q4_k | q5_k | q6_k | q4_k_m
    #[arg(long = "type", default_value = "f16")]
    pub plan: String,
}

pub fn run(args: GgufArgs) -> Result<()> {
    let plan = TypePlan::parse(&args.plan).ok_or_else(|| {
        Error::config(format!(
            "unknown --type {:?} (f32, f16, bf16, q8_0, q4_k, q5_k, q6_k, q4_k_m)",
            args.plan
        ))
    })?;
    // The embedded model's weights are made on first use, here as in every loader.
    let model = crate::weights::embedded::ensure_weights(&args.model)?;
    write_gguf(&model, &args.out, plan)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
