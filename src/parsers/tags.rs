//! Finding tags in streamed text, where a tag may arrive split over several deltas.

/// Length in bytes of the longest suffix of `text` that is a proper, non-empty prefix of `tag`:
/// text that must be held back because the next delta may complete the tag.
pub fn partial_tag_suffix(text: &str, tag: &str) -> usize {
    let max = tag.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(partial_tag_suffix("abc<thi", "<think>"), 4);
        assert_eq!(partial_tag_suffix("abc<think>", "<think>"), 0);
        assert_eq!(partial_tag_suffix("<", "<think>"), 1);
        assert_eq!(partial_tag_suffix("", "<think>"), 0);
        assert_eq!(partial_tag_suffix("你好<", "<tool_call>"), 1);
        assert_eq!(partial_tag_suffix("你好", "<tool_call>"), 0);
    }
}
