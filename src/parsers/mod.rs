//! Output parsers that split a model's raw text into the OpenAI message fields.
//!
//! Each parser is an incremental state machine over text deltas (`push` per delta, `finish` at
//! the end) and its one-shot form is literally "push the whole text, then finish". Streaming and
//! non-streaming responses therefore run the same code, which is what makes a streamed tool
//! call's argument fragments concatenate to exactly the non-streamed `arguments` string.
//!
//! - [`reasoning`]: Qwen3's `<think>…</think>` block → `reasoning_content`.
//! - [`hermes`]: Hermes-style `<tool_call>{"name", "arguments"}</tool_call>` → `tool_calls`.
//! - [`qwen3_coder`]: Qwen3-Coder's `<tool_call><function=…><parameter=…>` → `tool_calls`,
//!   arguments typed by the request's tool schemas.
//! - [`tool_calls`]: what the tool-call parsers share, and [`ToolCallParser`] holding either.

pub mod hermes;
pub mod qwen3_coder;
pub mod reasoning;
mod tags;
pub mod tool_calls;

pub use hermes::HermesToolParser;
pub use qwen3_coder::{Qwen3CoderToolParser, ToolSchemas};
pub use reasoning::{Qwen3ReasoningParser, ReasoningDelta, prompt_opens_thinking};
pub use tool_calls::{
    ToolCallDelta, ToolCallFormat, ToolCallParser, ToolCallSyntax, ToolCallsDelta,
};
