//! A model's identity for caches that outlive the process (the KV disk tier): a digest of its
//! files' names, sizes, modification times and sampled contents, and of the settings that
//! change its numbers. Hashing whole checkpoints (gigabytes) at every start would cost more
//! than the cache saves; a rewritten or replaced file changes its time, size or samples.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::ModelSource;

/// Bytes read from each end of every file.
const SAMPLE_BYTES: u64 = 64 << 10;

impl ModelSource {
    /// The files the model's numbers come from.
    fn identity_files(&self) -> Vec<PathBuf> {
        match self {
            Self::Checkpoint(files) => std::iter::once(files.config.clone())
                .chain(files.weights.iter().cloned())
                .collect(),
            Self::Gguf(file) => vec![file.path().to_path_buf()],
        }
    }

    /// The digest of [`Self::identity_files`] and `settings` (see the module comment).
    pub fn identity(&self, settings: &[String]) -> io::Result<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(b"tealight-model-identity-v1");
        for path in self.identity_files() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            part(&mut h, name.unwrap_or_default().as_bytes());
            let mut file = File::open(&path)?;
            let meta = file.metadata()?;
            let modified = meta
                .modified()?
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            part(&mut h, &meta.len().to_le_bytes());
            part(&mut h, &modified.to_le_bytes());
            let mut head = Vec::new();
            (&mut file).take(SAMPLE_BYTES).read_to_end(&mut head)?;
            part(&mut h, &head);
            file.seek(SeekFrom::Start(meta.len().saturating_sub(SAMPLE_BYTES)))?;
            let mut tail = Vec::new();
            file.take(SAMPLE_BYTES).read_to_end(&mut tail)?;
            part(&mut h, &tail);
        }
        for setting in settings {
            part(&mut h, setting.as_bytes());
        }
        Ok(h.finalize().into())
    }
}

fn part(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_follows_the_files_and_settings() {
        let dir = std::env::temp_dir().join(format!("tealight-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let embedded = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/qwen3-tiny");
        for entry in std::fs::read_dir(embedded).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        let source = ModelSource::resolve(dir.to_str().unwrap()).unwrap();
        let a = source.identity(&["f32".into()]).unwrap();
        assert_eq!(a, source.identity(&["f32".into()]).unwrap());
        assert_ne!(a, source.identity(&["bf16".into()]).unwrap());
        // Rewriting a weight file (same bytes, new time) is another model as far as caches go.
        let weights = match &source {
            ModelSource::Checkpoint(files) => files.weights[0].clone(),
            ModelSource::Gguf(_) => unreachable!(),
        };
        let bytes = std::fs::read(&weights).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&weights, bytes).unwrap();
        assert_ne!(a, source.identity(&["f32".into()]).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
