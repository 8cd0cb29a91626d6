//! JSON text straight to Python objects.
//!
//! This is the hottest conversion of the runtime (every JSON record a Python function sees
//! passes through it), so it is a small dedicated parser rather than a generic deserializer:
//! strings are scanned eight bytes at a time, ASCII strings are copied into new Python strings
//! without decoding, object keys come from a per-thread cache (records repeat their keys, and
//! a cached key also has its hash computed already), and dicts and lists are created at their
//! final size.

use std::cell::RefCell;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};

/// Objects and arrays nested deeper than this are refused rather than risking the stack.
const MAX_DEPTH: usize = 512;
/// Slots of the key cache (a power of two).
const KEY_SLOTS: usize = 512;

unsafe extern "C" {
    /// CPython's dict constructor with room for `minused` items (exported by libpython).
    fn _PyDict_NewPresized(minused: ffi::Py_ssize_t) -> *mut ffi::PyObject;
}

/// Why JSON text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub position: usize,
    pub message: String,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.position)
    }
}

type KeySlot = Option<(Box<[u8]>, Py<PyString>)>;

/// What a thread's parses share: the key cache, and buffers reused so that a parse allocates
/// nothing of its own.
struct Reused {
    keys: Vec<KeySlot>,
    /// Key/value pairs of the objects being read, innermost last.
    pairs: Vec<(Py<PyAny>, Py<PyAny>)>,
    /// Items of the arrays being read, innermost last.
    items: Vec<Py<PyAny>>,
    /// Unescaped text of strings with escapes.
    scratch: Vec<u8>,
}

thread_local! {
    static REUSED: RefCell<Reused> = RefCell::new(Reused {
        keys: (0..KEY_SLOTS).map(|_| None).collect(),
        pairs: Vec::new(),
        items: Vec::new(),
        scratch: Vec::new(),
    });
}

/// Parses JSON text into Python objects (dict, list, str, int, float, bool, None).
pub fn json_to_py<'py>(py: Python<'py>, data: &[u8]) -> Result<Bound<'py, PyAny>, JsonError> {
    REUSED.with(|reused| {
        let mut reused = reused.borrow_mut();
        // A failed parse may have left members behind; they are released here, GIL held.
        reused.pairs.clear();
        reused.items.clear();
        let mut parser = Parser {
            py,
            data,
            pos: 0,
            depth: 0,
            reused: &mut reused,
        };
        let value = parser.value()?;
        parser.skip_whitespace();
        if parser.pos != data.len() {
            return Err(parser.error("unexpected characters after the JSON value"));
        }
        Ok(value)
    })
}

struct Parser<'a, 'py> {
    py: Python<'py>,
    data: &'a [u8],
    pos: usize,
    depth: usize,
    reused: &'a mut Reused,
}

impl<'py> Parser<'_, 'py> {
    fn error(&self, message: &str) -> JsonError {
        JsonError {
            position: self.pos,
            message: message.to_string(),
        }
    }

    /// A new reference from the C API, or the Python error it raised.
    fn owned(&self, ptr: *mut ffi::PyObject) -> Result<Bound<'py, PyAny>, JsonError> {
        // SAFETY: `ptr` is a new reference returned by the C API (or null, handled here).
        unsafe { Bound::from_owned_ptr_or_err(self.py, ptr) }.map_err(|e| JsonError {
            position: self.pos,
            message: e.to_string(),
        })
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.data.get(self.pos) {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Bound<'py, PyAny>, JsonError> {
        self.skip_whitespace();
        match self.data.get(self.pos) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                let (start, end, escaped) = self.string_span()?;
                self.string(start, end, escaped)
            }
            Some(b't') => {
                self.literal(b"true")?;
                Ok(PyBool::new(self.py, true).to_owned().into_any())
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Ok(PyBool::new(self.py, false).to_owned().into_any())
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Ok(self.py.None().into_bound(self.py))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a JSON value")),
            None => Err(self.error("unexpected end of JSON")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.data[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("JSON nested too deeply"));
        }
        self.pos += 1;
        Ok(())
    }

    /// Reads comma-separated members up to `close` (the opening bracket is behind us).
    fn members(
        &mut self,
        close: u8,
        unexpected: &str,
        mut member: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.skip_whitespace();
        if self.data.get(self.pos) == Some(&close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            member(self)?;
            self.skip_whitespace();
            match self.data.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(&c) if c == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error(unexpected)),
            }
        }
    }

    fn object(&mut self) -> Result<Bound<'py, PyAny>, JsonError> {
        self.enter()?;
        let base = self.reused.pairs.len();
        self.members(b'}', "expected ',' or '}' in an object", |p| {
            p.skip_whitespace();
            if p.data.get(p.pos) != Some(&b'"') {
                return Err(p.error("expected a string key"));
            }
            let key = p.key()?;
            p.skip_whitespace();
            if p.data.get(p.pos) != Some(&b':') {
                return Err(p.error("expected ':' after an object key"));
            }
            p.pos += 1;
            let value = p.value()?;
            p.reused.pairs.push((key.unbind(), value.unbind()));
            Ok(())
        })?;
        self.depth -= 1;
        let count = self.reused.pairs.len() - base;
        // SAFETY: plain constructor call; the result is checked by `owned`.
        let dict = self.owned(unsafe { _PyDict_NewPresized(count as ffi::Py_ssize_t) })?;
        for (key, value) in self.reused.pairs.drain(base..) {
            // SAFETY: all three are valid objects; PyDict_SetItem does not steal references.
            let status =
                unsafe { ffi::PyDict_SetItem(dict.as_ptr(), key.as_ptr(), value.as_ptr()) };
            if status != 0 {
                return Err(JsonError {
                    position: self.pos,
                    message: PyErr::fetch(self.py).to_string(),
                });
            }
        }
        Ok(dict)
    }

    fn array(&mut self) -> Result<Bound<'py, PyAny>, JsonError> {
        self.enter()?;
        let base = self.reused.items.len();
        self.members(b']', "expected ',' or ']' in an array", |p| {
            let item = p.value()?;
            p.reused.items.push(item.unbind());
            Ok(())
        })?;
        self.depth -= 1;
        let count = self.reused.items.len() - base;
        // SAFETY: plain constructor call; the result is checked by `owned`.
        let list = self.owned(unsafe { ffi::PyList_New(count as ffi::Py_ssize_t) })?;
        for (i, item) in self.reused.items.drain(base..).enumerate() {
            // SAFETY: `list` is a new list of `count` empty slots; SET_ITEM steals `item`.
            unsafe { ffi::PyList_SET_ITEM(list.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr()) };
        }
        Ok(list)
    }

    /// Finds the end of the string starting at `pos`: (content start, content end, escaped).
    fn string_span(&mut self) -> Result<(usize, usize, bool), JsonError> {
        let start = self.pos + 1;
        let mut escaped = false;
        // Skip plain characters in one pass, then look at what stopped the scan.
        let mut i = start + crate::scan::plain_prefix(&self.data[start.min(self.data.len())..]);
        loop {
            match self.data.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok((start, i, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    i += 2;
                }
                Some(0..=0x1f) => {
                    self.pos = i;
                    return Err(self.error("control character in a string"));
                }
                Some(_) => i += 1,
                None => {
                    self.pos = i.min(self.data.len());
                    return Err(self.error("unterminated string"));
                }
            }
        }
    }

    fn key(&mut self) -> Result<Bound<'py, PyAny>, JsonError> {
        let (start, end, escaped) = self.string_span()?;
        if escaped {
            return self.string(start, end, true);
        }
        let bytes = &self.data[start..end];
        let slot = key_slot(bytes);
        if let Some((cached, string)) = &self.reused.keys[slot]
            && **cached == *bytes
        {
            return Ok(string.bind(self.py).clone().into_any());
        }
        let made = self.string(start, end, false)?;
        // Interned, a key is the very object as the same name written in Python code, so
        // `value["name"]` finds it by identity.
        let string = PyString::intern(
            self.py,
            made.cast::<PyString>()
                .expect("made a str")
                .to_str()
                .map_err(|e| self.error(&e.to_string()))?,
        );
        self.reused.keys[slot] = Some((bytes.into(), string.clone().unbind()));
        Ok(string.into_any())
    }

    fn string(
        &mut self,
        start: usize,
        end: usize,
        escaped: bool,
    ) -> Result<Bound<'py, PyAny>, JsonError> {
        if !escaped {
            let bytes = &self.data[start..end];
            return self.py_str(bytes);
        }
        self.reused.scratch.clear();
        let mut i = start;
        while i < end {
            let b = self.data[i];
            if b != b'\\' {
                self.reused.scratch.push(b);
                i += 1;
                continue;
            }
            let escape = self.data[i + 1];
            i += 2;
            let simple = match escape {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let (c, used) = self.unicode_escape(i, end)?;
                    i += used;
                    let mut buf = [0u8; 4];
                    self.reused
                        .scratch
                        .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
                _ => {
                    self.pos = i - 1;
                    return Err(self.error("invalid escape in a string"));
                }
            };
            self.reused.scratch.push(simple);
        }
        let text = std::mem::take(&mut self.reused.scratch);
        let made = self.py_str(&text);
        self.reused.scratch = text;
        made
    }

    /// Reads `XXXX` (and a following `\uXXXX` low surrogate) at `at`; returns the character
    /// and how many bytes it used.
    fn unicode_escape(&mut self, at: usize, end: usize) -> Result<(char, usize), JsonError> {
        let hex = |p: usize| -> Option<u32> {
            let digits = self.data.get(p..p + 4).filter(|_| p + 4 <= end)?;
            // from_str_radix alone would take a sign: `\u+540` is not an escape.
            if !digits.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
        };
        let fail = |s: &mut Self| {
            s.pos = at;
            s.error("invalid \\u escape")
        };
        let Some(first) = hex(at) else {
            return Err(fail(self));
        };
        if (0xD800..0xDC00).contains(&first) {
            if self.data.get(at + 4..at + 6) == Some(b"\\u")
                && let Some(second) = hex(at + 6)
                && (0xDC00..0xE000).contains(&second)
            {
                let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                return char::from_u32(c).map(|c| (c, 10)).ok_or_else(|| fail(self));
            }
            return Err(fail(self));
        }
        char::from_u32(first)
            .map(|c| (c, 4))
            .ok_or_else(|| fail(self))
    }

    /// A Python str from valid UTF-8: ASCII is copied straight into a compact string.
    fn py_str(&self, bytes: &[u8]) -> Result<Bound<'py, PyAny>, JsonError> {
        if bytes.is_ascii() {
            // SAFETY: PyUnicode_New(len, 127) makes a compact ASCII string of `len` one-byte
            // characters, which is filled completely before anyone else sees it.
            let string =
                self.owned(unsafe { ffi::PyUnicode_New(bytes.len() as ffi::Py_ssize_t, 127) })?;
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    ffi::PyUnicode_DATA(string.as_ptr()) as *mut u8,
                    bytes.len(),
                );
            }
            return Ok(string);
        }
        // Only strings can hold non-ASCII bytes in valid JSON: they are checked here.
        let text =
            std::str::from_utf8(bytes).map_err(|_| self.error("invalid UTF-8 in a string"))?;
        Ok(PyString::new(self.py, text).into_any())
    }

    fn number(&mut self) -> Result<Bound<'py, PyAny>, JsonError> {
        let start = self.pos;
        let mut i = start;
        if self.data.get(i) == Some(&b'-') {
            i += 1;
        }
        let digits_start = i;
        if self.data.get(i) == Some(&b'0') {
            // JSON allows no leading zeros: "01" is a 0 followed by garbage.
            i += 1;
        } else {
            while let Some(b'0'..=b'9') = self.data.get(i) {
                i += 1;
            }
        }
        if i == digits_start {
            self.pos = i;
            return Err(self.error("expected digits"));
        }
        let mut float = false;
        if self.data.get(i) == Some(&b'.') {
            float = true;
            i += 1;
            let fraction = i;
            while let Some(b'0'..=b'9') = self.data.get(i) {
                i += 1;
            }
            if i == fraction {
                self.pos = i;
                return Err(self.error("expected digits after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.data.get(i) {
            float = true;
            i += 1;
            if let Some(b'+' | b'-') = self.data.get(i) {
                i += 1;
            }
            let exponent = i;
            while let Some(b'0'..=b'9') = self.data.get(i) {
                i += 1;
            }
            if i == exponent {
                self.pos = i;
                return Err(self.error("expected digits in the exponent"));
            }
        }
        self.pos = i;
        // Number text is ASCII, so this cannot fail.
        let text = std::str::from_utf8(&self.data[start..i]).expect("ASCII digits");
        if float {
            let v: f64 = text.parse().map_err(|_| self.error("invalid number"))?;
            // SAFETY: plain constructor call; the result is checked by `owned`.
            return self.owned(unsafe { ffi::PyFloat_FromDouble(v) });
        }
        match text.parse::<i64>() {
            // SAFETY: plain constructor call; the result is checked by `owned`.
            Ok(v) => self.owned(unsafe { ffi::PyLong_FromLongLong(v) }),
            Err(_) => {
                // Beyond 64 bits: Python ints have no limit.
                let int = self
                    .py
                    .get_type::<PyInt>()
                    .call1((text,))
                    .map_err(|e| self.error(&e.to_string()))?;
                Ok(int)
            }
        }
    }
}

/// The cache slot of a key: FNV-1a over its bytes.
fn key_slot(bytes: &[u8]) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as usize & (KEY_SLOTS - 1)
}
