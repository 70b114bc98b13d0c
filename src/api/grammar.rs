//! Structured outputs from the API's side: a request's schemas are bounded before anything
//! compiles them, and its grammar compiles once (each of the `n` choices gets a fork) on a
//! thread of its own, in the heavy lane of the pool ([`blocking_pool::heavy_permit`]), within a time
//! budget. Every failure is the client's: a 400 naming the field and the flag to change.

use std::sync::Arc;

use serde_json::Value;

use super::blocking_pool;
use super::error::{ApiError, ApiResult};
use super::state::{GrammarLimits, Ready};
use crate::guided::compile_thread;
use crate::guided::{CompileJob, GuidedDecoding, GuidedMatcher, SchemaBudget, compile_stack_bytes};

/// Checks one schema of the request against `budget` (shared by all of a request's schemas);
/// `param` names the field it came from.
pub fn check_schema(budget: &mut SchemaBudget<'_>, schema: &Value, param: &str) -> ApiResult<()> {
    budget
        .check(schema)
        .map_err(|e| ApiError::invalid(param, format!("{param}: {e}")))
}

/// A request's constraint and the field its errors name.
#[derive(Debug, Clone)]
pub struct GuidedSpec {
    /// Shared: cloning a plan never copies a schema.
    pub spec: Arc<GuidedDecoding>,
    pub param: String,
}

/// Compiles `guided` once and returns a matcher for each of `copies` choices (none without a
/// constraint).
pub async fn compile(
    ready: &Ready,
    limits: &GrammarLimits,
    guided: Option<GuidedSpec>,
    copies: usize,
) -> ApiResult<Vec<GuidedMatcher>> {
    let Some(GuidedSpec { spec, param }) = guided else {
        return Ok(Vec::new());
    };
    let Some(factory) = ready.engine.guided_factory().map(Arc::clone) else {
        return Err(ApiError::invalid(
            param,
            "structured outputs are not available with this model's tokenizer",
        ));
    };
    let permit = blocking_pool::heavy_permit().await?;
    let job = CompileJob { spec, copies };
    let done = compile_thread::spawn(factory, job, compile_stack_bytes(&limits.schema), permit)?;
    match tokio::time::timeout(limits.compile_timeout, done).await {
        // The engine's refusals are about the output constraint: this request's `param`.
        Ok(Ok(compiled)) => compiled.map_err(|e| match e.request_part() {
            Some(_) => ApiError::invalid(param, e.to_string()),
            None => ApiError::from(e),
        }),
        Ok(Err(_)) => Err(ApiError::invalid(
            param,
            "the grammar engine could not compile this schema; simplify it",
        )),
        Err(_) => Err(ApiError::invalid(
            param,
            format!(
                "the schema took longer than {} s to compile (--grammar-compile-timeout); \
                 simplify it: fewer properties, alternatives or nested objects",
                limits.compile_timeout.as_secs_f64()
            ),
        )),
    }
}
