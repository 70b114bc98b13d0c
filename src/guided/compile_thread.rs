//! Grammar compilation on a thread of its own, whose stack is sized for the largest schema the
//! bounds admit ([`super::bounds::compile_stack_bytes`]): tokio's blocking threads have 2 MiB,
//! and an overflow there aborts the whole process.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::matcher::{GuidedFactory, GuidedMatcher};
use super::spec::GuidedDecoding;
use crate::error::{Error, RequestPart, Result};

/// What one request asks compiled: its constraint, and how many choices need a matcher
/// (compiled once, then forked).
#[derive(Debug)]
pub struct CompileJob {
    pub spec: Arc<GuidedDecoding>,
    pub copies: usize,
}

/// Compiles `job` on a new thread with `stack_bytes` of stack; `guard` is dropped when the
/// thread is done (a permit, so that a compile whose caller stopped waiting still counts
/// against the concurrency bound until it ends). The receiver yields one matcher per copy.
pub fn spawn(
    factory: Arc<GuidedFactory>,
    job: CompileJob,
    stack_bytes: usize,
    guard: impl Send + 'static,
) -> Result<oneshot::Receiver<Result<Vec<GuidedMatcher>>>> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("grammar-compile".into())
        .stack_size(stack_bytes)
        .spawn(move || {
            let _guard = guard;
            let _ = tx.send(compile(&factory, &job));
        })
        .map_err(|e| Error::Internal(format!("grammar compile thread: {e}")))?;
    Ok(rx)
}

/// Compiles on the calling thread (whose stack must be large enough: see the module docs).
pub fn compile(factory: &GuidedFactory, job: &CompileJob) -> Result<Vec<GuidedMatcher>> {
    let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let first = factory.compile(&job.spec)?;
        let mut all = Vec::with_capacity(job.copies.max(1));
        for _ in 1..job.copies {
            all.push(first.fork());
        }
        all.push(first);
        Ok(all)
    }));
    compiled.unwrap_or_else(|_| {
        Err(Error::invalid(
            RequestPart::OutputConstraint,
            "the grammar engine could not compile this schema; simplify it",
        ))
    })
}
