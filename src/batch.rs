//! The shape of one forward step: a flat run of tokens from several sequences, each either a
//! prefill chunk or a single decode token, over a KV cache laid out in fixed-size blocks.
//!
//! All index math (positions, slot mapping, per-token context) lives here, once, so the CPU
//! attention, the device-generic attention and the CUDA kernels read the same numbers.

/// One sequence's share of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceChunk {
    /// Tokens this sequence feeds in this step (a prefill chunk, or 1 when decoding).
    pub num_query_tokens: usize,
    /// Tokens of this sequence in the KV cache once the step has written its own.
    pub context_len: usize,
    /// Physical blocks holding the sequence's KV, in order; covers `context_len` tokens.
    pub block_table: Vec<u32>,
    /// How many of this chunk's last tokens the step returns logits for: 0 (a prefill chunk
    /// that does not end the prompt), 1 (the next token is sampled), or 1 + the draft tokens
    /// when the chunk verifies a speculation (each position's logits check the draft token
    /// after it).
    pub logits_tokens: usize,
}

impl SequenceChunk {
    /// Whether the step returns any logits for this chunk.
    pub fn needs_logits(&self) -> bool {
        self.logits_tokens > 0
    }

    /// Position of the first token fed this step.
    pub fn first_position(&self) -> usize {
        self.context_len - self.num_query_tokens
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchInput {
    /// Token ids of all chunks, concatenated in chunk order.
    pub token_ids: Vec<u32>,
    pub chunks: Vec<SequenceChunk>,
}

impl BatchInput {
    pub fn num_tokens(&self) -> usize {
        self.token_ids.len()
    }

    /// Checks the invariants every attention backend relies on.
    pub fn validate(&self, block_size: usize, num_blocks: usize) -> Result<(), String> {
        let fed: usize = self.chunks.iter().map(|c| c.num_query_tokens).sum();
        if fed != self.token_ids.len() {
            return Err(format!(
                "chunks feed {fed} tokens but {} were given",
                self.token_ids.len()
            ));
        }
        for (i, c) in self.chunks.iter().enumerate() {
            if c.logits_tokens > c.num_query_tokens {
                return Err(format!(
                    "chunk {i}: logits for {} of its {} tokens",
                    c.logits_tokens, c.num_query_tokens
                ));
            }
            if c.num_query_tokens == 0 || c.num_query_tokens > c.context_len {
                return Err(format!(
                    "chunk {i}: {} query tokens for context {}",
                    c.num_query_tokens, c.context_len
                ));
            }
            if c.block_table.len() * block_size < c.context_len {
                return Err(format!(
                    "chunk {i}: {} blocks cannot hold {} tokens",
                    c.block_table.len(),
                    c.context_len
                ));
            }
            if let Some(b) = c.block_table.iter().find(|&&b| b as usize >= num_blocks) {
                return Err(format!(
                    "chunk {i}: block {b} is outside the pool of {num_blocks}"
                ));
            }
        }
        Ok(())
    }

    /// Absolute position of every token.
    pub fn positions(&self) -> Vec<u32> {
        self.chunks
            .iter()
            .flat_map(|c| (c.first_position()..c.context_len).map(|p| p as u32))
            .collect()
    }

    /// KV-cache slot every token writes to.
    pub fn slot_mapping(&self, block_size: usize) -> Vec<u32> {
        self.chunks
            .iter()
            .flat_map(|c| {
                (c.first_position()..c.context_len).map(|p| slot_of(&c.block_table, p, block_size))
            })
            .collect()
    }

    /// Offset of each chunk's first token in the flat token run (length = chunks + 1).
    pub fn query_offsets(&self) -> Vec<usize> {
        let mut offsets = Vec::with_capacity(self.chunks.len() + 1);
        let mut acc = 0;
        offsets.push(0);
        for c in &self.chunks {
            acc += c.num_query_tokens;
            offsets.push(acc);
        }
        offsets
    }

    /// Flat rows of the tokens that need logits (each chunk's last `logits_tokens`), in order.
    pub fn logits_rows(&self) -> Vec<u32> {
        let offsets = self.query_offsets();
        self.chunks
            .iter()
            .enumerate()
            .flat_map(|(i, c)| (offsets[i + 1] - c.logits_tokens..offsets[i + 1]).map(|r| r as u32))
            .collect()
    }
}

/// The cache slot holding position `pos` of a sequence with the given block table.
pub fn slot_of(block_table: &[u32], pos: usize, block_size: usize) -> u32 {
    block_table[pos / block_size] * block_size as u32 + (pos % block_size) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BatchInput {
        BatchInput {
            token_ids: vec![1, 2, 3, 9, 7, 8],
            chunks: vec![
                // prefill of 3 fresh tokens in block 5
                SequenceChunk {
                    num_query_tokens: 3,
                    context_len: 3,
                    block_table: vec![5],
                    logits_tokens: 1,
                },
                // decode at position 5 (6 tokens in cache), blocks [2, 0]
                SequenceChunk {
                    num_query_tokens: 1,
                    context_len: 6,
                    block_table: vec![2, 0],
                    logits_tokens: 1,
                },
                // second prefill chunk: positions 4..6, not the last chunk
                SequenceChunk {
                    num_query_tokens: 2,
                    context_len: 6,
                    block_table: vec![1, 3],
                    logits_tokens: 0,
                },
            ],
        }
    }

    #[test]
    fn index_math() {
        let b = sample();
        assert_eq!(b.validate(4, 8), Ok(()));
        assert_eq!(b.positions(), vec![0, 1, 2, 5, 4, 5]);
        assert_eq!(b.slot_mapping(4), vec![20, 21, 22, 1, 12, 13]);
        assert_eq!(b.query_offsets(), vec![0, 3, 4, 6]);
        assert_eq!(b.logits_rows(), vec![2, 3]);
    }

    #[test]
    fn a_verify_chunk_returns_logits_for_its_last_token_and_each_draft() {
        let mut b = sample();
        // The decode carries two draft tokens: 3 tokens fed, logits for all 3.
        b.token_ids = vec![1, 2, 3, 9, 10, 11, 7, 8];
        b.chunks[1].num_query_tokens = 3;
        b.chunks[1].context_len = 8;
        b.chunks[1].logits_tokens = 3;
        assert_eq!(b.validate(4, 8), Ok(()));
        assert_eq!(b.logits_rows(), vec![2, 3, 4, 5]);
        b.chunks[1].logits_tokens = 4;
        assert!(b.validate(4, 8).unwrap_err().contains("logits for 4"));
    }

    #[test]
    fn validation_catches_bad_tables() {
        let mut b = sample();
        b.chunks[1].block_table = vec![2];
        assert!(b.validate(4, 8).unwrap_err().contains("cannot hold"));
        let mut b = sample();
        b.chunks[0].block_table = vec![9];
        assert!(b.validate(4, 8).unwrap_err().contains("outside the pool"));
        let mut b = sample();
        b.token_ids.pop();
        assert!(b.validate(4, 8).is_err());
    }
}
