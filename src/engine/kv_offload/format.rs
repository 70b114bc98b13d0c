//! How an offloaded block is laid out in the host tier and on disk, and the checks that keep a
//! stale, truncated or damaged copy from ever being read as KV.
//!
//! ```text
//! magic "TLKVBLK1" | layout (5 × u32) | payload length u64 | payload crc32 | header crc32
//! digest [32] | parent digest [32] | tokens (block_size × u32) | payload
//! ```
//! All integers little-endian. The payload is the block's K then V rows, layer by layer, in
//! the cache's own element type. A copy is accepted only when every field matches what the
//! reader expects: the layout of this pool, the digest asked for, the parent and tokens of the
//! prefix being restored (the digest is recomputed from them), and both checksums.

use crate::engine::block_digest::BlockLink;

const MAGIC: &[u8; 8] = b"TLKVBLK1";
const FIXED: usize = 8 + 5 * 4 + 8 + 4 + 4 + 32 + 32;

/// The geometry of one block's KV: it must equal the reader's for a copy to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    pub layers: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub block_size: u32,
    /// Bytes per element of the cache's dtype, with the dtype's code in the high bits.
    pub element: u32,
}

impl BlockLayout {
    pub fn payload_bytes(&self) -> usize {
        let elem = (self.element & 0xff) as usize;
        2 * self.layers as usize
            * self.block_size as usize
            * self.kv_heads as usize
            * self.head_dim as usize
            * elem
    }

    fn header_bytes(&self) -> usize {
        FIXED + 4 * self.block_size as usize
    }

    /// Bytes a stored block takes, header included.
    pub fn stored_bytes(&self) -> usize {
        self.header_bytes() + self.payload_bytes()
    }

    /// The fields in their stored order.
    pub(super) fn words(&self) -> [u32; 5] {
        [
            self.layers,
            self.kv_heads,
            self.head_dim,
            self.block_size,
            self.element,
        ]
    }
}

/// Why a stored copy was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    Truncated,
    NotABlock,
    OtherLayout,
    OtherBlock,
    Checksum,
}

/// The stored form of a block.
pub fn encode(layout: &BlockLayout, link: &BlockLink, tokens: &[u32], payload: &[u8]) -> Vec<u8> {
    debug_assert_eq!(tokens.len(), layout.block_size as usize);
    debug_assert_eq!(payload.len(), layout.payload_bytes());
    let mut out = Vec::with_capacity(layout.stored_bytes());
    out.extend_from_slice(MAGIC);
    for w in layout.words() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // the header checksum, below
    out.extend_from_slice(&link.digest.0);
    out.extend_from_slice(&link.parent.0);
    for t in tokens {
        out.extend_from_slice(&t.to_le_bytes());
    }
    let header_crc = header_checksum(&out);
    out[40..44].copy_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of `stored` if it is the block `link` with `tokens` under `layout`.
pub fn decode<'a>(
    stored: &'a [u8],
    layout: &BlockLayout,
    link: &BlockLink,
    tokens: &[u32],
) -> Result<&'a [u8], Rejected> {
    let header_len = layout.header_bytes();
    if stored.len() < FIXED {
        return Err(Rejected::Truncated);
    }
    if &stored[..8] != MAGIC {
        return Err(Rejected::NotABlock);
    }
    let word = |at: usize| {
        u32::from_le_bytes([stored[at], stored[at + 1], stored[at + 2], stored[at + 3]])
    };
    if (0..5).map(|i| word(8 + 4 * i)).ne(layout.words()) {
        return Err(Rejected::OtherLayout);
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&stored[28..36]);
    if u64::from_le_bytes(len) != layout.payload_bytes() as u64 {
        return Err(Rejected::OtherLayout);
    }
    if stored.len() != header_len + layout.payload_bytes() {
        return Err(Rejected::Truncated);
    }
    let header = &stored[..header_len];
    let mut zeroed = header.to_vec();
    zeroed[40..44].fill(0);
    if word(40) != header_checksum(&zeroed) {
        return Err(Rejected::Checksum);
    }
    let digest = &header[44..76];
    let parent = &header[76..108];
    let same_tokens = header[FIXED..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .eq(tokens.iter().copied());
    if digest != link.digest.0 || parent != link.parent.0 || !same_tokens {
        return Err(Rejected::OtherBlock);
    }
    // The digest names the prefix only if it is the chain's next link: recomputed, not trusted.
    if link.parent.next(tokens) != link.digest {
        return Err(Rejected::OtherBlock);
    }
    let payload = &stored[header_len..];
    if word(36) != crc32fast::hash(payload) {
        return Err(Rejected::Checksum);
    }
    Ok(payload)
}

fn header_checksum(header_with_zeroed_crc: &[u8]) -> u32 {
    crc32fast::hash(header_with_zeroed_crc)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::block_digest::BlockDigest;

    pub(crate) fn layout() -> BlockLayout {
        BlockLayout {
            layers: 2,
            kv_heads: 1,
            head_dim: 4,
            block_size: 3,
            element: 4,
        }
    }

    pub(crate) fn block(seed: u32) -> (BlockLink, Vec<u32>, Vec<u8>) {
        let root = BlockDigest::root(&BlockDigest::of_parts([b"ns".as_slice()]), None);
        let tokens = vec![seed, seed + 1, seed + 2];
        let link = BlockLink {
            digest: root.next(&tokens),
            parent: root,
        };
        let payload = (0..layout().payload_bytes())
            .map(|i| (i as u32 * 7 + seed) as u8)
            .collect();
        (link, tokens, payload)
    }

    #[test]
    fn a_stored_block_reads_back_exactly() {
        let (link, tokens, payload) = block(5);
        let stored = encode(&layout(), &link, &tokens, &payload);
        assert_eq!(stored.len(), layout().stored_bytes());
        assert_eq!(decode(&stored, &layout(), &link, &tokens), Ok(&payload[..]));
    }

    #[test]
    fn every_damage_is_refused() {
        let (link, tokens, payload) = block(5);
        let stored = encode(&layout(), &link, &tokens, &payload);
        let check = |bytes: &[u8]| decode(bytes, &layout(), &link, &tokens).is_ok();
        // Truncated anywhere.
        for cut in [0, 7, FIXED - 1, FIXED + 5, stored.len() - 1] {
            assert!(!check(&stored[..cut]), "cut at {cut}");
        }
        // Any single flipped bit, header or payload.
        for at in (0..stored.len()).step_by(3) {
            let mut bad = stored.clone();
            bad[at] ^= 0x10;
            assert!(!check(&bad), "flip at {at}");
        }
        // Another layout, another block, other tokens, another parent.
        let other = BlockLayout {
            element: 2,
            ..layout()
        };
        assert_eq!(
            decode(&stored, &other, &link, &tokens),
            Err(Rejected::OtherLayout)
        );
        let (link2, tokens2, _) = block(9);
        assert_eq!(
            decode(&stored, &layout(), &link2, &tokens2),
            Err(Rejected::OtherBlock)
        );
        assert_eq!(
            decode(&stored, &layout(), &link, &[5, 6, 8]),
            Err(Rejected::OtherBlock)
        );
    }

    #[test]
    fn a_forged_digest_is_refused_even_with_valid_checksums() {
        let (mut link, tokens, payload) = block(5);
        link.digest = link.parent.next(&[1, 2, 3]);
        let stored = encode(&layout(), &link, &tokens, &payload);
        assert_eq!(
            decode(&stored, &layout(), &link, &tokens),
            Err(Rejected::OtherBlock)
        );
    }
}
