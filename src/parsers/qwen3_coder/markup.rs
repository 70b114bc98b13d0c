//! The tags of the Coder format and the `<function=NAME>` / `<parameter=NAME>` headers.

use super::super::tags::partial_tag_suffix;

pub(super) const OPEN: &str = "<tool_call>";
pub(super) const CLOSE: &str = "</tool_call>";
pub(super) const FUNCTION: &str = "<function=";
pub(super) const FUNCTION_END: &str = "</function>";
pub(super) const PARAMETER: &str = "<parameter=";
pub(super) const PARAMETER_END: &str = "</parameter>";

/// Longest name accepted in a header: past it the `<function=`/`<parameter=` text is not a
/// header, and is not held waiting for a `>` that may never come.
const MAX_NAME: usize = 256;

/// A header (`<function=NAME>` or `<parameter=NAME>`) at the start of some text.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Header {
    /// The name and the length of the header, `>` included.
    Complete(String, usize),
    /// The text so far is a prefix of a header.
    Incomplete,
    /// Not a header.
    Not,
}

/// Reads the header `prefix NAME >` at the start of `text`.
pub(super) fn header(text: &str, prefix: &str) -> Header {
    let Some(rest) = text.strip_prefix(prefix) else {
        return if prefix.starts_with(text) {
            Header::Incomplete
        } else {
            Header::Not
        };
    };
    let bad = |c: char| c == '<' || c == '\n';
    match rest.find('>') {
        Some(end)
            if end <= MAX_NAME && !rest[..end].contains(bad) && !rest[..end].trim().is_empty() =>
        {
            Header::Complete(rest[..end].trim().to_owned(), prefix.len() + end + 1)
        }
        Some(_) => Header::Not,
        None if rest.len() <= MAX_NAME && !rest.contains(bad) => Header::Incomplete,
        None => Header::Not,
    }
}

/// The first of `tags` in `text`: its position and which one.
pub(super) fn first_of<'t>(text: &str, tags: &[&'t str]) -> Option<(usize, &'t str)> {
    tags.iter()
        .filter_map(|&tag| text.find(tag).map(|at| (at, tag)))
        .min_by_key(|&(at, _)| at)
}

/// Bytes at the end of `text` that may be the start of one of `tags`.
pub(super) fn partial_suffix(text: &str, tags: &[&str]) -> usize {
    tags.iter()
        .map(|tag| partial_tag_suffix(text, tag))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(
            header("<function=get_weather>\n", FUNCTION),
            Header::Complete("get_weather".into(), 22)
        );
        assert_eq!(header("<function=get_wea", FUNCTION), Header::Incomplete);
        assert_eq!(header("<func", FUNCTION), Header::Incomplete);
        assert_eq!(header("", FUNCTION), Header::Incomplete);
        assert_eq!(header("<fun>", FUNCTION), Header::Not);
        assert_eq!(header("<function=>", FUNCTION), Header::Not);
        assert_eq!(header("<function=a\nb>", FUNCTION), Header::Not);
        assert_eq!(header("<function=a<b>", FUNCTION), Header::Not);
        let long = format!("<parameter={}", "x".repeat(300));
        assert_eq!(header(&long, PARAMETER), Header::Not);
        assert_eq!(
            first_of("a</function>b<parameter=", &[PARAMETER, FUNCTION_END]),
            Some((1, FUNCTION_END))
        );
        assert_eq!(
            partial_suffix("abc</par", &[PARAMETER_END, FUNCTION_END]),
            5
        );
        assert_eq!(partial_suffix("abc</f", &[PARAMETER_END, FUNCTION_END]), 3);
    }
}
