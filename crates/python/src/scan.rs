//! Finding the characters that end or complicate a JSON string, eight bytes at a time.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `word` that is below `n` (n <= 128). The lowest flagged byte
/// is always a true one; bytes above it may be flagged falsely, which is all callers need.
fn bytes_below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
}

/// The length of the prefix of `bytes` that holds no `"`, no `\` and no control character:
/// the part of a JSON string that needs neither unescaping nor escaping.
pub fn plain_prefix(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut done = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = bytes_below(word ^ (ONES * u64::from(b'"')), 1)
            | bytes_below(word ^ (ONES * u64::from(b'\\')), 1)
            | bytes_below(word, 0x20);
        if found != 0 {
            return done + (found.trailing_zeros() / 8) as usize;
        }
        done += 8;
    }
    done + chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(chunks.remainder().len())
}

#[cfg(test)]
mod tests {
    use super::plain_prefix;

    #[test]
    fn stops_at_the_first_special_byte() {
        assert_eq!(plain_prefix(b""), 0);
        assert_eq!(plain_prefix(b"plain text, no specials"), 23);
        assert_eq!(plain_prefix(b"0123456789\"abc"), 10);
        assert_eq!(plain_prefix(b"01234567\\"), 8);
        assert_eq!(plain_prefix(b"abc\ndef"), 3);
        assert_eq!(
            plain_prefix("h\u{e9}llo w\u{f6}rld \u{1F600}\"".as_bytes()),
            18
        );
        assert_eq!(plain_prefix(b"\x1f"), 0);
        assert_eq!(plain_prefix(b"\x7f\x80\xff abc \" "), 8);
        for len in 0..20 {
            let mut text = vec![b'a'; len];
            text.push(b'"');
            text.extend_from_slice(b"\\\x01");
            assert_eq!(plain_prefix(&text), len, "{len}");
        }
    }
}
