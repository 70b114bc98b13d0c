//! How the generic backend cuts one step into dense attention problems, so that the temporaries
//! of each problem stay within a [`TileBudget`] however many sequences share the step.
//!
//! - Decode tokens (one query per sequence) are attended together, `[sequences, 1, keys]`, keys
//!   padded to the longest context of the group. Sequences are grouped longest context first,
//!   and a group closes when its gathered K (or V) or its scores would pass the budget.
//! - A prefill chunk is attended alone, in tiles of consecutive query rows over the keys the
//!   tile's last row sees, as many rows per tile as the score budget allows.
//!
//! Only one sequence's own context can push a problem past the budget (a single decode or a
//! one-row tile over a long context): that bounds memory by `max_model_len`, never by the
//! number of sequences in the step.

use crate::batch::BatchInput;

/// Upper bounds on one problem's temporaries, in elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileBudget {
    /// `sequences × heads × query rows × keys`: the f32 score matrix.
    pub scores: usize,
    /// `sequences × keys × kv_heads × head_dim`: one of the gathered K and V.
    pub gathered: usize,
}

impl Default for TileBudget {
    /// 256 MiB of f32 scores, 512 MiB of gathered K at f32 (256 MiB at bf16): large enough that
    /// a GPU runs a step as a few big kernels per layer (at the Qwen3 shapes, 64 decodes at 2k
    /// context are one group, a 1024-token chunk at 2k context one tile), small next to the
    /// weights and the KV cache.
    fn default() -> Self {
        TileBudget {
            scores: 1 << 26,
            gathered: 1 << 27,
        }
    }
}

/// One dense attention problem of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The decode tokens of these chunks (indices into `BatchInput::chunks`), one query each.
    Decodes(Vec<usize>),
    /// Query rows `start..start + len` of the prefill chunk `chunk`, attended causally.
    Tile {
        chunk: usize,
        start: usize,
        len: usize,
    },
}

/// The problems of a step, decodes first, then each prefill chunk's tiles in order.
/// `kv_row` is `kv_heads × head_dim`.
pub fn problems(
    batch: &BatchInput,
    heads: usize,
    kv_row: usize,
    budget: TileBudget,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut decodes: Vec<usize> = (0..batch.chunks.len())
        .filter(|&i| batch.chunks[i].num_query_tokens == 1)
        .collect();
    let longest = decodes
        .iter()
        .map(|&i| batch.chunks[i].context_len)
        .max()
        .unwrap_or(0);
    let fits = |n: usize, keys: usize| {
        n * keys * kv_row <= budget.gathered && n * heads * keys <= budget.scores
    };
    if !fits(decodes.len(), longest) {
        // Longest first (stable): each group's padding is set by its first member. (One group
        // keeps the batch order, so no reordering of the outputs is needed.)
        decodes.sort_by_key(|&i| std::cmp::Reverse(batch.chunks[i].context_len));
    }
    let mut group: Vec<usize> = Vec::new();
    for i in decodes {
        if let Some(&first) = group.first() {
            let keys = batch.chunks[first]
                .context_len
                .max(batch.chunks[i].context_len);
            if !fits(group.len() + 1, keys) {
                problems.push(Problem::Decodes(std::mem::take(&mut group)));
            }
        }
        group.push(i);
    }
    if !group.is_empty() {
        problems.push(Problem::Decodes(group));
    }
    for (chunk, c) in batch.chunks.iter().enumerate() {
        let rows = c.num_query_tokens;
        if rows == 1 {
            continue;
        }
        // The last tile sees every key of the chunk: size all tiles for that, then even them out.
        let per_tile = (budget.scores / (heads * c.context_len).max(1)).clamp(1, rows);
        let tiles = rows.div_ceil(per_tile);
        let per_tile = rows.div_ceil(tiles);
        for start in (0..rows).step_by(per_tile) {
            problems.push(Problem::Tile {
                chunk,
                start,
                len: per_tile.min(rows - start),
            });
        }
    }
    problems
}

/// What a step's problems hold in memory, in bytes: the largest problem's temporaries (the
/// gathered K or V in the compute dtype, and its scores: two f32 copies and one in the compute
/// dtype alive at once) and the index tensors every problem keeps for the whole step (slots,
/// gather rows, mask rows; u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    pub largest_problem: usize,
    pub index: usize,
}

/// [`Footprint`] of `batch` under `budget`, for `heads` query heads over `kv_heads × head_dim`
/// K/V rows with `dtype_size`-byte elements. Host arithmetic only: sizes the profiling step.
pub fn footprint(
    batch: &BatchInput,
    (heads, kv_heads, head_dim): (usize, usize, usize),
    dtype_size: usize,
    budget: TileBudget,
) -> Footprint {
    let mut out = Footprint::default();
    for problem in problems(batch, heads, kv_heads * head_dim, budget) {
        // (sequences, query rows each, keys)
        let (b, mq, mk) = match problem {
            Problem::Decodes(members) => {
                let keys = members
                    .iter()
                    .map(|&i| batch.chunks[i].context_len)
                    .max()
                    .unwrap_or(0);
                (members.len(), 1, keys)
            }
            Problem::Tile { chunk, start, len } => {
                (1, len, batch.chunks[chunk].first_position() + start + len)
            }
        };
        let gathered = b * mk * kv_heads * head_dim;
        let scores = b * heads * mq * mk;
        let temporaries = gathered * dtype_size + scores * (8 + dtype_size);
        out.largest_problem = out.largest_problem.max(temporaries);
        out.index += 4 * (b * mk * (1 + kv_heads) + mk + 2 * b * mq);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::SequenceChunk;

    fn chunk(q: usize, ctx: usize) -> SequenceChunk {
        SequenceChunk {
            num_query_tokens: q,
            context_len: ctx,
            block_table: vec![0; ctx.div_ceil(16)],
            logits_tokens: 1,
        }
    }

    fn batch(chunks: Vec<SequenceChunk>) -> BatchInput {
        let n = chunks.iter().map(|c| c.num_query_tokens).sum();
        BatchInput {
            token_ids: vec![0; n],
            chunks,
        }
    }

    #[test]
    fn decodes_group_longest_first_within_the_budget() {
        let b = batch(vec![chunk(1, 10), chunk(1, 40), chunk(1, 20), chunk(1, 30)]);
        let budget = TileBudget {
            scores: usize::MAX,
            gathered: 80 * 4,
        };
        // kv_row 4: two sequences of 40 keys fit (2·40·4 = 320), a third does not.
        assert_eq!(
            problems(&b, 8, 4, budget),
            vec![Problem::Decodes(vec![1, 3]), Problem::Decodes(vec![2, 0])]
        );
        // One group keeps the batch order.
        let all = problems(&b, 8, 4, TileBudget::default());
        assert_eq!(all, vec![Problem::Decodes(vec![0, 1, 2, 3])]);
    }

    #[test]
    fn a_sequence_over_the_budget_still_gets_its_own_problem() {
        let b = batch(vec![chunk(1, 1000), chunk(1, 999)]);
        let budget = TileBudget {
            scores: 10,
            gathered: 10,
        };
        assert_eq!(
            problems(&b, 2, 2, budget),
            vec![Problem::Decodes(vec![0]), Problem::Decodes(vec![1])]
        );
    }

    #[test]
    fn prefill_chunks_are_cut_into_even_tiles() {
        // 10 rows over 100 keys, 2 heads: 500 score elements allow 2 rows per tile.
        let b = batch(vec![chunk(1, 5), chunk(10, 100), chunk(3, 3)]);
        let budget = TileBudget {
            scores: 500,
            gathered: usize::MAX,
        };
        let p = problems(&b, 2, 4, budget);
        assert_eq!(p[0], Problem::Decodes(vec![0]));
        let tiles: Vec<(usize, usize, usize)> = p[1..]
            .iter()
            .map(|t| match t {
                Problem::Tile { chunk, start, len } => (*chunk, *start, *len),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            tiles,
            vec![
                (1, 0, 2),
                (1, 2, 2),
                (1, 4, 2),
                (1, 6, 2),
                (1, 8, 2),
                (2, 0, 3)
            ]
        );
        // Uneven: 7 rows at 3 per tile become 3 tiles of 3, 3, 1 -> evened to 3, 3, 1.
        let b = batch(vec![chunk(7, 7)]);
        let budget = TileBudget {
            scores: 3 * 7,
            gathered: usize::MAX,
        };
        assert_eq!(
            problems(&b, 1, 1, budget),
            vec![
                Problem::Tile {
                    chunk: 0,
                    start: 0,
                    len: 3
                },
                Problem::Tile {
                    chunk: 0,
                    start: 3,
                    len: 3
                },
                Problem::Tile {
                    chunk: 0,
                    start: 6,
                    len: 1
                },
            ]
        );
    }
}
