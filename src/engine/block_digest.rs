//! A KV block's content identity that outlives the process: a SHA-256 chain over the served
//! model's namespace, the request's `cache_salt` and every token up to the block's end.
//!
//! The pool's own index ([`super::block_manager`]) is a keyed 64-bit hash with a fresh key per
//! process, verified block by block against the slots it points at. Blocks that leave the pool
//! for the offload tiers have no slot to verify against, and a restarted server must find them
//! again, so they are named by a collision-resistant digest instead: equal digests mean equal
//! token prefixes under the same model, flags and salt.

use sha2::{Digest as _, Sha256};
use std::fmt;

/// SHA-256 of a block's whole prefix (see the module comment).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockDigest(pub [u8; 32]);

impl BlockDigest {
    /// What a chain starts from: the namespace (model and KV layout) and the salt, if any.
    pub fn root(namespace: &BlockDigest, salt: Option<&str>) -> Self {
        let mut h = Sha256::new();
        h.update(b"tealight-kv-root");
        h.update(namespace.0);
        match salt {
            // Length-prefixed, so no salt can pass for another salt or for none.
            Some(salt) => {
                h.update([1]);
                h.update((salt.len() as u64).to_le_bytes());
                h.update(salt.as_bytes());
            }
            None => h.update([0]),
        }
        Self(h.finalize().into())
    }

    /// The digest of the block holding `tokens` after the block whose digest is `self`.
    pub fn next(&self, tokens: &[u32]) -> Self {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update((tokens.len() as u64).to_le_bytes());
        for t in tokens {
            h.update(t.to_le_bytes());
        }
        Self(h.finalize().into())
    }

    /// A digest of arbitrary labelled parts (namespaces).
    pub fn of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut h = Sha256::new();
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Self(h.finalize().into())
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`Self::hex`]'s output.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }

    /// The first eight bytes as an integer: how the KV event stream names a block.
    pub fn short(&self) -> u64 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(head)
    }
}

impl fmt::Debug for BlockDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockDigest({}…)", &self.hex()[..12])
    }
}

/// A registered block's place in its chain: its digest and its parent's (the root for a first
/// block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLink {
    pub digest: BlockDigest,
    pub parent: BlockDigest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_differ_by_salt_namespace_and_every_token() {
        let ns = BlockDigest::of_parts([b"model-a".as_slice()]);
        let other_ns = BlockDigest::of_parts([b"model-b".as_slice()]);
        let plain = BlockDigest::root(&ns, None);
        assert_ne!(plain, BlockDigest::root(&ns, Some("")));
        assert_ne!(
            BlockDigest::root(&ns, Some("a")),
            BlockDigest::root(&ns, Some("b"))
        );
        assert_ne!(plain, BlockDigest::root(&other_ns, None));
        let a = plain.next(&[1, 2, 3]);
        assert_eq!(a, plain.next(&[1, 2, 3]));
        assert_ne!(a, plain.next(&[1, 2, 4]));
        assert_ne!(a.next(&[5]), plain.next(&[1, 2, 3, 5]));
    }

    #[test]
    fn hex_round_trips() {
        let d = BlockDigest::of_parts([b"x".as_slice()]);
        assert_eq!(BlockDigest::from_hex(&d.hex()), Some(d));
        assert_eq!(BlockDigest::from_hex("zz"), None);
        assert_eq!(BlockDigest::from_hex(&"g".repeat(64)), None);
    }
}
