//! Tokenization and prompt formatting: the model's `tokenizer.json` (text ↔ ids), its chat
//! template (messages → prompt, matching transformers byte for byte), and the streaming
//! detokenizer that turns generated ids into UTF-8-safe text deltas.

pub mod byte_level;
mod chat_template;
mod codec;
mod detokenizer;
mod jinja;
mod messages;
mod plain_content;
pub mod pyjson;

pub use chat_template::{ChatTemplate, special_tokens_from_config};
pub use codec::Tokenizer;
pub use detokenizer::IncrementalDetokenizer;
pub use messages::{CONTENT_PART_SEPARATOR, prepare_messages, template_messages};
pub use plain_content::{ChatPrompt, Conversation, PromptEnd, render_chat};
