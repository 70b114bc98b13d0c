//! `GET /openapi.json`: the OpenAPI 3 description of the routes and their request shapes,
//! kept by hand in `openapi.json` beside this file (schema-driven fuzzers and clients read it).
//! A route added to the router gets its path there too; `tests/server/reliability.rs` checks that
//! every documented route answers.

use axum::http::header;
use axum::response::{IntoResponse, Response};

pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}
