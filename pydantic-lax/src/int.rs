//! `int` from a query string, as pydantic v2's lax mode parses it.
//!
//! pydantic first tries the text as a JSON integer (`-?(0|[1-9][0-9]*)`). If that fails, it
//! cleans the text once and tries again:
//! - surrounding Unicode whitespace is trimmed (Rust's `str::trim` set, not Python's: `\x1c`
//!   is refused);
//! - one leading `+` is dropped (`+-1` is refused), one leading `-` is remembered (`--1`, `-+1`
//!   are refused);
//! - leading zeros go, and underscores between them (`0_0` is `0`), but the zero before a `.` stays;
//!   a `-` right after the zeros starts the rest, so `0-9` is `-9` (a quirk, mirrored);
//! - a fraction of only zeros is dropped (`5.0`, `5.00`; not `5.` nor `5.10`);
//! - single underscores between digits go (`1_000`), unless one leads, trails or doubles;
//! - if nothing changed, the text is refused.
//!
//! A JSON integer of more than 4,300 digits (CPython's limit for `int(str)`) is refused as
//! `int_parsing_size` on the first try only; a cleaned one that long is `int_parsing`.
//! Integers are arbitrary-precision, as in Python: the value is kept as its
//! canonical digits, so a bound can be checked and the number forwarded exactly.

use std::borrow::Cow;
use std::cmp::Ordering;

/// CPython's default limit on the digits of an `int` parsed from text.
const MAX_DIGITS: usize = 4300;

const PARSING_MSG: &str = "Input should be a valid integer, unable to parse string as an integer";
const SIZE_MSG: &str = "Unable to parse input string as an integer, exceeded maximum size";

/// A parsed integer in canonical form: no sign for zero, no leading zeros.
/// Borrows the input when it was already canonical, so the common case allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Int<'a> {
    negative: bool,
    /// Decimal digits without leading zeros ("0" for zero).
    digits: Cow<'a, str>,
}

/// Why the text is not an integer: pydantic's error `type` and `msg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntError {
    Parsing,
    Size,
}

impl IntError {
    pub fn kind(self) -> &'static str {
        match self {
            IntError::Parsing => "int_parsing",
            IntError::Size => "int_parsing_size",
        }
    }

    pub fn msg(self) -> &'static str {
        match self {
            IntError::Parsing => PARSING_MSG,
            IntError::Size => SIZE_MSG,
        }
    }
}

impl<'a> Int<'a> {
    /// The canonical decimal text (borrowed when it can be).
    pub fn canonical(&self) -> Cow<'a, str> {
        if self.negative {
            Cow::Owned(format!("-{}", self.digits))
        } else {
            self.digits.clone()
        }
    }

    /// Compare with a machine integer (for `ge`/`le` bounds).
    pub fn cmp_i64(&self, other: i64) -> Ordering {
        match (self.negative, other < 0) {
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let other_digits = other.unsigned_abs().to_string();
        let magnitude = self
            .digits
            .len()
            .cmp(&other_digits.len())
            .then_with(|| self.digits.as_ref().cmp(other_digits.as_str()));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }

    /// The value as an `i64`, saturating beyond its range.
    pub fn saturating_i64(&self) -> i64 {
        match (self.negative, self.digits.parse::<i64>()) {
            (false, Ok(v)) => v,
            (true, Ok(v)) => -v,
            (false, Err(_)) => i64::MAX,
            // `-9223372036854775808` does not fit as a positive magnitude either.
            (true, Err(_)) => i64::MIN,
        }
    }
}

/// Parses `text` as pydantic's lax `int` does.
pub fn parse(text: &str) -> Result<Int<'_>, IntError> {
    match json_int(text) {
        JsonInt::Value(v) => return Ok(v),
        JsonInt::TooLong => return Err(IntError::Size),
        JsonInt::Invalid => {}
    }
    let cleaned = clean(text).ok_or(IntError::Parsing)?;
    match json_int(&cleaned) {
        JsonInt::Value(v) => Ok(Int {
            negative: v.negative,
            digits: Cow::Owned(v.digits.into_owned()),
        }),
        JsonInt::TooLong | JsonInt::Invalid => Err(IntError::Parsing),
    }
}

enum JsonInt<'a> {
    Value(Int<'a>),
    TooLong,
    Invalid,
}

/// A JSON integer and nothing else: no sign but `-`, no leading zero, no spaces.
fn json_int(text: &str) -> JsonInt<'_> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !well_formed {
        return JsonInt::Invalid;
    }
    if digits.len() > MAX_DIGITS {
        return JsonInt::TooLong;
    }
    JsonInt::Value(Int {
        negative: negative && digits != "0",
        digits: Cow::Borrowed(digits),
    })
}

/// The one clean-up pass pydantic makes before its second try; `None` when it refuses outright
/// or when cleaning changed nothing.
fn clean(text: &str) -> Option<String> {
    let mut s = text.trim();
    if let Some(rest) = s.strip_prefix('+') {
        if rest.starts_with('-') {
            return None;
        }
        s = rest;
    }
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        if rest.starts_with(['-', '+']) {
            return None;
        }
        negative = true;
        s = rest;
    }
    s = skip_leading_zeros(s)?;
    if let Some(dot) = s.find('.') {
        let fraction = &s[dot + 1..];
        if !fraction.is_empty() && fraction.bytes().all(|b| b == b'0') {
            s = &s[..dot];
        }
    }
    let sign = if negative { "-" } else { "" };
    let underscores_ok =
        s.contains('_') && !s.starts_with('_') && !s.ends_with('_') && !s.contains("__");
    if underscores_ok {
        return Some(format!("{sign}{}", s.replace('_', "")));
    }
    if s.len() == text.len() {
        return None;
    }
    Some(format!("{sign}{s}"))
}

/// Drops leading zeros (and underscores among them), keeping a last zero for `0` and before `.`.
fn skip_leading_zeros(s: &str) -> Option<&str> {
    let mut chars = s.char_indices();
    match chars.next()? {
        (_, '0') => {}
        (_, '1'..='9' | '-') => return Some(s),
        _ => return None,
    }
    for (i, c) in chars {
        match c {
            '0' | '_' => {}
            '1'..='9' | '-' => return Some(&s[i..]),
            // The previous character is a one-byte '0' or '_', so `i - 1` is a char boundary.
            '.' => return Some(&s[i - 1..]),
            _ => return None,
        }
    }
    // All zeros and underscores: keep the last character (an underscore then fails later).
    Some(&s[s.len() - 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(input: &str) -> Result<String, IntError> {
        parse(input).map(|v| v.canonical().into_owned())
    }

    #[test]
    fn accepts_what_lax_mode_accepts() {
        for (input, want) in [
            ("5", "5"),
            ("+5", "5"),
            (" 5 ", "5"),
            ("\t5\n", "5"),
            ("5.0", "5"),
            ("5.00", "5"),
            ("1_000", "1000"),
            ("1_000.0", "1000"),
            ("-0", "0"),
            ("00005", "5"),
            ("-0.0", "0"),
            ("0-9", "-9"),
            ("0__40", "40"),
            ("\u{3000}5", "5"),
            ("99999999999999999999999", "99999999999999999999999"),
            ("-99999999999999999999999", "-99999999999999999999999"),
        ] {
            assert_eq!(value(input).as_deref(), Ok(want), "{input:?}");
        }
        assert!(matches!(
            parse("10").map(|v| v.canonical()),
            Ok(Cow::Borrowed("10"))
        ));
    }

    #[test]
    fn refuses_what_lax_mode_refuses() {
        for input in [
            "1.5", "5.", ".5", "1e3", "0x10", "1__0", "_1", "1_", "", " ", "+", "-", "++5", "+-1",
            "--1", "5 5", "５", "\u{1c}5", "5.10", "5.0_0", "1,000",
        ] {
            assert_eq!(value(input), Err(IntError::Parsing), "{input:?}");
        }
        assert_eq!(value(&"1".repeat(4301)), Err(IntError::Size));
        assert_eq!(value(&"1".repeat(4300)), Ok("1".repeat(4300)));
        assert_eq!(
            value(&format!(" {}", "1".repeat(4301))),
            Err(IntError::Parsing)
        );
    }

    #[test]
    fn bounds_compare_at_any_size() {
        let n = |s: &'static str| parse(s).expect("int");
        assert_eq!(n("1000").cmp_i64(1000), Ordering::Equal);
        assert_eq!(n("1001").cmp_i64(1000), Ordering::Greater);
        assert_eq!(n("0").cmp_i64(1), Ordering::Less);
        assert_eq!(n("-1").cmp_i64(0), Ordering::Less);
        assert_eq!(n("-5").cmp_i64(-7), Ordering::Greater);
        assert_eq!(
            n("99999999999999999999999").cmp_i64(i64::MAX),
            Ordering::Greater
        );
        assert_eq!(
            n("-99999999999999999999999").cmp_i64(i64::MIN),
            Ordering::Less
        );
        assert_eq!(n("99999999999999999999999").saturating_i64(), i64::MAX);
        assert_eq!(n("-12").saturating_i64(), -12);
    }
}
