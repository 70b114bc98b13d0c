//! A lower bound on a text's token count that costs about as much as tokenizing what the
//! context holds, however long the text: the text is tokenized in pieces, stopping once the
//! count passes the limit.
//!
//! Pieces are cut just before an ASCII space that follows an ASCII letter or digit and
//! precedes an ASCII letter: there, byte-level BPE pre-tokenizers (GPT-2's, Qwen's, Llama 3's
//! regexes) end one word and start the next (` word`), and NFC/NFKC compose nothing across an
//! ASCII space, so the pieces' tokens are the text's. One token per cut is still taken off
//! the sum, in case a tokenizer merges across such a cut.

use crate::tokenizer::Tokenizer;

/// Bytes per piece before looking for a cut.
const PIECE_BYTES: usize = 64 << 10;

/// At least how many tokens `text` has, counting only until the count exceeds `limit` (the
/// answer is then above `limit`, not the full count). The last piece, and a text without
/// cuts, are not counted (a lower bound still).
pub fn at_least(tokenizer: &Tokenizer, text: &str, limit: usize) -> usize {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut tokens = 0usize;
    let mut cuts = 0usize;
    while start < bytes.len() && tokens.saturating_sub(cuts) <= limit {
        let end = next_cut(bytes, start + PIECE_BYTES);
        if end == bytes.len() {
            // The rest has no cut: counting it would cost what tokenizing the text costs,
            // which the caller does next anyway.
            break;
        }
        // `end` is at an ASCII space, so a char boundary.
        let piece = &text[start..end];
        tokens += tokenizer.encode(piece, false).map_or(0, |ids| ids.len());
        cuts += 1;
        start = end;
    }
    tokens.saturating_sub(cuts)
}

/// The first cut at or after `from` (see the module docs), or the end of the text.
fn next_cut(bytes: &[u8], from: usize) -> usize {
    if from >= bytes.len() {
        return bytes.len();
    }
    let from = from.max(1);
    (from..bytes.len().saturating_sub(1))
        .find(|&i| {
            bytes[i] == b' '
                && bytes[i - 1].is_ascii_alphanumeric()
                && bytes[i + 1].is_ascii_alphabetic()
        })
        .unwrap_or(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/qwen3-tiny/tokenizer.json"
        );
        Tokenizer::from_file(path).expect("the embedded model's tokenizer")
    }

    #[test]
    fn cuts_fall_between_words() {
        let text = b"ab cd, 12 ef  gh";
        assert_eq!(next_cut(text, 0), 2);
        assert_eq!(next_cut(text, 3), 9);
        // "  gh": a run of spaces is not a cut.
        assert_eq!(next_cut(text, 10), text.len());
    }

    #[test]
    fn pieces_count_what_the_whole_text_counts() {
        let tok = tokenizer();
        let line = "The quick brown fox, née Renée, jumps over 42 lazy dogs;\n\tthen rests.  \
                    Ünïcödé wörds and <|im_start|> markup, \"quotes\" and don't stop ";
        let text = line.repeat(4000);
        let whole = tok.encode(&text, false).unwrap().len();
        let pieces = at_least(&tok, &text, usize::MAX);
        assert!(pieces <= whole, "{pieces} > {whole}");
        // All but the last piece (under PIECE_BYTES and a word), less one token per cut.
        let slack = PIECE_BYTES / 2 + text.len() / PIECE_BYTES + 1;
        assert!(whole - pieces <= slack, "{pieces} vs {whole}");
        let cut = next_cut(text.as_bytes(), PIECE_BYTES);
        let (head, tail) = text.split_at(cut);
        let split = tok.encode(head, false).unwrap().len() + tok.encode(tail, false).unwrap().len();
        assert_eq!(split, whole, "a cut changes the tokens");
    }

    #[test]
    fn counting_stops_past_the_limit() {
        let tok = tokenizer();
        let text = "word ".repeat(1 << 20);
        let t = std::time::Instant::now();
        let n = at_least(&tok, &text, 1000);
        assert!(n > 1000 && n < 40_000, "{n}");
        assert!(t.elapsed().as_secs() < 5);
    }
}
