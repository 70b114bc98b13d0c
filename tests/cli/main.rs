//! Integration tests: the `tealight` binary as a process: `serve` start-up, drain and faults,
//! engine death, and the `chat` and `bench` clients against mocks and a live server.
//!
//! One test binary per subject: each binary links the whole library, and on a small machine
//! linking, not compiling, is most of `cargo test`'s time.

mod openai_mock;
mod process;

mod api_process;
mod bench;
mod chat;
mod faults;
mod liveness;
