//! GPT-2's byte-level alphabet: byte-level BPE vocabularies (Qwen3's) spell every byte as one
//! printable character. Printable Latin-1 characters stand for themselves, every other byte for
//! U+0100 onwards in byte order (`Ġ` = space, `Ċ` = newline).

use std::collections::HashMap;
use std::sync::OnceLock;

/// The table reversed: the byte each character of a vocabulary string stands for.
pub fn byte_level_decoder() -> &'static HashMap<char, u8> {
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let self_mapped = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let mut next = 0x100u32;
        let mut table = HashMap::with_capacity(256);
        for b in 0..=255u8 {
            let c = if self_mapped(b) {
                b as char
            } else {
                // U+0100..U+0143: always chars.
                let c = char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER);
                next += 1;
                c
            };
            table.insert(c, b);
        }
        table
    })
}

/// The bytes a byte-level vocabulary string stands for; `None` if a character is outside the
/// alphabet (an added token stored as plain text, or a non-byte-level vocabulary).
pub fn piece_bytes(piece: &str) -> Option<Vec<u8>> {
    let table = byte_level_decoder();
    piece.chars().map(|c| table.get(&c).copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_a_bijection_over_all_bytes() {
        let table = byte_level_decoder();
        assert_eq!(table.len(), 256);
        let mut bytes: Vec<u8> = table.values().copied().collect();
        bytes.sort_unstable();
        bytes.dedup();
        assert_eq!(bytes.len(), 256);
        assert_eq!(table[&'Ġ'], b' ');
        assert_eq!(table[&'Ċ'], b'\n');
        assert_eq!(table[&'a'], b'a');
        assert_eq!(piece_bytes("Ġhi"), Some(b" hi".to_vec()));
        assert_eq!(piece_bytes("<|im_end|>"), Some(b"<|im_end|>".to_vec()));
    }
}
