//! EAGLE-3 draft heads (vLLM's `eagle3` speculative method): their config and forward.

pub mod config;
pub mod head;

pub use config::Eagle3Config;
pub use head::Eagle3Head;
