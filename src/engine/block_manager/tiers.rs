//! The pool's side of the offload tiers and the KV event stream: each registered block's
//! [`BlockLink`] (its digest chain), the links a prompt's tier-held continuation would have, and
//! reservations that register restored blocks under the prefix they continue.

use std::sync::Arc;

use super::{BlockId, BlockManager, Parent};
use crate::engine::block_digest::{BlockDigest, BlockLink};

impl BlockManager {
    /// The link of block `i` of a sequence with block table `table`: chained from the previous
    /// block's (registered, or this block is not registered either) or from the salt's root.
    pub(super) fn link_after(
        &self,
        i: usize,
        table: &[BlockId],
        salt: Option<&Arc<str>>,
        chunk: &[u32],
    ) -> Option<BlockLink> {
        let namespace = self.digest_namespace.as_ref()?;
        let parent = match i {
            0 => BlockDigest::root(namespace, salt.map(|s| &**s)),
            _ => self.blocks[table[i - 1] as usize].link?.digest,
        };
        Some(BlockLink {
            digest: parent.next(chunk),
            parent,
        })
    }

    /// The links of the blocks of `tokens` after its pool hits `hits` (as [`Self::lookup`]
    /// returned them), up to the last block a hit may cover: the blocks a tier may hold. Lazy,
    /// so a caller that stops at the first block no tier holds hashes no further. Empty without
    /// digests.
    pub fn links_after<'a>(
        &self,
        salt: Option<&str>,
        tokens: &'a [u32],
        hits: &[BlockId],
    ) -> impl Iterator<Item = BlockLink> + use<'a> {
        let start = match (&self.digest_namespace, hits.last()) {
            (None, _) => None,
            (Some(_), Some(&last)) => self.blocks[last as usize].link.map(|l| l.digest),
            (Some(namespace), None) => Some(BlockDigest::root(namespace, salt)),
        };
        let reusable = match start {
            Some(_) if self.prefix_caching && !tokens.is_empty() => {
                (tokens.len() - 1) / self.block_size
            }
            _ => 0,
        };
        tokens
            .chunks(self.block_size)
            .take(reusable)
            .skip(hits.len())
            .scan(start.unwrap_or_default(), |parent, chunk| {
                let link = BlockLink {
                    digest: parent.next(chunk),
                    parent: *parent,
                };
                *parent = link.digest;
                Some(link)
            })
    }

    /// Takes a block for each of `links` (the blocks of `tokens` right after its pool hits
    /// `hits`) and registers it in the prefix cache, held until [`Self::finish_restored`]:
    /// the blocks to fill from a tier. Fewer than asked when the pool runs short.
    pub fn reserve_restored(
        &mut self,
        salt: Option<&Arc<str>>,
        tokens: &[u32],
        hits: &[BlockId],
        links: &[BlockLink],
    ) -> Vec<BlockId> {
        // Held while taking blocks, so the eviction this causes never takes a hit.
        for &b in hits {
            self.retain(b);
        }
        let mut parent_hash = match hits.last() {
            Some(&last) => self.blocks[last as usize].hash,
            None => salt.map(|s| self.hasher.salt_root(s)),
        };
        let mut parent = hits.last().map(|&b| Parent {
            block: b,
            generation: self.blocks[b as usize].generation,
        });
        let mut reserved = Vec::with_capacity(links.len());
        for (chunk, link) in tokens.chunks(self.block_size).skip(hits.len()).zip(links) {
            let h = self.chain_hash(parent_hash, chunk);
            if chunk.len() < self.block_size || self.cached.contains_key(&h) {
                break;
            }
            let Some(b) = self.take_free() else { break };
            let first = parent.is_none();
            let block = &mut self.blocks[b as usize];
            block.hash = Some(h);
            block.tokens = chunk.to_vec();
            block.parent = parent;
            block.salt = if first { salt.cloned() } else { None };
            block.link = Some(*link);
            self.cached.insert(h, b);
            parent_hash = Some(h);
            parent = Some(Parent {
                block: b,
                generation: block.generation,
            });
            reserved.push(b);
        }
        self.free(hits);
        reserved
    }

    /// After filling [`Self::reserve_restored`]'s blocks: the first `filled` stay in the
    /// prefix cache (free, found by the next lookup); the rest are dropped from it.
    pub fn finish_restored(&mut self, reserved: &[BlockId], filled: usize) {
        let filled = filled.min(reserved.len());
        for &b in &reserved[filled..] {
            let block = &mut self.blocks[b as usize];
            if let Some(h) = block.hash.take() {
                self.cached.remove(&h);
            }
            block.tokens.clear();
            block.parent = None;
            block.salt = None;
            block.link = None;
            block.ref_count = 0;
            self.push_free(b, false);
        }
        for &b in &reserved[..filled] {
            let block = &self.blocks[b as usize];
            if let Some(link) = block.link {
                let first = block.parent.is_none();
                self.journal
                    .stored(b, link, &block.tokens, first, block.salt.as_ref());
            }
        }
        self.free(&reserved[..filled]);
    }

    /// Every block registered with a link: its slot, link and tokens (to save them all).
    pub fn registered(&self) -> Vec<(BlockId, BlockLink, Vec<u32>)> {
        self.blocks
            .iter()
            .enumerate()
            .filter_map(|(id, block)| {
                let link = block.link?;
                block.hash?;
                Some((id as BlockId, link, block.tokens.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::toks;
    use super::*;
    use crate::engine::pool_events::{PoolEvent, PoolJournal};

    fn with_digests(blocks: usize, bs: usize) -> BlockManager {
        BlockManager::new(blocks, bs, true)
            .with_digests(BlockDigest([3; 32]), PoolJournal::new(true, true))
    }

    /// Computes a whole sequence and frees it: its full blocks stay cached.
    fn compute_and_free(m: &mut BlockManager, salt: Option<&Arc<str>>, tokens: &[u32]) {
        let a = m
            .allocate(salt.map(|s| &**s), tokens, tokens.len())
            .unwrap();
        m.register_full_blocks(&a.blocks, salt, tokens, tokens.len(), &mut Vec::new());
        m.free(&a.blocks);
    }

    #[test]
    fn evictions_carry_the_links_a_later_lookup_computes() {
        let mut m = with_digests(4, 4);
        let salt: Arc<str> = "s".into();
        let tokens = toks(13, 1); // three full blocks
        compute_and_free(&mut m, Some(&salt), &tokens);
        let stored = m.drain_events();
        assert_eq!(stored.len(), 3);
        assert!(stored.iter().all(|e| matches!(e, PoolEvent::Stored { .. })));
        let links: Vec<_> = m.links_after(Some("s"), &tokens, &[]).collect();
        assert_eq!(links.len(), 3);
        // Another prompt takes the whole pool: the three cached blocks are evicted.
        m.allocate(None, &toks(16, 50), 16).unwrap();
        let evicted: Vec<_> = m
            .drain_events()
            .into_iter()
            .filter_map(|e| match e {
                PoolEvent::Evicted { link, tokens, .. } => Some((link, tokens)),
                _ => None,
            })
            .collect();
        assert_eq!(evicted.len(), 3);
        for (link, chunk) in &evicted {
            let at = links.iter().position(|l| l == link).unwrap();
            assert_eq!(chunk[..], tokens[at * 4..at * 4 + 4]);
        }
        // Another salt, another chain.
        assert!(
            m.links_after(None, &tokens, &[])
                .all(|l| !links.contains(&l))
        );
    }

    #[test]
    fn restored_blocks_become_hits_and_unfilled_ones_do_not() {
        let mut m = with_digests(8, 4);
        let tokens = toks(21, 1); // five full blocks, the fifth never reusable whole
        compute_and_free(&mut m, None, &tokens[..9]); // two blocks cached
        let hits = m.lookup(None, &tokens);
        assert_eq!(hits.len(), 2);
        let links: Vec<_> = m.links_after(None, &tokens, &hits).collect();
        assert_eq!(links.len(), 3); // blocks 2, 3, 4 (the last token's block excluded)
        m.drain_events();
        let reserved = m.reserve_restored(None, &tokens, &hits, &links);
        assert_eq!(reserved.len(), 3);
        m.check_invariants().unwrap();
        m.finish_restored(&reserved, 2);
        m.check_invariants().unwrap();
        assert_eq!(m.lookup(None, &tokens).len(), 4);
        assert_eq!(m.num_used(), 0);
        let stored = m.drain_events();
        assert_eq!(stored.len(), 2);
        // A later sequence over the same prompt reuses them and registers the rest itself.
        let a = m.allocate(None, &tokens, tokens.len()).unwrap();
        assert_eq!(a.cached_tokens, 16);
    }
}
