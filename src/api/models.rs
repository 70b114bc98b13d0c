//! `/v1/models`: one entry per served name.

use axum::Json;
use axum::extract::State;

use super::error::ApiResult;
use super::state::AppState;
use super::types::common::{ModelCard, ModelList};

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<ModelList>> {
    let ready = state.ready()?;
    let data = ready
        .served_model_names
        .iter()
        .map(|name| ModelCard {
            id: name.clone(),
            object: "model",
            created: ready.created,
            owned_by: "tealight",
            root: ready.model_path.clone(),
            parent: None,
            max_model_len: ready.max_model_len(),
            task: ready.task.name(),
        })
        .collect();
    Ok(Json(ModelList {
        object: "list",
        data,
    }))
}
