//! The disk tier: evicted blocks as files under `--kv-offload-dir`, at most
//! `--kv-offload-dir-size` bytes, least recently used out.
//!
//! Files live in a subdirectory named by the pool's namespace (model files, dtype, KV layout),
//! one per block, named by its digest. A restarted server with the same model and flags opens
//! the same subdirectory and finds its blocks again; anything else never sees them. A file is
//! written under a temporary name and renamed into place, so a crash leaves a whole file or
//! none; whatever is found is still checked in full before it is used ([`super::format`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::lru::LruIndex;
use crate::engine::block_digest::BlockDigest;

const SUFFIX: &str = ".kv";
const TEMP_SUFFIX: &str = ".kv.tmp";

pub struct DiskTier {
    dir: PathBuf,
    files: LruIndex<()>,
}

impl DiskTier {
    /// Opens (creating) `root/<namespace>` and indexes the blocks already there whose size is
    /// `stored_bytes`, oldest use first; other files of ours are removed.
    pub fn open(
        root: &Path,
        namespace: &BlockDigest,
        max_bytes: usize,
        stored_bytes: usize,
    ) -> io::Result<Self> {
        let dir = root.join(namespace.hex());
        fs::create_dir_all(&dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.ends_with(TEMP_SUFFIX) {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(digest) = name.strip_suffix(SUFFIX).and_then(BlockDigest::from_hex) else {
                continue;
            };
            let meta = entry.metadata()?;
            if meta.len() != stored_bytes as u64 {
                let _ = fs::remove_file(&path);
                continue;
            }
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((used, digest));
        }
        found.sort();
        let mut tier = Self {
            dir,
            files: LruIndex::new(max_bytes),
        };
        for (_, digest) in found {
            for (out, ()) in tier.files.insert(digest, (), stored_bytes) {
                let _ = fs::remove_file(tier.path(&out));
            }
        }
        Ok(tier)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &BlockDigest) -> PathBuf {
        self.dir.join(format!("{}{SUFFIX}", key.hex()))
    }

    pub fn contains(&self, key: &BlockDigest) -> bool {
        self.files.contains(key)
    }

    /// Writes a stored block, removing the least recently used files to stay in bounds.
    pub fn put(&mut self, key: BlockDigest, stored: &[u8]) -> io::Result<()> {
        if self.files.contains(&key) || !self.files.fits(stored.len()) {
            return Ok(());
        }
        let temp = self.dir.join(format!("{}{TEMP_SUFFIX}", key.hex()));
        fs::write(&temp, stored)?;
        fs::rename(&temp, self.path(&key))?;
        for (out, ()) in self.files.insert(key, (), stored.len()) {
            let _ = fs::remove_file(self.path(&out));
        }
        Ok(())
    }

    /// The stored block, if its file is there (its use recorded for the next start too).
    pub fn get(&mut self, key: &BlockDigest) -> Option<Vec<u8>> {
        self.files.touch(key)?;
        let path = self.path(key);
        match fs::read(&path) {
            Ok(bytes) => {
                if let Ok(file) = fs::File::options().append(true).open(&path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                Some(bytes)
            }
            Err(_) => {
                self.files.remove(key);
                None
            }
        }
    }

    /// Forgets a block and deletes its file (a copy that failed its checks).
    pub fn remove(&mut self, key: &BlockDigest) {
        self.files.remove(key);
        let _ = fs::remove_file(self.path(key));
    }

    pub fn used_bytes(&self) -> usize {
        self.files.used_bytes()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn key(i: u8) -> BlockDigest {
        BlockDigest([i; 32])
    }

    #[test]
    fn bounded_and_found_again_after_a_restart() {
        let root = tempdir("disk-tier");
        let ns = BlockDigest([9; 32]);
        {
            let mut tier = DiskTier::open(&root, &ns, 25, 10).unwrap();
            tier.put(key(1), &[1; 10]).unwrap();
            tier.put(key(2), &[2; 10]).unwrap();
            assert_eq!(tier.get(&key(1)).unwrap(), vec![1; 10]);
            tier.put(key(3), &[3; 10]).unwrap(); // pushes out 2, the least recently used
            assert!(!tier.contains(&key(2)));
            assert!(!tier.path(&key(2)).exists());
            assert_eq!(tier.used_bytes(), 20);
        }
        // A stray temporary and a file of another size are cleaned up at the next start.
        let dir = root.join(ns.hex());
        fs::write(dir.join(format!("{}{TEMP_SUFFIX}", key(7).hex())), [0; 10]).unwrap();
        fs::write(dir.join(format!("{}{SUFFIX}", key(8).hex())), [0; 4]).unwrap();
        let mut again = DiskTier::open(&root, &ns, 25, 10).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again.get(&key(3)).unwrap(), vec![3; 10]);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        // Another namespace sees nothing.
        assert!(DiskTier::open(&root, &key(4), 25, 10).unwrap().is_empty());
        // A file deleted behind the tier's back is a miss, not an error.
        fs::remove_file(again.path(&key(1))).unwrap();
        assert_eq!(again.get(&key(1)), None);
        assert!(!again.contains(&key(1)));
        fs::remove_dir_all(&root).unwrap();
    }

    pub(crate) fn tempdir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tealight-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
