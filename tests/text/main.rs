//! Integration tests: text in and out: the chat template, the incremental detokenizer, finish text
//! and stop strings.
//!
//! One test binary per subject: each binary links the whole library, and on a small machine
//! linking, not compiling, is most of `cargo test`'s time.

mod chat_template;
mod detokenizer;
mod finish_text;
