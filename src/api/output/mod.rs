//! The one output path of every generation API: engine events → one parser per choice
//! ([`parser`], the internal [`parser::OutputDelta`]) → the protocol's [`Renderer`], driven by
//! [`stream`] (SSE) or [`collect`] (a response sent whole, built from the very deltas a stream
//! would send); [`respond`] picks one. The Responses and Messages APIs see a turn as ordered blocks ([`blocks`]).

pub mod blocks;
mod driver;
pub mod parser;

pub use driver::{Renderer, collect, pooled_in_generation, respond, stream};
