//! Canonical JSON: the one byte string a payload is stored and hashed as.
//!
//! The rules are specified in `docs/LEDGER.md` ("Canonical JSON"). They are implemented here
//! without relying on `serde_json`'s printer, whose map order depends on a cargo feature
//! (`preserve_order`) and whose float format has changed between releases: a ledger written
//! today must re-canonicalise byte for byte in ten years.

use serde_json::{Number, Value};

mod ser;
pub use ser::{to_canonical_string, write_canonical};

/// Deepest nesting of arrays and objects a payload may have.
///
/// `serde_json` refuses to parse documents nested 128 levels deep, and verification parses
/// stored payloads, so appending anything deeper would create a ledger that cannot be verified.
pub const MAX_DEPTH: usize = 64;

/// Why a value has no canonical JSON form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalJsonError {
    /// A number is infinite or NaN (only reachable with `serde_json/arbitrary_precision`).
    #[error("number {0} is not finite")]
    NonFiniteNumber(String),
    /// Arrays and objects are nested deeper than [`MAX_DEPTH`].
    #[error("arrays and objects are nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A value written by [`to_canonical_string`] has no JSON form (a map key that is not
    /// text or a number, an integer beyond 64 bits, its own `Serialize` refused).
    #[error("{0}")]
    Unserializable(String),
}

/// Returns the canonical JSON text of `value`.
pub fn to_canonical_json(value: &Value) -> Result<String, CanonicalJsonError> {
    let mut out = String::new();
    write_canonical_json(value, &mut out)?;
    Ok(out)
}

/// Appends the canonical JSON text of `value` to `out`.
///
/// On error `out` holds a partial document and should be discarded.
pub fn write_canonical_json(value: &Value, out: &mut String) -> Result<(), CanonicalJsonError> {
    write_value(value, out, 0)
}

/// Parses `text` as JSON and returns its canonical form (which may differ from `text`).
pub fn canonicalize(text: &[u8]) -> Result<String, CanonicalizeError> {
    let value: Value = serde_json::from_slice(text).map_err(CanonicalizeError::Parse)?;
    to_canonical_json(&value).map_err(CanonicalizeError::Canonical)
}

/// Whether `text` is exactly the canonical JSON text of the value it parses to.
///
/// Checked in one pass over the bytes without building the value, which is several times
/// faster than [`canonicalize`] and comparing (verification checks every stored payload).
/// Agrees with that comparison on every input, except that it may answer `false` for a
/// canonical text that it does not fully understand; callers fall back to [`canonicalize`]
/// then, to be sure and to say what differs.
pub fn is_canonical(text: &[u8]) -> bool {
    if std::str::from_utf8(text).is_err() {
        return false;
    }
    let mut checker = Checker {
        text,
        at: 0,
        scratch: String::new(),
    };
    checker.value(0) && checker.at == text.len()
}

/// The state of [`is_canonical`]: a position in `text`.
struct Checker<'a> {
    text: &'a [u8],
    at: usize,
    /// Reused for the canonical form of each double.
    scratch: String,
}

impl<'a> Checker<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.text[self.at..].starts_with(word);
        if found {
            self.at += word.len();
        }
        found
    }

    /// `depth` counts the arrays and objects around the value, as `write_value` does.
    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'"') => self.string().is_some(),
            Some(b'[') => depth < MAX_DEPTH && self.array(depth),
            Some(b'{') => depth < MAX_DEPTH && self.object(depth),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth + 1) {
                return false;
            }
            if self.eat(b']') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    /// Keys must be in strictly increasing order of their UTF-8 bytes (so also unique).
    fn object(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.eat(b'}') {
            return true;
        }
        let mut previous: Option<&'a [u8]> = None;
        loop {
            if self.peek() != Some(b'"') {
                return false;
            }
            let Some(key) = self.string() else {
                return false;
            };
            if previous.is_some_and(|previous| !key_less(previous, key)) {
                return false;
            }
            previous = Some(key);
            if !self.eat(b':') || !self.value(depth + 1) {
                return false;
            }
            if self.eat(b'}') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    /// Checks a string written as `write_string` writes it; returns the text between the
    /// quotes, escapes and all.
    fn string(&mut self) -> Option<&'a [u8]> {
        let text = self.text;
        self.at += 1;
        let start = self.at;
        loop {
            match *text.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(&text[start..self.at - 1]);
                }
                b'\\' => {
                    match *text.get(self.at + 1)? {
                        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => self.at += 2,
                        b'u' => {
                            // Only `\u00xx` (lower-case hex) for a control character that has
                            // no short escape.
                            let code = match text.get(self.at + 2..self.at + 6)? {
                                [b'0', b'0', high @ (b'0' | b'1'), low] => {
                                    let low = match low {
                                        b'0'..=b'9' => low - b'0',
                                        b'a'..=b'f' => low - b'a' + 10,
                                        _ => return None,
                                    };
                                    (high - b'0') << 4 | low
                                }
                                _ => return None,
                            };
                            if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            self.at += 6;
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                // The whole text is valid UTF-8, so other bytes are characters as they are.
                _ => self.at += 1,
            }
        }
    }

    /// An integer in [-2^63, 2^64 - 1] without leading zeros, or a double written exactly
    /// as `write_f64` writes it.
    fn number(&mut self) -> bool {
        let start = self.at;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        let token = &self.text[start..self.at];
        if !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            return canonical_integer(token);
        }
        // A decimal of at most 15 significant digits well inside the normal range is the
        // shortest text of the double it reads as (DBL_DIG: no two such decimals read as
        // the same double), so it is canonical exactly when it is laid out as `write_f64`
        // lays out its digits; no parsing or printing of the double is needed.
        if is_canonical_short_decimal(token, &mut self.scratch) {
            return true;
        }
        // Rust's parser is correctly rounded, like serde_json's with `float_roundtrip`: if
        // the double's canonical text is the token, any such parser reads the token back
        // as that double.
        let parsed = std::str::from_utf8(token)
            .ok()
            .and_then(|t| t.parse::<f64>().ok());
        let Some(f) = parsed.filter(|f| f.is_finite()) else {
            return false;
        };
        self.scratch.clear();
        write_f64(f, &mut self.scratch);
        self.scratch.as_bytes() == token
    }
}

/// At most this many significant digits take [`Checker::number`]'s fast path (`f64::DIGITS`).
const SHORT_DIGITS: usize = 15;

/// Decimal exponents of the fast path: every such decimal is a normal double, far from
/// overflow and from subnormals (whose precision is below 15 digits).
const SHORT_EXPONENTS: std::ops::RangeInclusive<i32> = -300..=300;

/// Significant digits of a short decimal, kept on the stack.
struct ShortDigits {
    bytes: [u8; SHORT_DIGITS],
    len: usize,
}

impl ShortDigits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("ASCII digits")
    }
}

/// Reads a number token as `-? d1.d2…dn × 10^e` if it is written as digits with an
/// optional point and exponent and has 1 to [`SHORT_DIGITS`] significant digits with `e` in
/// [`SHORT_EXPONENTS`]; `None` otherwise (including for zero and anything malformed).
fn short_decimal(token: &[u8]) -> Option<(bool, ShortDigits, i32)> {
    let (negative, unsigned) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };
    let (mantissa, written_exponent) = match unsigned.iter().position(|b| matches!(b, b'e' | b'E'))
    {
        Some(at) => {
            let text = std::str::from_utf8(&unsigned[at + 1..]).ok()?;
            if text.len() > 5 {
                return None;
            }
            (&unsigned[..at], text.parse::<i32>().ok()?)
        }
        None => (unsigned, 0),
    };
    let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, &mantissa[mantissa.len()..]),
    };
    if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    // Significant digits, from the first non-zero one; trailing zeros are dropped below.
    let mut all = int.iter().chain(frac).skip_while(|&&b| b == b'0');
    let mut bytes = [0; SHORT_DIGITS];
    let mut len = 0;
    let mut zeros = 0;
    for &b in all.by_ref() {
        if b == b'0' {
            zeros += 1;
            continue;
        }
        if len + zeros >= SHORT_DIGITS {
            return None;
        }
        bytes[len..len + zeros].fill(b'0');
        len += zeros;
        zeros = 0;
        bytes[len] = b;
        len += 1;
    }
    if len == 0 {
        return None;
    }
    // The digits read as an integer are the value times 10^(frac.len() - written_exponent),
    // less the trailing zeros dropped.
    let exponent = written_exponent - frac.len() as i32 + zeros as i32 + len as i32 - 1;
    SHORT_EXPONENTS
        .contains(&exponent)
        .then_some((negative, ShortDigits { bytes, len }, exponent))
}

/// Whether `token` is a [`short_decimal`] laid out as `write_f64` lays out its digits (so,
/// by DBL_DIG, the canonical text of the double it reads as). `false` says nothing.
fn is_canonical_short_decimal(token: &[u8], scratch: &mut String) -> bool {
    let Some((negative, digits, exponent)) = short_decimal(token) else {
        return false;
    };
    scratch.clear();
    if negative {
        scratch.push('-');
    }
    lay_out(digits.as_str(), exponent, scratch);
    scratch.as_bytes() == token
}

/// Whether `token` is an integer as `write_number` writes one.
fn canonical_integer(token: &[u8]) -> bool {
    let (negative, digits) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };
    match digits {
        [b'0'] => !negative,
        [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => {
            let magnitude = digits.iter().try_fold(0u64, |value, digit| {
                value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
            });
            match magnitude {
                Some(m) => !negative || m <= 1 << 63,
                None => false,
            }
        }
        _ => false,
    }
}

/// Compares two keys, given as canonical string contents, by their UTF-8 bytes.
fn key_less(a: &[u8], b: &[u8]) -> bool {
    if !a.contains(&b'\\') && !b.contains(&b'\\') {
        return a < b;
    }
    unescape(a) < unescape(b)
}

/// The bytes of a canonical string's content (only the escapes `write_string` writes).
fn unescape(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut at = 0;
    while at < content.len() {
        if content[at] != b'\\' {
            out.push(content[at]);
            at += 1;
            continue;
        }
        let (byte, len) = match content.get(at + 1) {
            Some(b'b') => (0x08, 2),
            Some(b't') => (0x09, 2),
            Some(b'n') => (0x0a, 2),
            Some(b'f') => (0x0c, 2),
            Some(b'r') => (0x0d, 2),
            Some(b'u') => {
                let hex = content.get(at + 4..at + 6).unwrap_or(b"00");
                let nibble = |h: u8| {
                    if h.is_ascii_digit() {
                        h - b'0'
                    } else {
                        h - b'a' + 10
                    }
                };
                (nibble(hex[0]) << 4 | nibble(hex[1]), 6)
            }
            Some(&other) => (other, 2),
            None => (b'\\', 1),
        };
        out.push(byte);
        at += len;
    }
    out
}

/// Why a JSON text could not be canonicalised.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalizeError {
    /// The text is not JSON (or not UTF-8).
    #[error("not valid JSON: {0}")]
    Parse(serde_json::Error),
    /// The text is JSON but has no canonical form.
    #[error("{0}")]
    Canonical(CanonicalJsonError),
}

fn write_value(value: &Value, out: &mut String, depth: usize) -> Result<(), CanonicalJsonError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(CanonicalJsonError::TooDeep);
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            if depth >= MAX_DEPTH {
                return Err(CanonicalJsonError::TooDeep);
            }
            // Sorted here rather than trusting the map: with `preserve_order` it keeps
            // insertion order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out, depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_number(n: &Number, out: &mut String) -> Result<(), CanonicalJsonError> {
    if let Some(u) = n.as_u64() {
        out.push_str(itoa::Buffer::new().format(u));
    } else if let Some(i) = n.as_i64() {
        out.push_str(itoa::Buffer::new().format(i));
    } else {
        match n.as_f64() {
            Some(f) if f.is_finite() => write_f64(f, out),
            _ => return Err(CanonicalJsonError::NonFiniteNumber(n.to_string())),
        }
    }
    Ok(())
}

/// Writes a finite double: the shortest digits that read back as the same double (closest to
/// the exact value, ties to even), laid out in plain notation when the decimal exponent is in
/// -5..=15 and in scientific notation otherwise (see `docs/LEDGER.md`).
fn write_f64(f: f64, out: &mut String) {
    debug_assert!(f.is_finite());
    if f.is_sign_negative() {
        out.push('-');
    }
    let magnitude = f.abs();
    if magnitude == 0.0 {
        out.push_str("0.0");
        return;
    }
    // records repeat their numbers (a thousand policies' shared factors, thresholds, rates
    // of the same counts): the texts of recent magnitudes are kept, by their exact bits
    let bits = magnitude.to_bits();
    let slot = (bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - TEXT_SLOTS_LOG2)) as usize;
    RECENT_TEXTS.with_borrow_mut(|texts| {
        let t = &mut texts[slot];
        if t.bits == bits {
            out.push_str(std::str::from_utf8(&t.text[..t.len as usize]).expect("ASCII digits"));
            return;
        }
        let from = out.len();
        let mut buffer = zmij::Buffer::new();
        let printed = buffer.format_finite(magnitude);
        if already_laid_out(printed) {
            out.push_str(printed);
        } else {
            let (digits, exponent) = digits_of_text(printed);
            lay_out(&digits, exponent, out);
        }
        let text = &out.as_bytes()[from..];
        if text.len() <= TEXT_LEN {
            t.bits = bits;
            t.len = text.len() as u8;
            t.text[..text.len()].copy_from_slice(text);
        }
    });
}

/// Whether zmij's text of a magnitude is already [`lay_out`]'s text of its digits: a plain
/// decimal `I.F` with no exponent, `I` a digit 1–9 then at most 15 more digits (decimal
/// exponent 0..=15) or `0` alone followed by at most four zeros in `F` (exponent -5..=-1),
/// and `F` ending in a digit 1–9 (not whole). Such a text spells one digit string and
/// exponent only, and `lay_out` writes exactly that spelling; anything else (whole numbers,
/// exponents, another layout) goes through [`digits_of_text`].
fn already_laid_out(text: &str) -> bool {
    let b = text.as_bytes();
    let Some(point) = b.iter().position(|&c| c == b'.') else {
        return false;
    };
    let (int, frac) = (&b[..point], &b[point + 1..]);
    let digits_only = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if !digits_only(int) || !digits_only(frac) || !matches!(frac.last(), Some(b'1'..=b'9')) {
        return false;
    }
    match int {
        [b'0'] => frac.iter().take_while(|&&c| c == b'0').count() <= 4,
        [b'1'..=b'9', rest @ ..] => rest.len() <= 15,
        _ => false,
    }
}

/// Texts [`write_f64`] keeps: 2^10 slots, one per magnitude (by a hash of its bits).
const TEXT_SLOTS_LOG2: u32 = 10;

/// The longest text a slot holds (`0.0000` and 17 digits is 23 bytes; anything longer is
/// written without being kept).
const TEXT_LEN: usize = 30;

/// A magnitude (by its bits; 0 for none: zero is never kept) and its text.
#[derive(Clone, Copy)]
struct KeptText {
    bits: u64,
    len: u8,
    text: [u8; TEXT_LEN],
}

thread_local! {
    static RECENT_TEXTS: std::cell::RefCell<[KeptText; 1 << TEXT_SLOTS_LOG2]> = const {
        std::cell::RefCell::new(
            [KeptText {
                bits: 0,
                len: 0,
                text: [0; TEXT_LEN],
            }; 1 << TEXT_SLOTS_LOG2],
        )
    };
}

/// Writes `d1.d2…dn × 10^exponent` (digits without leading or trailing zeros) in
/// `write_f64`'s layout.
fn lay_out(digits: &str, exponent: i32, out: &mut String) {
    let n = digits.len() as i32;
    if (-5..=15).contains(&exponent) {
        if exponent >= n - 1 {
            // 1234e7 -> 12340000000.0
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', (exponent - (n - 1)) as usize));
            out.push_str(".0");
        } else if exponent >= 0 {
            // 1234e-2 -> 12.34
            let point = (exponent + 1) as usize;
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        } else {
            // 1234e-6 -> 0.001234
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
            out.push_str(digits);
        }
    } else {
        // 1234e30 -> 1.234e+33
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exponent >= 0 { '+' } else { '-' });
        out.push_str(itoa::Buffer::new().format(exponent.unsigned_abs()));
    }
}

/// [`digits_of_text`] of a positive finite double (for the tests).
#[cfg(test)]
fn shortest_digits(magnitude: f64) -> (Digits, i32) {
    debug_assert!(magnitude.is_finite() && magnitude > 0.0);
    digits_of_text(zmij::Buffer::new().format_finite(magnitude))
}

/// Returns the shortest round-trip digits `d1 d2 … dn` (no leading or trailing zeros) of a
/// positive finite double, read from zmij's text of it, and the exponent `e` with
/// `x = d1.d2…dn × 10^e`.
///
/// The digits come from zmij (Schubfach), which breaks ties between equally close shortest
/// candidates towards an even last digit, like JavaScript, Python and Ryu; Rust's own `{:e}`
/// breaks them upwards. zmij's layout is its own business and may change: its text is
/// written as it is only where [`already_laid_out`] finds it spelled exactly as `lay_out`
/// spells its digits; otherwise only its digits are used, through this function.
fn digits_of_text(printed: &str) -> (Digits, i32) {
    let text = printed.as_bytes();
    // one pass over zmij's text: its digits run together without their leading zeros, and
    // zeros after a significant digit are held back until another significant digit comes
    // (those left at the end are trailing); the stack buffer holds at most the 17
    // significant digits of a double
    let mut digits = Digits {
        buf: [0; 24],
        len: 0,
    };
    let (mut held_zeros, mut fraction_digits, mut in_fraction) = (0i32, 0i32, false);
    let mut at = 0;
    while at < text.len() {
        let b = text[at];
        match b {
            b'0' if digits.len == 0 => {}
            b'0' => held_zeros += 1,
            b'1'..=b'9' => {
                for _ in 0..held_zeros {
                    digits.buf[digits.len] = b'0';
                    digits.len += 1;
                }
                held_zeros = 0;
                digits.buf[digits.len] = b;
                digits.len += 1;
            }
            b'.' => in_fraction = true,
            b'e' | b'E' => break,
            _ => unreachable!("zmij prints digits, a point and an exponent"),
        }
        if in_fraction && b != b'.' {
            fraction_digits += 1;
        }
        at += 1;
    }
    let mut exp10 = 0i32;
    if at < text.len() {
        let e = &text[at + 1..];
        let (negative, e) = match e.first() {
            Some(b'-') => (true, &e[1..]),
            Some(b'+') => (false, &e[1..]),
            _ => (false, e),
        };
        for &d in e {
            debug_assert!(d.is_ascii_digit(), "zmij prints an integer exponent");
            exp10 = exp10 * 10 + i32::from(d - b'0');
        }
        if negative {
            exp10 = -exp10;
        }
    }
    debug_assert!(digits.len > 0 && digits.buf[..digits.len].iter().all(u8::is_ascii_digit));
    // the digits read as an integer times 10^(exp10 - fraction digits + trailing zeros) is
    // the value
    let power = exp10 - fraction_digits + held_zeros;
    let exponent = power + digits.len as i32 - 1;
    (digits, exponent)
}

/// The significant digits of a double, without leading or trailing zeros.
struct Digits {
    buf: [u8; 24],
    len: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII digits")
    }
}

impl std::ops::Deref for Digits {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

fn write_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    // most strings need no escape: one pass that the compiler can vectorise says so
    if !s
        .as_bytes()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
    {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &byte) in s.as_bytes().iter().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x09 => "\\t",
            0x0a => "\\n",
            0x0c => "\\f",
            0x0d => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every escaped byte is ASCII, so `i` is a char boundary.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        to_canonical_json(v).unwrap()
    }

    #[test]
    fn sorts_keys_by_utf8_bytes_at_every_level() {
        let mut inner = serde_json::Map::new();
        inner.insert("é".into(), json!(1)); // 0xc3 0xa9
        inner.insert("z".into(), json!(2));
        inner.insert("Z".into(), json!(3));
        inner.insert("".into(), json!(4));
        let v = json!({"b": [Value::Object(inner)], "a": null, "aa": true});
        assert_eq!(
            canon(&v),
            r#"{"a":null,"aa":true,"b":[{"":4,"Z":3,"z":2,"é":1}]}"#
        );
    }

    #[test]
    fn escapes_like_serde_json() {
        let s: String = (0u8..0x80).map(char::from).collect::<String>() + "é€😀\u{2028}";
        let v = Value::String(s);
        assert_eq!(canon(&v), serde_json::to_string(&v).unwrap());
        // Solidus and DEL are not escaped; the other control characters are.
        assert_eq!(
            canon(&json!("\u{0}\u{1f}\"\\/\u{7f}")),
            "\"\\u0000\\u001f\\\"\\\\/\u{7f}\""
        );
    }

    #[test]
    fn integers_print_as_decimal() {
        assert_eq!(canon(&json!(0)), "0");
        assert_eq!(canon(&json!(-1)), "-1");
        assert_eq!(canon(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(canon(&json!(i64::MIN)), "-9223372036854775808");
    }

    #[test]
    #[expect(
        clippy::excessive_precision,
        reason = "the exact halfway values are the point"
    )]
    fn floats_follow_the_documented_layout() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1.5e15, "1500000000000000.0"),
            (1e16, "1e+16"),
            (1.25e16, "1.25e+16"),
            (0.00001, "0.00001"),
            (0.000012345, "0.000012345"),
            (1e-6, "1e-6"),
            (1.5e-7, "1.5e-7"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (0.30000000000000004, "0.30000000000000004"),
            // Exactly halfway between ...469.2 and ...469.3: the even digit wins.
            (-1762846210978469.25, "-1762846210978469.2"),
            (1762846210978469.75, "1762846210978469.8"),
        ];
        for (f, expected) in cases {
            assert_eq!(canon(&json!(f)), *expected, "formatting {f:e}");
        }
    }

    /// Which of zmij's texts are taken as printed: plain decimals in the plain-notation range
    /// that are not whole; the rest are laid out from their digits.
    #[test]
    fn plain_decimals_in_range_are_taken_as_printed() {
        let taken = |f: f64| already_laid_out(zmij::Buffer::new().format_finite(f));
        for f in [
            123.456,
            0.1,
            0.00001,
            0.000012345,
            1762846210978469.8,
            0.30000000000000004,
        ] {
            assert!(taken(f), "{f:e} is laid out as zmij prints it");
        }
        for f in [1e15, 100.0, 1e16, 1.25e16, 1e-6, 1.5e-7, 5e-324, f64::MAX] {
            assert!(!taken(f), "{f:e} goes through its digits");
        }
        // texts in other layouts
        for t in [
            "1.5e3",
            "01.5",
            "1.50",
            ".5",
            "1.",
            "12",
            "0.000001",
            "12345678901234567.5",
        ] {
            assert!(!already_laid_out(t), "{t}");
        }
    }

    /// The texts kept for repeated magnitudes are the texts computed afresh: many values
    /// (more than there are slots, so slots are taken over), written three times each,
    /// against the uncached layout and against reading them back.
    #[test]
    fn kept_float_texts_are_the_computed_ones() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut values: Vec<f64> = (0..5_000)
            .map(|i| match i % 3 {
                // any double
                0 => f64::from_bits(next()),
                // the kind records hold: rates, seconds, scores
                1 => (next() % 1_000_000) as f64 / 997.0,
                _ => -((next() % 10_000) as f64) * 0.001,
            })
            .filter(|f| f.is_finite())
            .collect();
        values.extend([1.0, 0.5, -0.5, 1e-7, 1e21, 5e-324, f64::MAX]);
        for pass in 0..3 {
            for &f in &values {
                let mut kept = String::new();
                write_f64(f, &mut kept);
                let mut fresh = String::new();
                if f.is_sign_negative() {
                    fresh.push('-');
                }
                if f == 0.0 {
                    fresh.push_str("0.0");
                } else {
                    let (digits, exponent) = shortest_digits(f.abs());
                    lay_out(&digits, exponent, &mut fresh);
                }
                assert_eq!(kept, fresh, "pass {pass}, {f:e}");
                assert_eq!(
                    kept.parse::<f64>().unwrap().to_bits(),
                    f.to_bits(),
                    "{kept}"
                );
            }
        }
    }

    #[test]
    fn rejects_nesting_deeper_than_max_depth() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH {
            v = json!([v]);
        }
        let text = canon(&v);
        assert_eq!(canonicalize(text.as_bytes()).unwrap(), text);
        let too_deep = json!({ "k": v });
        assert_eq!(
            to_canonical_json(&too_deep),
            Err(CanonicalJsonError::TooDeep)
        );
    }

    #[test]
    fn canonicalize_reports_non_json() {
        let err = canonicalize(b"{\"a\":").unwrap_err();
        assert!(err.to_string().starts_with("not valid JSON"), "{err}");
        assert!(canonicalize(b"\xff").is_err());
    }

    #[test]
    fn canonicalize_removes_whitespace_and_duplicates_show_as_changes() {
        assert_eq!(
            canonicalize(b" { \"b\" : 1.50 , \"a\" : [ 1e2 ] } ").unwrap(),
            r#"{"a":[100.0],"b":1.5}"#
        );
        // The last duplicate wins, so the canonical text differs from the stored one.
        assert_eq!(canonicalize(br#"{"a":1,"a":2}"#).unwrap(), r#"{"a":2}"#);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn is_canonical_accepts_canonical_texts() {
        for text in [
            "null",
            "true",
            "0",
            "-1",
            "18446744073709551615",
            "-9223372036854775808",
            "1.0",
            "-0.0",
            "1e+16",
            "5e-324",
            "0.00001",
            r#""""#,
            r#""\u0000\u001f\"\\/""#,
            "\"\u{7f}é\u{2028}\"",
            r#"{"":4,"Z":3,"z":2,"é":1}"#,
            r#"{"\u0001":2,"\"":1,"A":[[],{}]}"#,
            r#"[null,true,false,-1,2.5,"x\ty"]"#,
        ] {
            assert!(is_canonical(text.as_bytes()), "{text}");
            assert_eq!(canonicalize(text.as_bytes()).unwrap(), text);
        }
    }

    #[test]
    fn is_canonical_rejects_other_texts() {
        for text in [
            "",
            " null",
            "null ",
            "nul",
            "-0",
            "01",
            "+1",
            "1.",
            ".5",
            "1e16",
            "1E+16",
            "1.50",
            "1e2",
            "18446744073709551616",
            "-9223372036854775809",
            "NaN",
            r#""\/""#,
            r#""\u0041""#,
            r#""\u007f""#,
            r#""\u001F""#,
            r#""\u0009""#,
            "\"\t\"",
            r#""abc"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"[1 ]"#,
            r#"{"a" :1}"#,
            r#"{"a":1}x"#,
            r#"{"\"":1,"!":2}"#,
        ] {
            assert!(!is_canonical(text.as_bytes()), "{text}");
        }
        assert!(!is_canonical(b"\"\xff\""));
        let mut deep = "1".to_owned();
        for _ in 0..=MAX_DEPTH {
            deep = format!("[{deep}]");
        }
        assert!(!is_canonical(deep.as_bytes()));
        assert!(is_canonical(&deep.as_bytes()[1..deep.len() - 1]));
    }

    /// Texts near canonical ones: a canonical text with one edit.
    fn arb_near_canonical() -> impl Strategy<Value = Vec<u8>> {
        let edits = prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                0..4u8,
                prop::sample::select(b" \\\"{}[],:.-+eE0159aAuf/\t\x01\xc3".to_vec()),
            ),
            1..3,
        );
        (arb_json(), edits).prop_map(|(v, edits)| {
            let mut text = canon(&v).into_bytes();
            for (at, kind, byte) in edits {
                if text.is_empty() {
                    text.push(byte);
                    continue;
                }
                let i = at.index(text.len());
                match kind {
                    0 => text[i] = byte,
                    1 => text.insert(i, byte),
                    2 => {
                        text.remove(i);
                    }
                    _ => {
                        let j = (i + usize::from(byte)) % text.len();
                        text.swap(i, j);
                    }
                }
            }
            text
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn is_canonical_agrees_with_canonicalize(text in arb_near_canonical()) {
            let slow = matches!(canonicalize(&text), Ok(c) if c.as_bytes() == text.as_slice());
            prop_assert_eq!(is_canonical(&text), slow, "{}", String::from_utf8_lossy(&text));
        }

        #[test]
        fn is_canonical_accepts_every_canonical_text(v in arb_json()) {
            prop_assert!(is_canonical(canon(&v).as_bytes()));
        }

        #[test]
        fn is_canonical_checks_any_double(bits in any::<u64>(), digits in "[0-9]{1,20}", exp in -330..330i32) {
            let f = f64::from_bits(bits);
            prop_assume!(f.is_finite());
            let text = canon(&json!(f));
            prop_assert!(is_canonical(text.as_bytes()));
            for other in [format!("{digits}e{exp}"), format!("0.{digits}"), format!("{digits}.0"), format!("{f:e}")] {
                let slow = matches!(canonicalize(other.as_bytes()), Ok(c) if c == other);
                prop_assert_eq!(is_canonical(other.as_bytes()), slow, "{}", other);
            }
        }

        /// The fast path for short decimals decides as parsing and re-printing does, for
        /// decimals written in every layout, near the ends of the normal range too.
        #[test]
        fn short_decimals_are_judged_as_by_reprinting(
            digits in "[0-9]{1,17}",
            exp in -330..330i32,
            point in 0usize..18,
            negative in any::<bool>(),
        ) {
            let sign = if negative { "-" } else { "" };
            let trimmed = digits.trim_start_matches('0');
            let mut tokens = vec![
                format!("{sign}{digits}e{exp}"),
                format!("{sign}{digits}e+{exp}"),
                format!("{sign}{digits}.0"),
                format!("{sign}0.{digits}"),
                format!("{sign}0.00000{digits}"),
            ];
            if !trimmed.is_empty() {
                let (a, b) = trimmed.split_at(point.min(trimmed.len()));
                let b = if b.is_empty() { "0" } else { b };
                tokens.push(format!("{sign}{a}.{b}"));
                tokens.push(format!("{sign}{}.{}e{}", &trimmed[..1], &trimmed[1..], exp));
                tokens.push(format!("{sign}{}.{}e+{}", &trimmed[..1], &trimmed[1..], exp));
                tokens.push(format!("{sign}{}e{}", &trimmed[..1], exp));
                tokens.push(format!("{sign}{}e+{}", &trimmed[..1], exp));
            }
            for token in tokens {
                let slow = matches!(canonicalize(token.as_bytes()), Ok(c) if c == token);
                prop_assert_eq!(is_canonical(token.as_bytes()), slow, "{}", token);
            }
        }

        /// Canonical doubles of up to 15 significant digits in the range take the fast path.
        #[test]
        fn short_canonical_doubles_take_the_fast_path(bits in any::<u64>(), precision in 0usize..15) {
            let f = f64::from_bits(bits);
            prop_assume!(f.is_finite() && f != 0.0);
            // A nearby double whose shortest text has at most `precision + 1` digits.
            let short: f64 = format!("{f:.precision$e}").parse().unwrap();
            for x in [f, short] {
                let text = canon(&json!(x));
                let (digits, exponent) = shortest_digits(x.abs());
                let expected = digits.len() <= SHORT_DIGITS && SHORT_EXPONENTS.contains(&exponent);
                let mut scratch = String::new();
                prop_assert_eq!(is_canonical_short_decimal(text.as_bytes(), &mut scratch), expected, "{}", text);
            }
        }

        #[test]
        fn canonical_text_is_a_fixed_point(v in arb_json()) {
            let text = canon(&v);
            prop_assert_eq!(canonicalize(text.as_bytes()).unwrap(), text.clone());
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn any_double_round_trips(bits in any::<u64>()) {
            let f = f64::from_bits(bits);
            prop_assume!(f.is_finite());
            let text = canon(&json!(f));
            let back: f64 = text.parse().unwrap();
            prop_assert_eq!(back.to_bits(), f.to_bits());
            prop_assert_eq!(canonicalize(text.as_bytes()).unwrap(), text);
        }

        /// A text zmij already writes in `lay_out`'s layout is taken as it is: it is the text
        /// of its shortest digits laid out, for any double and for doubles spread over the
        /// plain-notation range and just beyond it, at any precision.
        #[test]
        fn texts_taken_as_printed_are_the_laid_out_digits(
            bits in any::<u64>(),
            scale in -7i32..18,
            precision in 0usize..17,
        ) {
            let any = f64::from_bits(bits).abs();
            let spread = (bits >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi(scale);
            for f in [any, spread] {
                prop_assume!(f.is_finite() && f > 0.0);
                let short: f64 = format!("{f:.precision$e}").parse().unwrap();
                for x in [f, short] {
                    let mut buffer = zmij::Buffer::new();
                    let printed = buffer.format_finite(x);
                    let (digits, exponent) = shortest_digits(x);
                    let mut laid_out = String::new();
                    lay_out(&digits, exponent, &mut laid_out);
                    if already_laid_out(printed) {
                        prop_assert_eq!(printed, laid_out.as_str());
                    }
                    let mut written = String::new();
                    write_f64(x, &mut written);
                    prop_assert_eq!(written, laid_out);
                }
            }
        }

        /// zmij's digits are as short as Rust's `{:e}` (both shortest) and the same, except
        /// that in a tie zmij's last digit is even.
        #[test]
        fn digits_are_shortest_and_closest(bits in any::<u64>()) {
            let f = f64::from_bits(bits).abs();
            prop_assume!(f.is_finite() && f > 0.0);
            let (digits, exponent) = shortest_digits(f);
            let rust = format!("{f:e}");
            let (mantissa, rust_exp) = rust.split_once('e').unwrap();
            let rust_digits: String = mantissa.chars().filter(|c| *c != '.').collect();
            prop_assert_eq!(digits.len(), rust_digits.len());
            prop_assert_eq!(exponent, rust_exp.parse::<i32>().unwrap());
            if *digits != *rust_digits {
                let a: u64 = digits.parse().unwrap();
                let b: u64 = rust_digits.parse().unwrap();
                prop_assert_eq!(a.abs_diff(b), 1);
                prop_assert_eq!(a % 2, 0);
            }
        }

        /// Today's `serde_json` prints doubles exactly as the canonical form does. If this
        /// fails after a `serde_json` upgrade, do NOT change the canonical form (existing
        /// ledgers depend on it): `docs/LEDGER.md` is the definition, not `serde_json`.
        #[test]
        fn doubles_match_current_serde_json(bits in any::<u64>()) {
            let f = f64::from_bits(bits);
            prop_assume!(f.is_finite());
            prop_assert_eq!(canon(&json!(f)), serde_json::to_string(&f).unwrap());
        }

        #[test]
        fn strings_match_serde_json(s in "\\PC*|[\\x00-\\x7f]*") {
            let v = Value::String(s);
            prop_assert_eq!(canon(&v), serde_json::to_string(&v).unwrap());
        }
    }

    /// The typed writer against the value path, `to_canonical_json(&to_value(x))`.
    fn typed_agrees<T: serde::Serialize>(x: &T) {
        let slow = serde_json::to_value(x)
            .map_err(|e| e.to_string())
            .and_then(|v| to_canonical_json(&v).map_err(|e| e.to_string()));
        let fast = to_canonical_string(x).map_err(|e| e.to_string());
        match (&slow, &fast) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("value path {slow:?}, typed path {fast:?}"),
        }
    }

    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        Newtype(f64),
        Tuple(u8, Option<String>),
        Struct { z: i32, a: Vec<Shape> },
    }

    #[derive(serde::Serialize)]
    #[serde(tag = "action", content = "payload")]
    enum Tagged {
        Empty,
        Full { b: bool, a: char },
    }

    #[derive(serde::Serialize)]
    struct Everything {
        zeta: f32,
        alpha: Option<u8>,
        none: Option<u8>,
        nan: f64,
        inf: f32,
        neg_zero: f64,
        big: i128,
        bytes: serde_bytes_like::Bytes,
        unit: (),
        shapes: Vec<Shape>,
        tagged: Vec<Tagged>,
        by_int: std::collections::BTreeMap<i64, &'static str>,
        by_char: std::collections::BTreeMap<char, u8>,
        by_bool: std::collections::BTreeMap<bool, u8>,
        by_float: Vec<(f64, u8)>,
        #[serde(flatten)]
        extra: std::collections::BTreeMap<String, Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        text: String,
    }

    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn the_typed_writer_gives_the_bytes_of_the_value_path() {
        let mut extra = std::collections::BTreeMap::new();
        // a flattened key equal to a field's: the later one wins in both paths
        extra.insert("text".to_string(), json!("from the map"));
        extra.insert("é".to_string(), json!([1.5, -0.0, 1e300]));
        let x = Everything {
            zeta: 0.1,
            alpha: Some(7),
            none: None,
            nan: f64::NAN,
            inf: f32::INFINITY,
            neg_zero: -0.0,
            big: -(1 << 62),
            bytes: serde_bytes_like::Bytes(vec![0, 255, 10]),
            unit: (),
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(2.5e-7),
                Shape::Tuple(3, Some("a\"b\n\u{2028}".into())),
                Shape::Struct {
                    z: -1,
                    a: vec![Shape::Unit, Shape::Tuple(0, None)],
                },
            ],
            tagged: vec![Tagged::Empty, Tagged::Full { b: true, a: '€' }],
            by_int: [(-3, "minus three"), (10, "ten"), (2, "two")].into(),
            by_char: [('b', 1), ('a', 2)].into(),
            by_bool: [(true, 1), (false, 0)].into(),
            by_float: vec![(0.5, 1)],
            extra,
            skipped: None,
            text: "field".into(),
        };
        typed_agrees(&x);
        let text = to_canonical_string(&x).unwrap();
        // the field comes after the flattened map: its value is the later one
        assert!(text.contains(r#""text":"field""#), "{text}");
        // float keys, as text; a non-finite one fails in both paths
        struct FloatKeys(Vec<(f64, u8)>);
        impl serde::Serialize for FloatKeys {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in &self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        typed_agrees(&FloatKeys(vec![(0.1, 1), (1e21, 2), (-3.0, 3), (0.1, 4)]));
        assert!(to_canonical_string(&FloatKeys(vec![(0.1, 1)])).is_ok());
        typed_agrees(&FloatKeys(vec![(f64::NAN, 1)]));
        let mut m = serde_json::Map::new();
        m.insert("1".into(), json!(1));
        typed_agrees(&m);
        // out of range and refused keys fail in both paths
        typed_agrees(&(1i128 << 100));
        typed_agrees(&u128::MAX);
        typed_agrees(&std::collections::BTreeMap::from([(vec![1u8], 1u8)]));
        typed_agrees(&std::collections::BTreeMap::from([(Some(1u8), 1u8)]));
        assert!(matches!(
            to_canonical_string(&std::collections::BTreeMap::from([((), 1u8)])),
            Err(CanonicalJsonError::Unserializable(_))
        ));
    }

    #[test]
    fn the_typed_writer_limits_nesting_as_the_value_path_does() {
        for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
            let mut v = json!(1);
            for _ in 0..depth {
                v = json!([v]);
            }
            assert_eq!(to_canonical_string(&v), to_canonical_json(&v), "{depth}");
            // through variants, which are objects too
            let mut s = Shape::Unit;
            for _ in 0..depth / 2 {
                s = Shape::Struct { z: 0, a: vec![s] };
            }
            typed_agrees(&s);
            let r = to_canonical_string(&s);
            let expected = serde_json::to_value(&s).ok().map(|v| to_canonical_json(&v));
            assert_eq!(Some(r), expected, "{depth}");
        }
    }

    #[test]
    fn the_typed_writer_lays_out_whole_numbers_as_the_value_path_does() {
        for f in [
            1.0,
            -3.0,
            59.0,
            100.0,
            1e14,
            999_999_999_999_999.0,
            1e15,
            -1e15,
            1e16,
            2e21,
            0.0,
            -0.0,
            4503599627370496.0,
            0.5,
            -1e-7,
        ] {
            assert_eq!(to_canonical_string(&f).unwrap(), canon(&json!(f)), "{f}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn the_typed_writer_agrees_on_whole_numbers(i in -(1i64 << 53)..(1i64 << 53), scale in 0u32..4) {
            let f = i as f64 * 10f64.powi(scale as i32);
            prop_assert_eq!(to_canonical_string(&f).unwrap(), canon(&json!(f)));
        }

        #[test]
        fn the_typed_writer_agrees_on_any_value(v in arb_json()) {
            prop_assert_eq!(to_canonical_string(&v).unwrap(), canon(&v));
        }

        #[test]
        fn the_typed_writer_agrees_on_any_double(bits in any::<u64>(), f32bits in any::<u32>()) {
            let f = f64::from_bits(bits);
            typed_agrees(&f);
            typed_agrees(&vec![f32::from_bits(f32bits)]);
            typed_agrees(&std::collections::BTreeMap::from([(format!("{bits}"), f)]));
        }
    }
}
