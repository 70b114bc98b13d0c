//! tealight: a local LLM inference server for Qwen3 on candle, speaking the OpenAI API.

pub mod api;
pub mod batch;
pub mod bench;
pub mod chat;
pub mod cli;
pub mod client;
pub mod device;
pub mod engine;
pub mod error;
pub mod guided;
pub mod kernels;
pub mod model;
pub mod parsers;
pub mod sampling;
pub mod server;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, RequestPart, Result};
