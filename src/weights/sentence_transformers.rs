//! An embedding checkpoint's sentence-transformers files: `modules.json` (Transformer →
//! Pooling → Normalize, as the Qwen3-Embedding checkpoints ship), the pooling module's
//! `config.json`, and `config_sentence_transformers.json`'s prompts. They say how hidden states
//! become an embedding; tealight pools the last token, as Qwen3-Embedding does.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// How an embedding model turns its final hidden states into embeddings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingSpec {
    /// Embeddings are L2-normalized (a `Normalize` module follows the pooling).
    pub normalize: bool,
    /// The instructions the checkpoint names (`query` for Qwen3-Embedding), prepended to a
    /// text by whoever sends it.
    pub prompts: BTreeMap<String, String>,
}

impl EmbeddingSpec {
    /// A decoder read as an embedding model without sentence-transformers files: the last
    /// token's state, normalized (vLLM's default for such models, and Qwen3-Embedding's rule).
    pub fn last_token_normalized() -> Self {
        Self {
            normalize: true,
            prompts: BTreeMap::new(),
        }
    }

    /// The spec `dir`'s sentence-transformers files give; `None` when it has no `modules.json`
    /// with a pooling module. A pooling other than the last token's is refused: the embeddings
    /// would not be the checkpoint's.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>> {
        let modules_path = dir.join("modules.json");
        let Some(modules) = read_json::<Vec<Module>>(&modules_path)? else {
            return Ok(None);
        };
        let kind = |m: &Module| m.kind.rsplit('.').next().unwrap_or_default().to_owned();
        let Some(pooling) = modules.iter().find(|m| kind(m) == "Pooling") else {
            return Ok(None);
        };
        let pooling_path = dir.join(&pooling.path).join("config.json");
        let config: Value = read_json(&pooling_path)?.unwrap_or(Value::Null);
        let modes: Vec<&str> = config
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, on)| key.starts_with("pooling_mode_") && on.as_bool() == Some(true))
            .map(|(key, _)| key.trim_start_matches("pooling_mode_"))
            .collect();
        if modes != ["lasttoken"] {
            return Err(Error::checkpoint(
                pooling_path,
                format!(
                    "pools by {modes:?}; tealight pools the last token's state \
                     (pooling_mode_lasttoken), as Qwen3-Embedding does"
                ),
            ));
        }
        let settings: Option<Settings> = read_json(&dir.join("config_sentence_transformers.json"))?;
        Ok(Some(Self {
            normalize: modules.iter().any(|m| kind(m) == "Normalize"),
            prompts: settings.map(|s| s.prompts).unwrap_or_default(),
        }))
    }
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Settings {
    #[serde(default)]
    prompts: BTreeMap<String, String>,
}

/// `path` parsed, or `None` if it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::checkpoint(path, e.to_string())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::checkpoint(path, format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, value: Value) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, value.to_string()).unwrap();
    }

    fn modules(normalize: bool) -> Value {
        let mut m = vec![
            json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
            json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
        ];
        if normalize {
            m.push(json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
        }
        Value::Array(m)
    }

    #[test]
    fn a_qwen3_embedding_layout_pools_the_last_token_normalized() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(EmbeddingSpec::from_dir(dir.path()).unwrap(), None);
        write(dir.path(), "modules.json", modules(true));
        write(
            dir.path(),
            "1_Pooling/config.json",
            json!({"pooling_mode_lasttoken": true, "pooling_mode_mean_tokens": false}),
        );
        write(
            dir.path(),
            "config_sentence_transformers.json",
            json!({"prompts": {"query": "Instruct: x\nQuery:", "document": ""}}),
        );
        let spec = EmbeddingSpec::from_dir(dir.path()).unwrap().unwrap();
        assert!(spec.normalize);
        assert_eq!(spec.prompts["query"], "Instruct: x\nQuery:");
        write(dir.path(), "modules.json", modules(false));
        assert!(
            !EmbeddingSpec::from_dir(dir.path())
                .unwrap()
                .unwrap()
                .normalize
        );
    }

    #[test]
    fn other_poolings_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "modules.json", modules(true));
        write(
            dir.path(),
            "1_Pooling/config.json",
            json!({"pooling_mode_mean_tokens": true, "pooling_mode_lasttoken": false}),
        );
        let err = EmbeddingSpec::from_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("mean_tokens") && err.contains("lasttoken"),
            "{err}"
        );
    }
}
