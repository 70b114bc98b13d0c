//! Model-level sampling defaults read from a Hugging Face `generation_config.json`.
//!
//! A checkpoint's authors ship the sampling settings the model was tuned for (Qwen3:
//! `temperature 0.6, top_k 20, top_p 0.95`). A request that leaves a parameter out gets the
//! model's value rather than a generic one, which is what vLLM does with its default
//! `--generation-config auto`. Every field is optional: a missing field means "the model has no
//! opinion" and the request resolution falls back to the neutral OpenAI/vLLM default.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// File name looked up next to `config.json`.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// The sampling-related content of a `generation_config.json`; `None` where the file is silent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationDefaults {
    /// `false` makes the model's default decoding greedy (HF semantics: sampling switched off,
    /// whatever `temperature` says). A request that sets `temperature` still overrides it.
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// `0` or `-1` mean disabled, as in HF and vLLM.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// HF's `max_new_tokens`: a default cap on generated tokens when the request sets none.
    pub max_new_tokens: Option<usize>,
    /// Every token id that ends generation (`eos_token_id` may be one id or a list).
    pub eos_token_ids: Vec<u32>,
    pub bos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
}

/// One id or a list of ids: HF writes both forms for `eos_token_id` (and occasionally for
/// `bos_token_id` / `pad_token_id`).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<u32> {
        match self {
            OneOrMany::One(id) => vec![id],
            OneOrMany::Many(ids) => ids,
        }
    }
}

/// The file as serde sees it. Unknown fields are ignored (generation configs carry many
/// unrelated keys such as `transformers_version`); `null` reads as absent.
#[derive(Deserialize)]
struct RawGenerationConfig {
    do_sample: Option<bool>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    min_p: Option<f64>,
    repetition_penalty: Option<f64>,
    max_new_tokens: Option<u64>,
    eos_token_id: Option<OneOrMany>,
    bos_token_id: Option<OneOrMany>,
    pad_token_id: Option<OneOrMany>,
}

impl GenerationDefaults {
    /// Parses the JSON text of a generation config. `path` only names the file in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let raw: RawGenerationConfig = serde_json::from_str(text)
            .map_err(|e| Error::checkpoint(path, format!("invalid generation config: {e}")))?;
        let defaults = GenerationDefaults {
            do_sample: raw.do_sample,
            temperature: raw.temperature.map(|v| v as f32),
            top_p: raw.top_p.map(|v| v as f32),
            top_k: raw.top_k,
            min_p: raw.min_p.map(|v| v as f32),
            repetition_penalty: raw.repetition_penalty.map(|v| v as f32),
            max_new_tokens: raw.max_new_tokens.map(|v| v as usize),
            eos_token_ids: raw
                .eos_token_id
                .map(OneOrMany::into_vec)
                .unwrap_or_default(),
            bos_token_id: raw.bos_token_id.and_then(|v| v.into_vec().first().copied()),
            pad_token_id: raw.pad_token_id.and_then(|v| v.into_vec().first().copied()),
        };
        defaults
            .check_ranges()
            .map_err(|message| Error::checkpoint(path, message))?;
        Ok(defaults)
    }

    /// Reads and parses one `generation_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::checkpoint(path, format!("cannot read generation config: {e}")))?;
        Self::from_json_str(&text, path)
    }

    /// The defaults of a checkpoint directory: its `generation_config.json`, or no defaults at
    /// all when the checkpoint ships none (common for base models and many fine-tunes).
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(GENERATION_CONFIG_FILE);
        if path.is_file() {
            Self::from_file(&path)
        } else {
            Ok(Self::default())
        }
    }

    /// True when the model asks for greedy decoding unless a request says otherwise.
    pub fn greedy_by_default(&self) -> bool {
        self.do_sample == Some(false)
    }

    /// Rejects values that would make every request that relies on them fail validation; better
    /// to refuse the checkpoint at load time with the file named than to answer each request
    /// with a 400 blaming the user.
    fn check_ranges(&self) -> std::result::Result<(), String> {
        if let Some(t) = self.temperature
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(format!("temperature must be a finite number >= 0, got {t}"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(format!("top_p must be in (0, 1], got {p}"));
        }
        if let Some(k) = self.top_k
            && k < -1
        {
            return Err(format!("top_k must be -1, 0 (disabled) or >= 1, got {k}"));
        }
        if let Some(p) = self.min_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(format!("min_p must be in [0, 1], got {p}"));
        }
        if let Some(r) = self.repetition_penalty
            && !(r.is_finite() && r > 0.0)
        {
            return Err(format!(
                "repetition_penalty must be a finite number > 0, got {r}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3: &str = r#"{
        "bos_token_id": 151643,
        "do_sample": true,
        "eos_token_id": [151645, 151643],
        "pad_token_id": 151643,
        "temperature": 0.6,
        "top_k": 20,
        "top_p": 0.95,
        "transformers_version": "4.51.0"
    }"#;

    fn parse(text: &str) -> Result<GenerationDefaults> {
        GenerationDefaults::from_json_str(text, Path::new("m/generation_config.json"))
    }

    #[test]
    fn qwen3_file() {
        let d = parse(QWEN3).unwrap();
        assert_eq!(d.do_sample, Some(true));
        assert_eq!(d.temperature, Some(0.6));
        assert_eq!(d.top_k, Some(20));
        assert_eq!(d.top_p, Some(0.95));
        assert_eq!(d.min_p, None);
        assert_eq!(d.repetition_penalty, None);
        assert_eq!(d.max_new_tokens, None);
        assert_eq!(d.eos_token_ids, vec![151645, 151643]);
        assert_eq!(d.bos_token_id, Some(151643));
        assert_eq!(d.pad_token_id, Some(151643));
        assert!(!d.greedy_by_default());
    }

    #[test]
    fn single_eos_and_extra_fields() {
        let d = parse(
            r#"{"eos_token_id": 2, "do_sample": false, "repetition_penalty": 1.05,
                "min_p": 0.1, "max_new_tokens": 256, "top_k": null}"#,
        )
        .unwrap();
        assert_eq!(d.eos_token_ids, vec![2]);
        assert!(d.greedy_by_default());
        assert_eq!(d.repetition_penalty, Some(1.05));
        assert_eq!(d.min_p, Some(0.1));
        assert_eq!(d.max_new_tokens, Some(256));
        assert_eq!(d.top_k, None);
    }

    #[test]
    fn empty_object_is_no_defaults() {
        assert_eq!(parse("{}").unwrap(), GenerationDefaults::default());
    }

    #[test]
    fn bad_json_names_the_file() {
        let err = parse("{ not json").unwrap_err();
        assert!(matches!(err, Error::Checkpoint { .. }));
        assert!(
            err.to_string().contains("m/generation_config.json"),
            "{err}"
        );
        let err = parse(r#"{"temperature": "hot"}"#).unwrap_err();
        assert!(err.to_string().contains("generation_config.json"), "{err}");
    }

    #[test]
    fn out_of_range_default_is_a_checkpoint_error() {
        let err = parse(r#"{"top_p": 0.0}"#).unwrap_err();
        assert!(matches!(err, Error::Checkpoint { .. }));
        assert!(err.to_string().contains("top_p"), "{err}");
        assert!(parse(r#"{"repetition_penalty": 0}"#).is_err());
        assert!(parse(r#"{"top_k": -2}"#).is_err());
    }

    #[test]
    fn model_dir_without_file_has_no_defaults() {
        let dir = std::env::temp_dir().join(format!("tealight-gencfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            GenerationDefaults::from_model_dir(&dir).unwrap(),
            GenerationDefaults::default()
        );
        std::fs::write(dir.join(GENERATION_CONFIG_FILE), QWEN3).unwrap();
        let d = GenerationDefaults::from_model_dir(&dir).unwrap();
        assert_eq!(d.top_k, Some(20));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
