//! Request and response bodies, with OpenAI's field names. Requests ignore unknown fields (as
//! OpenAI does); numbers are read wide (`f64`/`i64`) and range-checked by the handlers so that
//! errors name the field instead of failing in the deserialiser.

pub mod chat;
pub mod common;
pub mod completions;
pub mod generation;
pub mod sampling;
pub mod tokenize;
pub mod unsupported;
