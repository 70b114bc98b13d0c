//! The OpenAI-compatible HTTP API.

use crate::cli::serve::{Loaded, ServeArgs};
use crate::error::{Error, Result};

/// Serves the API until a shutdown signal. (Being built: see the server issue.)
pub async fn serve(_loaded: Loaded, _args: &ServeArgs) -> Result<()> {
    Err(Error::Internal("the HTTP API is not built yet".into()))
}
