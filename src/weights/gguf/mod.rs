//! One-file GGUF checkpoints (llama.cpp's format): the file reader, the type table, the name
//! mapping to transformers' tensor names, and the config, tokenizer, chat template and
//! generation defaults the file's metadata carries.

mod config;
mod file;
pub mod names;
mod types;
mod vocab;
pub mod writer;

pub use config::{ARCHITECTURE, architecture, qwen3_config};
pub use file::{GgufFile, TensorInfo};
pub use types::GgmlType;
pub use vocab::{chat_template, generation_defaults, special_tokens, tokenizer, tokenizer_json};
pub use writer::{TypePlan, write_gguf};

use std::path::Path;

/// Whether `path` is a GGUF file (by its magic, whatever its name).
pub fn is_gguf_file(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && &magic == b"GGUF"
}
