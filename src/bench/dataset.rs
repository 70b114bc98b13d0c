//! Random prompts of an exact token length, the way `vllm bench serve --dataset-name random`
//! makes them: random ids from the served tokenizer's vocabulary, decoded to text, re-encoded,
//! and adjusted until the text is exactly `input_len` tokens again. Decoding and re-encoding
//! can merge or split pieces at the seams, so the adjustment is needed for exact counts.

use crate::error::{Error, Result};
use crate::tokenizer::{ChatTemplate, Tokenizer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// One benchmark prompt.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Prompt {
    /// The prompt as token ids (sent as-is to `/v1/completions` so the server sees exactly
    /// these tokens).
    pub ids: Vec<u32>,
    /// The same prompt as text (sent to `/v1/chat/completions`, or to completions when ids
    /// are not wanted).
    pub text: String,
}

/// The served model's tokenizer, and its chat template when one is next to it.
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    /// Where it was loaded from, for the report.
    pub source: PathBuf,
}

impl PromptTokenizer {
    /// `path` is a checkpoint directory (with `tokenizer.json`, and `tokenizer_config.json` for
    /// the chat template) or a `tokenizer.json` file.
    pub fn load(path: &Path) -> Result<Self> {
        let (file, dir) = if path.is_dir() {
            (path.join("tokenizer.json"), Some(path.to_path_buf()))
        } else {
            (path.to_path_buf(), path.parent().map(Path::to_path_buf))
        };
        let tokenizer = Tokenizer::from_file(&file)?;
        let template = dir
            .filter(|d| d.join("tokenizer_config.json").is_file())
            .and_then(|d| ChatTemplate::from_model_dir(d).ok());
        Ok(Self {
            tokenizer,
            template,
            source: file,
        })
    }

    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Tokens the chat template wraps around a single user message (role markers, the
    /// generation prompt), or `None` without a template. A chat prompt gets this many fewer
    /// tokens of text so that the server sees about `input_len` prompt tokens in all.
    pub fn chat_overhead(&self) -> Result<Option<usize>> {
        let Some(template) = &self.template else {
            return Ok(None);
        };
        let text = "hello";
        let messages = [json!({"role": "user", "content": text})];
        let rendered = template.render(&messages, None, true, &Map::new())?;
        let full = self.tokenizer.encode(&rendered, false)?.len();
        let bare = self.tokenizer.encode(text, false)?.len();
        Ok(Some(full.saturating_sub(bare)))
    }

    /// Token count of `text`, as the server will count it.
    pub fn count(&self, text: &str) -> Result<usize> {
        Ok(self.tokenizer.encode(text, false)?.len())
    }

    /// `n` prompts of `input_len` tokens each, reproducible from `seed`.
    pub fn random_prompts(&self, n: usize, input_len: usize, seed: u64) -> Result<Vec<Prompt>> {
        let base_vocab = self.tokenizer.inner().get_vocab_size(false);
        if base_vocab == 0 {
            return Err(Error::Tokenizer(
                "the tokenizer has an empty vocabulary".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| self.random_prompt(&mut rng, input_len, base_vocab))
            .collect()
    }

    /// Draws ids from the base vocabulary only: added tokens (`<|im_end|>`, `<think>`) would
    /// end turns or switch modes and are not "random text".
    fn random_prompt(
        &self,
        rng: &mut ChaCha8Rng,
        input_len: usize,
        vocab: usize,
    ) -> Result<Prompt> {
        let mut draw =
            |k: usize| -> Vec<u32> { (0..k).map(|_| rng.random_range(0..vocab as u32)).collect() };
        let mut ids = draw(input_len);
        // Each round fixes most of the difference; a handful of rounds always sufficed in
        // practice, and the last attempt is kept (with its true length) if it does not settle.
        for _ in 0..10 {
            let text = self.tokenizer.decode(&ids, false)?;
            let reencoded = self.tokenizer.encode(&text, false)?;
            if reencoded.len() == input_len {
                return Ok(Prompt {
                    ids: reencoded,
                    text,
                });
            }
            ids = reencoded;
            if ids.len() > input_len {
                ids.truncate(input_len);
            } else {
                let missing = input_len - ids.len();
                ids.extend(draw(missing));
            }
        }
        let text = self.tokenizer.decode(&ids, false)?;
        let ids = self.tokenizer.encode(&text, false)?;
        Ok(Prompt { ids, text })
    }
}

/// Writes the prompts as JSON (`[{"ids": [...], "text": "..."}]`), so that other tools (the
/// transformers side of the comparison script) run exactly the same prompts.
pub fn save_prompts(path: &Path, prompts: &[Prompt]) -> Result<()> {
    let body = serde_json::to_string(prompts)
        .map_err(|e| Error::Internal(format!("prompts to JSON: {e}")))?;
    std::fs::write(path, body).map_err(|e| Error::checkpoint(path, e.to_string()))
}

/// The prompt of a chat request: one user message.
pub fn chat_messages(prompt: &Prompt) -> Value {
    json!([{"role": "user", "content": prompt.text}])
}
