//! Prompt lookup (vLLM's `ngram` method): the context's last n tokens, for the longest n in
//! `min..=max` that occurred earlier, are followed by what followed them there.

/// Up to `k` draft tokens for `tokens` (the prompt and output so far): the continuation of
/// the latest earlier occurrence of the longest matching suffix of `min..=max` tokens.
/// Among occurrences of equal length the latest wins: agent loops repeat what they just read.
pub fn propose(tokens: &[u32], min: usize, max: usize, k: usize) -> Vec<u32> {
    let len = tokens.len();
    if k == 0 || len < min + 1 {
        return Vec::new();
    }
    let max = max.min(len - 1);
    let last = tokens[len - 1];
    let mut best: Option<(usize, usize)> = None; // (match length, end of the earlier occurrence)
    // `end` is one past an earlier occurrence's last token; its continuation starts there.
    for end in (1..len).rev() {
        if tokens[end - 1] != last {
            continue;
        }
        let matched = (1..=max.min(end))
            .take_while(|&n| tokens[end - n] == tokens[len - n])
            .count();
        if matched >= min && best.is_none_or(|(m, _)| matched > m) {
            best = Some((matched, end));
            if matched == max {
                break;
            }
        }
    }
    match best {
        Some((_, end)) => tokens[end..len.min(end + k)].to_vec(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::propose;

    #[test]
    fn continues_the_latest_longest_match() {
        // "1 2 3" occurs at 0 and at 5; the context ends with "2 3".
        let t = [1, 2, 3, 4, 5, 1, 2, 3, 9, 9, 1, 2, 3];
        // Longest match: "1 2 3" (3 tokens), latest earlier occurrence ends at 8.
        assert_eq!(propose(&t, 1, 3, 2), vec![9, 9]);
        // With min = max = 2, "2 3" also ends latest at 8.
        assert_eq!(propose(&t, 2, 2, 4), vec![9, 9, 1, 2]);
    }

    #[test]
    fn longer_match_beats_a_later_shorter_one() {
        // "7 8 9" ends at 3 (followed by 40); "8 9" alone ends at 7 (followed by 50).
        let t = [7, 8, 9, 40, 1, 8, 9, 50, 2, 7, 8, 9];
        assert_eq!(propose(&t, 2, 3, 1), vec![40]);
        assert_eq!(propose(&t, 2, 2, 1), vec![50]);
    }

    #[test]
    fn nothing_without_a_match_of_the_minimum_length() {
        assert!(propose(&[1, 2, 3, 4], 1, 3, 3).is_empty());
        assert!(propose(&[5, 6, 1, 7, 6], 2, 4, 3).is_empty());
        assert_eq!(propose(&[5, 6, 1, 7, 6], 1, 4, 3), vec![1, 7, 6]);
        assert!(propose(&[1], 1, 1, 3).is_empty());
        assert!(propose(&[1, 1, 1], 1, 2, 0).is_empty());
    }

    #[test]
    fn a_draft_may_run_into_the_context_itself() {
        // A repeated token: the match overlaps its own continuation.
        assert_eq!(propose(&[3, 3, 3, 3], 2, 3, 5), vec![3]);
    }
}
