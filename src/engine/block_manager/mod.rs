//! Paged KV-cache blocks: allocation with reference counts, and prefix caching.
//!
//! A full block whose KV has been computed is registered under a hash chained over every token
//! of the sequence up to its end, so equal prefixes map to equal hashes. A new sequence reuses the
//! registered blocks of its longest matching prefix. Freed blocks keep their contents and stay
//! findable until the allocator needs them; they are evicted least-recently-freed first, and
//! blocks holding nothing reusable go before any cached one.
//!
//! A block's KV depends on every token before it, so reusing a block whose own tokens match but
//! whose prefix differs would let one request attend to another's context. The hash is only an
//! index: it is keyed with a random per-pool key (SipHash-1-3 with a 128-bit key from the OS), so
//! a client cannot aim a collision, and a hit is accepted only when the block's own tokens match
//! *and* its recorded parent is the very block (same slot, same generation) the lookup accepted
//! one step before. By induction a hit's whole prefix is verified token for token, whatever the
//! hash does.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use super::block_digest::{BlockDigest, BlockLink};
use super::pool_events::{PoolEvent, PoolJournal};

pub type BlockId = u32;

/// The block a registered block's KV was computed after: its slot and that slot's generation
/// (slots are reused after eviction, generations are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parent {
    block: BlockId,
    generation: u64,
}

#[derive(Debug, Clone, Default)]
struct Block {
    ref_count: u32,
    /// Set once the block is full and registered in the prefix cache.
    hash: Option<u64>,
    /// The tokens the hash covers in this block (guards against hash collisions).
    tokens: Vec<u32>,
    /// The previous block of the sequence that computed this one (`None` for a first block);
    /// meaningful while `hash` is set.
    parent: Option<Parent>,
    /// The `cache_salt` of the sequence that computed a first block (`None` for later blocks,
    /// whose parents carry it): a first block matches only lookups with the same salt.
    salt: Option<Arc<str>>,
    /// The block's content identity (set at registration while digests are kept).
    link: Option<BlockLink>,
    /// Bumped every time the slot is handed out for new contents.
    generation: u64,
    /// Position in the free queue while `ref_count == 0`.
    free_key: Option<i64>,
}

/// How a block's chain hash is computed: keyed SipHash in production; tests swap in a weak hash
/// to show that collisions cannot leak KV.
#[derive(Debug, Clone)]
enum ChainHasher {
    Keyed(RandomState),
    #[cfg(test)]
    Weak(fn(Option<u64>, &[u32]) -> u64),
}

impl ChainHasher {
    fn hash(&self, parent: Option<u64>, tokens: &[u32]) -> u64 {
        match self {
            ChainHasher::Keyed(key) => key.hash_one((parent, tokens)),
            #[cfg(test)]
            ChainHasher::Weak(f) => f(parent, tokens),
        }
    }

    /// What a salted chain starts from, in place of a parent hash (vLLM mixes `cache_salt`
    /// into the first block's hash the same way).
    fn salt_root(&self, salt: &str) -> u64 {
        match self {
            ChainHasher::Keyed(key) => key.hash_one(("cache_salt", salt)),
            #[cfg(test)]
            ChainHasher::Weak(_) => salt.len() as u64,
        }
    }
}

#[derive(Debug)]
pub struct BlockManager {
    block_size: usize,
    blocks: Vec<Block>,
    /// Free blocks ordered by eviction priority (smallest key evicted first).
    free: BTreeMap<i64, BlockId>,
    next_front: i64,
    next_back: i64,
    cached: HashMap<u64, BlockId>,
    prefix_caching: bool,
    hasher: ChainHasher,
    /// The namespace digests are rooted in, when registered blocks carry a [`BlockLink`]
    /// (offload tiers, KV events).
    digest_namespace: Option<BlockDigest>,
    journal: PoolJournal,
}

/// Result of looking up a prompt in the prefix cache and reserving its blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub blocks: Vec<BlockId>,
    /// Leading tokens whose KV is already in the returned blocks.
    pub cached_tokens: usize,
}

impl BlockManager {
    pub fn new(num_blocks: usize, block_size: usize, prefix_caching: bool) -> Self {
        let mut manager = Self {
            block_size,
            blocks: vec![Block::default(); num_blocks],
            free: BTreeMap::new(),
            next_front: -1,
            next_back: 0,
            cached: HashMap::new(),
            prefix_caching,
            // A fresh random key per pool (std draws it from the OS).
            hasher: ChainHasher::Keyed(RandomState::new()),
            digest_namespace: None,
            journal: PoolJournal::default(),
        };
        for id in 0..num_blocks as BlockId {
            manager.push_free(id, false);
        }
        manager
    }

    /// A pool whose chain hash is `weak` (tests: to craft collisions at will).
    #[cfg(test)]
    pub(crate) fn with_weak_hasher(
        num_blocks: usize,
        block_size: usize,
        weak: fn(Option<u64>, &[u32]) -> u64,
    ) -> Self {
        let mut manager = Self::new(num_blocks, block_size, true);
        manager.hasher = ChainHasher::Weak(weak);
        manager
    }

    /// Registered blocks carry their [`BlockLink`] under `namespace`, and the pool records
    /// what `journal` asks for (drained with [`Self::drain_events`]).
    pub fn with_digests(mut self, namespace: BlockDigest, journal: PoolJournal) -> Self {
        self.digest_namespace = Some(namespace);
        self.journal = journal;
        self
    }

    /// What happened to registered blocks since the last call. Evicted blocks' KV is intact
    /// until the next forward pass writes into them: drain before running one.
    pub fn drain_events(&mut self) -> Vec<PoolEvent> {
        self.journal.drain()
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    pub fn num_used(&self) -> usize {
        self.blocks.len() - self.free.len()
    }

    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Hash of a full block given the hash of the block before it (keyed per pool).
    pub fn chain_hash(&self, parent: Option<u64>, tokens: &[u32]) -> u64 {
        self.hasher.hash(parent, tokens)
    }

    /// Reserves blocks for the first `needed_tokens` of `tokens`, reusing cached blocks of the
    /// longest matching prefix. Never reuses the block holding the last token, so the step that
    /// computes the last position writes only into blocks this sequence owns alone. Returns
    /// `None` (and changes nothing) when the pool cannot supply the rest.
    pub fn allocate(
        &mut self,
        salt: Option<&str>,
        tokens: &[u32],
        needed_tokens: usize,
    ) -> Option<Allocation> {
        let hits = self.lookup(salt, tokens);
        let total = self.blocks_for(needed_tokens).max(hits.len());
        let fresh = total - hits.len();
        let hits_from_free = hits
            .iter()
            .filter(|&&b| self.blocks[b as usize].ref_count == 0)
            .count();
        if self.free.len() < fresh + hits_from_free {
            return None;
        }
        let mut blocks = Vec::with_capacity(total);
        for &b in &hits {
            self.retain(b);
            blocks.push(b);
        }
        for _ in 0..fresh {
            blocks.push(self.take_free()?);
        }
        Some(Allocation {
            cached_tokens: hits.len() * self.block_size,
            blocks,
        })
    }

    /// The cached blocks of the longest registered prefix of `tokens` computed under the same
    /// `salt` (for admission decisions).
    pub fn lookup(&self, salt: Option<&str>, tokens: &[u32]) -> Vec<BlockId> {
        if !self.prefix_caching || tokens.is_empty() {
            return Vec::new();
        }
        let reusable = (tokens.len() - 1) / self.block_size;
        let mut parent_hash = salt.map(|s| self.hasher.salt_root(s));
        let mut parent: Option<Parent> = None;
        let mut hits = Vec::new();
        for chunk in tokens.chunks(self.block_size).take(reusable) {
            let h = self.chain_hash(parent_hash, chunk);
            let Some(&b) = self.cached.get(&h) else {
                break;
            };
            let block = &self.blocks[b as usize];
            if block.tokens != chunk || block.parent != parent {
                break;
            }
            if parent.is_none() && block.salt.as_deref() != salt {
                break;
            }
            hits.push(b);
            parent_hash = Some(h);
            parent = Some(Parent {
                block: b,
                generation: block.generation,
            });
        }
        hits
    }

    /// Grows `table` so it covers `tokens` positions. Returns false (table unchanged) when the
    /// pool is short.
    pub fn grow(&mut self, table: &mut Vec<BlockId>, tokens: usize) -> bool {
        let needed = self.blocks_for(tokens).saturating_sub(table.len());
        if needed > self.free.len() {
            return false;
        }
        for _ in 0..needed {
            match self.take_free() {
                Some(b) => table.push(b),
                None => return false,
            }
        }
        true
    }

    /// Registers the full blocks of a sequence whose KV is computed up to `computed` tokens.
    /// `hashes` is the sequence's chain so far; it is extended in place.
    pub fn register_full_blocks(
        &mut self,
        table: &[BlockId],
        salt: Option<&Arc<str>>,
        tokens: &[u32],
        computed: usize,
        hashes: &mut Vec<u64>,
    ) {
        if !self.prefix_caching {
            return;
        }
        let full = (computed / self.block_size).min(table.len());
        while hashes.len() < full {
            let i = hashes.len();
            let chunk = &tokens[i * self.block_size..(i + 1) * self.block_size];
            let parent_hash = match i {
                0 => salt.map(|s| self.hasher.salt_root(s)),
                _ => hashes.last().copied(),
            };
            let h = self.chain_hash(parent_hash, chunk);
            hashes.push(h);
            // The block this one's KV was computed after. If it is not itself findable under the
            // sequence's chain (another block already held that hash), no lookup can reach this
            // one through a verified parent, so it is not registered either.
            let parent = match i {
                0 => None,
                _ => {
                    let p = table[i - 1];
                    let pb = &self.blocks[p as usize];
                    if pb.hash.is_none() || pb.hash != parent_hash {
                        continue;
                    }
                    Some(Parent {
                        block: p,
                        generation: pb.generation,
                    })
                }
            };
            let link = self.link_after(i, table, salt, chunk);
            let b = table[i];
            let block = &mut self.blocks[b as usize];
            if block.hash.is_none() && !self.cached.contains_key(&h) {
                block.hash = Some(h);
                block.tokens = chunk.to_vec();
                block.parent = parent;
                block.salt = if i == 0 { salt.cloned() } else { None };
                block.link = link;
                self.cached.insert(h, b);
                if let Some(link) = link {
                    self.journal
                        .stored(b, link, chunk, i == 0, salt.filter(|_| i == 0));
                }
            }
        }
    }

    /// Releases a sequence's blocks. Later blocks are evicted before earlier ones, which other
    /// prompts are more likely to share.
    pub fn free(&mut self, table: &[BlockId]) {
        for &b in table.iter().rev() {
            let block = &mut self.blocks[b as usize];
            debug_assert!(block.ref_count > 0, "double free of block {b}");
            block.ref_count = block.ref_count.saturating_sub(1);
            if block.ref_count == 0 {
                let cached = block.hash.is_some();
                self.push_free(b, cached);
            }
        }
    }

    fn retain(&mut self, b: BlockId) {
        let block = &mut self.blocks[b as usize];
        if let Some(key) = block.free_key.take() {
            self.free.remove(&key);
        }
        block.ref_count += 1;
    }

    fn take_free(&mut self) -> Option<BlockId> {
        let (_, b) = self.free.pop_first()?;
        let block = &mut self.blocks[b as usize];
        block.free_key = None;
        if let Some(h) = block.hash.take() {
            self.cached.remove(&h);
            let tokens = std::mem::take(&mut block.tokens);
            block.parent = None;
            block.salt = None;
            if let Some(link) = block.link.take() {
                self.journal.evicted(b, link, tokens);
            }
        }
        // New contents: blocks registered after the old ones no longer follow this slot.
        block.generation += 1;
        block.ref_count = 1;
        Some(b)
    }

    /// Cached blocks go to the back (evicted last); empty ones to the front.
    fn push_free(&mut self, b: BlockId, back: bool) {
        let key = if back {
            self.next_back += 1;
            self.next_back
        } else {
            self.next_front -= 1;
            self.next_front
        };
        self.blocks[b as usize].free_key = Some(key);
        self.free.insert(key, b);
    }

    /// Checks internal consistency (tests and debug assertions).
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, block) in self.blocks.iter().enumerate() {
            let in_free = block
                .free_key
                .is_some_and(|k| self.free.get(&k) == Some(&(id as BlockId)));
            if (block.ref_count == 0) != in_free {
                return Err(format!(
                    "block {id}: ref_count {} but in free queue: {in_free}",
                    block.ref_count
                ));
            }
            if let Some(h) = block.hash
                && self.cached.get(&h) != Some(&(id as BlockId))
            {
                return Err(format!("block {id}: hash not registered"));
            }
        }
        if self.free.len() != self.blocks.iter().filter(|b| b.ref_count == 0).count() {
            return Err("free queue holds a block twice".into());
        }
        Ok(())
    }
}

mod tiers;

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn toks(n: usize, salt: u32) -> Vec<u32> {
        (0..n as u32).map(|i| i * 7 + salt).collect()
    }

    #[test]
    fn allocate_and_free_return_every_block() {
        let mut m = BlockManager::new(8, 4, true);
        let a = m.allocate(None, &toks(10, 0), 10).unwrap();
        assert_eq!(a.blocks.len(), 3);
        assert_eq!(a.cached_tokens, 0);
        assert_eq!(m.num_free(), 5);
        m.free(&a.blocks);
        assert_eq!(m.num_free(), 8);
        m.check_invariants().unwrap();
    }

    #[test]
    fn shared_prefix_hits_after_registration() {
        let mut m = BlockManager::new(16, 4, true);
        let prompt = toks(13, 0);
        let a = m.allocate(None, &prompt, 13).unwrap();
        let mut hashes = Vec::new();
        m.register_full_blocks(&a.blocks, None, &prompt, 13, &mut hashes);
        assert_eq!(hashes.len(), 3);
        // Same first 12 tokens, different tail: three blocks hit while `a` still runs.
        let mut other = prompt[..12].to_vec();
        other.extend([999, 998]);
        let b = m.allocate(None, &other, other.len()).unwrap();
        assert_eq!(b.cached_tokens, 12);
        assert_eq!(&b.blocks[..3], &a.blocks[..3]);
        // After both finish, the cached blocks survive and hit again.
        m.free(&a.blocks);
        m.free(&b.blocks);
        let c = m.allocate(None, &prompt, 13).unwrap();
        assert_eq!(c.cached_tokens, 12);
        m.check_invariants().unwrap();
    }

    #[test]
    fn the_block_with_the_last_token_is_never_reused() {
        let mut m = BlockManager::new(8, 4, true);
        let prompt = toks(8, 1);
        let a = m.allocate(None, &prompt, 8).unwrap();
        let mut hashes = Vec::new();
        m.register_full_blocks(&a.blocks, None, &prompt, 8, &mut hashes);
        m.free(&a.blocks);
        let b = m.allocate(None, &prompt, 8).unwrap();
        assert_eq!(
            b.cached_tokens, 4,
            "exactly-full prompt must recompute its last block"
        );
        assert_ne!(b.blocks[1], a.blocks[1]);
    }

    #[test]
    fn eviction_prefers_blocks_without_reusable_content() {
        let mut m = BlockManager::new(4, 2, true);
        let prompt = toks(5, 2);
        let a = m.allocate(None, &prompt, 5).unwrap();
        let mut hashes = Vec::new();
        m.register_full_blocks(&a.blocks, None, &prompt, 5, &mut hashes);
        m.free(&a.blocks);
        // Needs one fresh block: the uncached never-used one goes first, the cache survives.
        let _x = m.allocate(None, &toks(2, 50), 2).unwrap();
        assert_eq!(m.lookup(None, &prompt).len(), 2);
    }

    #[test]
    fn disabled_prefix_caching_never_hits() {
        let mut m = BlockManager::new(8, 4, false);
        let prompt = toks(9, 0);
        let a = m.allocate(None, &prompt, 9).unwrap();
        let mut hashes = Vec::new();
        m.register_full_blocks(&a.blocks, None, &prompt, 9, &mut hashes);
        m.free(&a.blocks);
        assert_eq!(m.allocate(None, &prompt, 9).unwrap().cached_tokens, 0);
    }

    /// The hash of a block's own tokens, ignoring its parent: every two prompts whose block `i`
    /// holds the same tokens collide there, whatever came before (the worst a 64-bit chained hash
    /// with a known key allows an attacker to aim for).
    fn parent_blind(_parent: Option<u64>, tokens: &[u32]) -> u64 {
        tokens
            .iter()
            .fold(17u64, |h, &t| h.wrapping_mul(31).wrapping_add(u64::from(t)))
    }

    fn register(m: &mut BlockManager, prompt: &[u32]) -> Allocation {
        let a = m.allocate(None, prompt, prompt.len()).unwrap();
        let mut hashes = Vec::new();
        m.register_full_blocks(&a.blocks, None, prompt, prompt.len(), &mut hashes);
        a
    }

    /// The attack behind prefix-cache leaks: the attacker's own first block is cached, and its
    /// second block's chain hash collides with the victim's second block, whose tokens it copies.
    /// A guard that compares only the block's own tokens hands the attacker the victim's KV,
    /// which was computed after the victim's (secret) first block.
    #[test]
    fn colliding_chains_never_share_kv_computed_after_another_prefix() {
        let mut m = BlockManager::with_weak_hasher(32, 4, parent_blind);
        let secret = [901, 902, 903, 904];
        let attacker_head = [1, 2, 3, 4];
        let common = [50, 51, 52, 53];
        // The attacker's first block is in the cache (from an earlier request of its own).
        let warmup: Vec<u32> = attacker_head.iter().chain(&[7, 7]).copied().collect();
        let w = register(&mut m, &warmup);
        // The victim's prompt: secret block, then a block the attacker can guess.
        let victim: Vec<u32> = secret.iter().chain(&common).chain(&[9]).copied().collect();
        let v = register(&mut m, &victim);
        assert_eq!(v.cached_tokens, 0);
        // The attacker: its own head, the guessed block, anything.
        let attack: Vec<u32> = attacker_head
            .iter()
            .chain(&common)
            .chain(&[5])
            .copied()
            .collect();
        assert_eq!(
            m.chain_hash(Some(m.chain_hash(None, &attacker_head)), &common),
            m.chain_hash(Some(m.chain_hash(None, &secret)), &common),
            "the chains collide at block 1"
        );
        let hits = m.lookup(None, &attack);
        assert_eq!(
            hits,
            vec![w.blocks[0]],
            "only the attacker's own block is reused"
        );
        assert!(!hits.contains(&v.blocks[1]));
        let a = m.allocate(None, &attack, attack.len()).unwrap();
        assert_eq!(a.cached_tokens, 4);
        assert_ne!(a.blocks[1], v.blocks[1]);
        // The victim's own prefix still hits in full.
        assert_eq!(m.lookup(None, &victim), vec![v.blocks[0], v.blocks[1]]);
        m.check_invariants().unwrap();
    }

    /// A child is reachable only through the very parent it was computed after: once that
    /// slot holds new contents (a new generation), the child is unreachable. (Children are
    /// evicted before their parents, so this is defence in depth; the slot's refill is simulated.)
    #[test]
    fn a_refilled_parent_slot_does_not_lead_to_its_old_children() {
        let mut m = BlockManager::new(8, 2, true);
        let prompt = [10, 11, 20, 21, 99];
        let a = register(&mut m, &prompt);
        assert_eq!(m.lookup(None, &prompt), a.blocks[..2].to_vec());
        m.blocks[a.blocks[0] as usize].generation += 1;
        assert_eq!(m.lookup(None, &prompt), vec![a.blocks[0]]);
    }

    #[test]
    fn chain_hashes_are_keyed_per_pool() {
        let a = BlockManager::new(1, 4, true);
        let b = BlockManager::new(1, 4, true);
        let tokens = [1, 2, 3, 4];
        assert_ne!(a.chain_hash(None, &tokens), b.chain_hash(None, &tokens));
        assert_eq!(a.chain_hash(None, &tokens), a.chain_hash(None, &tokens));
    }

    #[test]
    fn allocation_fails_cleanly_when_short() {
        let mut m = BlockManager::new(2, 4, true);
        assert!(m.allocate(None, &toks(12, 0), 12).is_none());
        assert_eq!(m.num_free(), 2);
        let mut table = Vec::new();
        assert!(m.grow(&mut table, 8));
        assert!(!m.grow(&mut table, 9));
        assert_eq!(table.len(), 2);
        m.check_invariants().unwrap();
    }

    #[test]
    fn blocks_match_only_within_the_same_cache_salt() {
        let mut m = BlockManager::new(16, 4, true);
        let prompt = toks(13, 0);
        let alice: Arc<str> = Arc::from("alice");
        let a = m.allocate(Some("alice"), &prompt, 13).unwrap();
        let mut hashes = Vec::new();
        m.register_full_blocks(&a.blocks, Some(&alice), &prompt, 13, &mut hashes);
        m.free(&a.blocks);
        assert_eq!(m.lookup(Some("alice"), &prompt).len(), 3);
        assert!(m.lookup(Some("bob"), &prompt).is_empty());
        assert!(m.lookup(None, &prompt).is_empty());
        // And the unsalted chain does not serve a salted request either.
        let b = m.allocate(None, &prompt, 13).unwrap();
        assert_eq!(b.cached_tokens, 0);
        let mut hashes = Vec::new();
        m.register_full_blocks(&b.blocks, None, &prompt, 13, &mut hashes);
        m.free(&b.blocks);
        assert_eq!(m.lookup(None, &prompt).len(), 3);
        assert!(m.lookup(Some("carol"), &prompt).is_empty());
        m.check_invariants().unwrap();
    }

    #[test]
    fn a_salt_root_colliding_with_no_salt_still_never_shares() {
        // The weak hasher's root is the salt's length, so salts of equal length give equal
        // hashes: the salt stored with the first block must still keep them apart.
        let mut m = BlockManager::with_weak_hasher(16, 4, |p, t| p.unwrap_or(0) + t[0] as u64);
        let prompt = toks(9, 0);
        let ab: Arc<str> = Arc::from("ab");
        let a = m.allocate(Some("ab"), &prompt, 9).unwrap();
        let mut hashes = Vec::new();
        m.register_full_blocks(&a.blocks, Some(&ab), &prompt, 9, &mut hashes);
        m.free(&a.blocks);
        assert_eq!(m.lookup(Some("ab"), &prompt).len(), 2);
        assert!(m.lookup(Some("cd"), &prompt).is_empty());
    }
}
