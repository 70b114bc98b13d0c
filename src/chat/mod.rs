//! `tealight chat`: the multi-turn streaming chat bot of the OpenAI quick-start, built in. It
//! talks to any OpenAI-compatible server (tealight, vLLM, llama.cpp), keeps the conversation,
//! shows reasoning dimmed and keeps it out of the history, and works with piped input so
//! sessions can be scripted.

mod answer;
mod command;
mod history;
mod input;
mod session;
mod style;

pub use answer::Answer;
pub use command::Command;
pub use history::History;
pub use session::{ChatOptions, run};
