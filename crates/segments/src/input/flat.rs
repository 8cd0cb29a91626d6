//! Flat JSON objects read straight from their bytes: the fast path of
//! [`super::MemberReader`], for records whose members are text without escapes, numbers,
//! booleans and nulls (the shape of most event streams). A record of any other shape (an
//! escape, a nested object or array, anything invalid, and some things serde lets pass in
//! members it skips, such as bytes that are not UTF-8) is given up on, and the serde reader
//! reads it instead; so a record read here reads exactly as that reader reads it, only
//! without serde's per-member dispatch.

use std::borrow::Cow;

use super::json::Member;

/// Whether records' names can be matched with `name` on their bytes: it holds nothing that a
/// name in a record would spell with an escape (a quote, a backslash, a control character).
pub(super) fn plain_name(name: &str) -> bool {
    plain_text_length(name.as_bytes()).0 == name.len()
}

/// Reads the named members of a flat JSON object `record` into `values`, each at its name's
/// place (a repeated member's last value wins; the others are checked and dropped). The
/// names must be plain (see [`plain_name`]). None when the record is not of the shape read
/// here, with `values` partly written.
pub(super) fn read_flat<'a>(
    record: &'a [u8],
    names: &[String],
    values: &mut [Member<'a>],
) -> Option<()> {
    debug_assert_eq!(names.len(), values.len(), "a value for each name");
    let mut scan = Scan {
        bytes: record,
        at: 0,
    };
    scan.skip_space();
    scan.expect(b'{')?;
    scan.skip_space();
    if !scan.eat(b'}') {
        // Records of a topic mostly hold their members in one order: the name after the last
        // one found is tried first, then all of them.
        let mut next = 0;
        loop {
            scan.expect(b'"')?;
            let place = if names.get(next).is_some_and(|guess| scan.eat_name(guess)) {
                Some(next)
            } else {
                let name = scan.text()?;
                names.iter().position(|n| *n == *name)
            };
            scan.skip_space();
            scan.expect(b':')?;
            scan.skip_space();
            let value = scan.value()?;
            if let Some(place) = place {
                values[place] = value;
                next = (place + 1) % names.len();
            }
            scan.skip_space();
            if scan.eat(b'}') {
                break;
            }
            scan.expect(b',')?;
            scan.skip_space();
        }
    }
    scan.skip_space();
    (scan.at == record.len()).then_some(())
}

/// A place in a record being read.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    /// Steps over JSON whitespace.
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// Steps over `byte` if it is next; says whether it was.
    fn eat(&mut self, byte: u8) -> bool {
        let next = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(next);
        next
    }

    /// Steps over `byte`, which must be next.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// The text of a string whose opening quote is read, up to and over its closing quote:
    /// None if it holds an escape or a control character, or is not UTF-8.
    fn text(&mut self) -> Option<&'a str> {
        let rest = &self.bytes[self.at..];
        let (length, ascii) = plain_text_length(rest);
        if rest.get(length) != Some(&b'"') {
            return None;
        }
        self.at += length + 1;
        let text = &rest[..length];
        if ascii {
            // SAFETY: `plain_text_length` saw that every byte of the text is below 0x80, and
            // ASCII is UTF-8. (Validating it cost a sixth of the reading.)
            Some(unsafe { std::str::from_utf8_unchecked(text) })
        } else {
            std::str::from_utf8(text).ok()
        }
    }

    /// Steps over the rest of a name whose opening quote is read, and its closing quote, if
    /// it is the plain name `name`: the names of a topic's records mostly come in one
    /// order, so the name expected next is compared in place before any is looked for.
    fn eat_name(&mut self, name: &str) -> bool {
        let end = self.at + name.len();
        // The closing quote first: it turns most other names away at once. The bytes are
        // compared in a loop, not by a call to `memcmp` (a tenth of the reading for names
        // of a few bytes).
        let matched = self.bytes.get(end) == Some(&b'"')
            && self.bytes[self.at..end]
                .iter()
                .zip(name.as_bytes())
                .all(|(byte, expected)| byte == expected);
        if matched {
            self.at = end + 1;
        }
        matched
    }

    /// A member's value.
    fn value(&mut self) -> Option<Member<'a>> {
        match *self.bytes.get(self.at)? {
            b'"' => {
                self.at += 1;
                Some(Member::Text(Cow::Borrowed(self.text()?)))
            }
            b't' => self.literal("true", Member::Text(Cow::Borrowed("true"))),
            b'f' => self.literal("false", Member::Text(Cow::Borrowed("false"))),
            b'n' => self.literal("null", Member::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// `value` if the record spells `word` here.
    fn literal(&mut self, word: &str, value: Member<'a>) -> Option<Member<'a>> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word.as_bytes()).then(|| {
            self.at = end;
            value
        })
    }

    /// A number: an integer of up to 18 digits (which always fits an i64) read here, any
    /// other by serde_json from the number's text, so that fractions, exponents, `-0`, longer
    /// integers and leading zeros (an error) read as the serde reader reads them.
    fn number(&mut self) -> Option<Member<'a>> {
        let start = self.at;
        let negative = self.bytes[start] == b'-';
        let digits_start = start + usize::from(negative);
        let mut end = digits_start;
        while let Some(b'0'..=b'9') = self.bytes.get(end) {
            end += 1;
        }
        let digits = &self.bytes[digits_start..end];
        let integer = (1..=18).contains(&digits.len())
            && (digits[0] != b'0' || digits.len() == 1)
            && !matches!(self.bytes.get(end), Some(b'.' | b'e' | b'E'));
        if integer && !(negative && digits == b"0") {
            let magnitude = digits
                .iter()
                .fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0'));
            self.at = end;
            return Some(Member::Long(if negative { -magnitude } else { magnitude }));
        }
        while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = self.bytes.get(end) {
            end += 1;
        }
        let number = serde_json::from_slice::<Member<'a>>(&self.bytes[start..end]).ok()?;
        self.at = end;
        Some(number)
    }
}

/// How many bytes of `bytes` come before the first that ends or escapes plain text in a JSON
/// string (a quote, a backslash or a control character; all of them when none does), and
/// whether those are ASCII. Eight bytes are looked at a time.
fn plain_text_length(bytes: &[u8]) -> (usize, bool) {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    /// The high bit of each byte of `word` equal to zero, exact up to the first such byte
    /// (a borrow may mark bytes after it).
    fn zero_bytes(word: u64) -> u64 {
        word.wrapping_sub(ONES) & !word & HIGH
    }
    let mut at = 0;
    // The bits of every word looked at: bytes past the end may clear `ascii` needlessly,
    // which only costs a validation.
    let mut seen = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quotes = zero_bytes(word ^ (ONES * u64::from(b'"')));
        let backslashes = zero_bytes(word ^ (ONES * u64::from(b'\\')));
        // Bytes below 0x20, exact up to the first as well.
        let controls = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
        let found = quotes | backslashes | controls;
        seen |= word;
        if found != 0 {
            // Little-endian: the lowest marked byte is the first in the record.
            let length = at + (found.trailing_zeros() / 8) as usize;
            return (length, seen & HIGH == 0);
        }
        at += 8;
    }
    let tail = &bytes[at..];
    let length = tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(tail.len());
    (at + length, seen & HIGH == 0 && tail[..length].is_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_ends_at_the_first_quote_backslash_or_control_character() {
        for ending in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for length in 0..20 {
                let mut text = vec![b'a'; length];
                text.push(ending);
                // What follows may look special too: the first one counts.
                text.extend_from_slice(b"\"\\\x01 tail that is long enough");
                assert_eq!(
                    plain_text_length(&text),
                    (length, true),
                    "{ending:#x} at {length}"
                );
            }
        }
        for plain in [
            "caf\u{e9} \u{7f} ~".repeat(3),
            "caf\u{e9}".into(),
            "~\u{7f}".into(),
        ] {
            let ascii = plain.is_ascii();
            assert_eq!(plain_text_length(plain.as_bytes()), (plain.len(), ascii));
        }
        assert!(plain_name("views") && !plain_name("a\"b") && !plain_name("tab\t"));
    }
}
