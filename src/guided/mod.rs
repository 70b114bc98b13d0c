//! Guided decoding (structured outputs): output constrained token by token to a JSON schema,
//! any JSON object, or a Lark grammar, with llguidance as the grammar engine (the one vLLM,
//! SGLang and llama.cpp use).
//!
//! - [`vocab`]: every token id as the bytes it appends, and the tokenizer view llguidance needs.
//! - [`grammar`]: a request's [`GuidedDecoding`] ([`spec`]) as an llguidance grammar with
//!   bounded JSON whitespace, and the Lark grammar for forced (hermes) tool calls;
//!   [`coder_grammar`]: the one for forced calls in Qwen3-Coder's format.
//! - [`matcher`]: [`GuidedFactory`] (one per server, shared) compiles a request's constraint
//!   into a [`GuidedMatcher`], which gives the allowed-token mask before each draw and advances
//!   after it.
//!
//! - [`bounds`]: the size a schema may have (properties per object, values, depth), checked
//!   before compiling; [`compile_thread`]: compilation on a thread whose stack is sized for
//!   those bounds, once per request (each choice gets a fork of the compiled matcher).
//!
//! How the engine uses it: `submit` compiles the constraint (a bad schema is rejected there,
//! before anything runs); each step, after the forward pass is launched and before sampling,
//! the masks of all constrained sequences in the batch are computed in parallel and handed to
//! their samplers ([`crate::sampling::TokenMask`]); after sampling, the token is committed. When
//! the grammar allows nothing but EOS, the request ends there with `stop` (no extra step to
//! sample the EOS token); while it merely allows EOS, the model may pick it. A matcher error
//! ends only its own request, with an error event.
//!
//! A weak model can still write forever *inside* a string or a number, which a grammar cannot
//! forbid without changing its language: schemas that must finish should bound their strings
//! (`maxLength`) and arrays (`maxItems`); `max_tokens` remains the backstop.

pub mod bounds;
pub mod coder_grammar;
pub mod compile_thread;
pub mod grammar;
pub mod matcher;
pub mod spec;
pub mod vocab;

pub use bounds::{SchemaBudget, SchemaLimits, compile_stack_bytes};
pub use coder_grammar::qwen3_coder_tool_call_grammar;
pub use compile_thread::CompileJob;
pub use grammar::{
    ToolSpec, bounded_json_schema, hermes_tool_call_grammar, json_defaults, top_level_grammar,
};
pub use llguidance::api::ParserLimits;
pub use matcher::{GuidedFactory, GuidedMatcher};
pub use spec::GuidedDecoding;
pub use vocab::{VocabEnv, token_bytes};
