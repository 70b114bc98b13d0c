//! The block hashes the KV event stream carries: the chain llm-d's KV-cache indexer computes
//! from a prompt's tokens (its `ChunkedTokenDatabase`, aligned with vLLM's `sha256_cbor`), so
//! its precise prefix-cache scorer finds tealight's blocks by hashing prompts itself.
//!
//! A block's hash is the last eight bytes (big-endian) of SHA-256 over the canonical CBOR of
//! `[parent hash, [token ids…], extra]`; the chain starts from the same digest of the CBOR text
//! string `PYTHONHASHSEED` (empty when unset: llm-d's default). `extra` is `null`, or
//! `[cache_salt]` on a salted chain's first block as vLLM keys it (llm-d hashes prompts
//! without salts, so salted blocks never match there — as they must not).

use sha2::{Digest, Sha256};

/// The chain's starting value for `seed`.
pub fn init_hash(seed: &str) -> u64 {
    let mut cbor = Vec::new();
    text(&mut cbor, seed);
    last8(&cbor)
}

/// The hash of the block holding `tokens` after the block hashed `parent`.
pub fn block_hash(parent: u64, tokens: &[u32], salt: Option<&str>) -> u64 {
    let mut cbor = Vec::with_capacity(16 + 5 * tokens.len());
    head(&mut cbor, 4, 3);
    head(&mut cbor, 0, parent);
    head(&mut cbor, 4, tokens.len() as u64);
    for &t in tokens {
        head(&mut cbor, 0, u64::from(t));
    }
    match salt {
        Some(salt) => {
            head(&mut cbor, 4, 1);
            text(&mut cbor, salt);
        }
        None => cbor.push(0xf6), // null
    }
    last8(&cbor)
}

fn last8(bytes: &[u8]) -> u64 {
    let sum = Sha256::digest(bytes);
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&sum[24..]);
    u64::from_be_bytes(tail)
}

/// A CBOR head in its shortest form (canonical encoding).
fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend([major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend((value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend(value.to_be_bytes());
        }
    }
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from Python's `cbor2.dumps(…, canonical=True)` and `hashlib.sha256`,
    /// as llm-d and vLLM compute them.
    #[test]
    fn matches_the_reference_implementation() {
        assert_eq!(init_hash(""), 780114917913990099);
        assert_eq!(init_hash("42"), 12056132650316601216);
        let init = init_hash("");
        let tokens: Vec<u32> = (0..16).collect();
        let a = block_hash(init, &tokens, None);
        assert_eq!(a, 11338012631650408282);
        let big = [151643, 70000, 23, 24, 255, 256, 65535, 65536].repeat(2);
        assert_eq!(block_hash(a, &big, None), 7296438615862390933);
        assert_eq!(
            block_hash(init, &tokens, Some("salt")),
            16695092769520657797
        );
    }
}
