//! Parsing query values the way the API's validator (pydantic v2, lax mode) does.
//!
//! pollgate rejects at the edge exactly what the API would reject, and must
//! never reject what it would accept, so these rules mirror pydantic-core's:
//! - integers: surrounding whitespace, a sign, leading zeros, Python digit
//!   grouping (`1_000`) and an all-zero fraction (`5.0`) are accepted; `1.5`
//!   is not. Integers are arbitrary-precision, as in Python, and checked
//!   against bounds after parsing.
//! - UUIDs: hyphenated in any case, 32 hex digits, braced `{…}`, and
//!   `urn:uuid:…` with a lower-case prefix (pydantic refuses `URN:UUID:`,
//!   which the `uuid` crate would accept); whitespace, wrong group lengths and
//!   misplaced hyphens are refused.

use std::borrow::Cow;
use std::cmp::Ordering;

/// CPython's default limit on the digits of an `int` parsed from text.
const MAX_DIGITS: usize = 4300;

/// An integer in canonical form: no sign for zero, no leading zeros.
/// Arbitrary precision, as in Python; borrows the input when it is already canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaxInt<'a> {
    negative: bool,
    /// Decimal digits without leading zeros ("0" for zero).
    digits: Cow<'a, str>,
}

/// Why a text is not an integer, as pydantic types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntError {
    /// `int_parsing`
    Parsing,
    /// `int_parsing_size`: a JSON-form integer longer than CPython accepts.
    Size,
}

enum JsonInt<'a> {
    Value(LaxInt<'a>),
    TooLong,
    Invalid,
}

impl<'a> LaxInt<'a> {
    /// Parse like pydantic's lax `int` from a string.
    ///
    /// pydantic first tries the text as a JSON integer (`-?(0|[1-9][0-9]*)`);
    /// if that fails it cleans the text once (see [`clean`]) and tries again.
    pub fn parse(text: &'a str) -> Result<LaxInt<'a>, IntError> {
        match json_int(text) {
            JsonInt::Value(v) => return Ok(v),
            JsonInt::TooLong => return Err(IntError::Size),
            JsonInt::Invalid => {}
        }
        let cleaned = clean(text).ok_or(IntError::Parsing)?;
        match json_int(&cleaned) {
            JsonInt::Value(v) => Ok(LaxInt {
                negative: v.negative,
                digits: Cow::Owned(v.digits.into_owned()),
            }),
            JsonInt::TooLong | JsonInt::Invalid => Err(IntError::Parsing),
        }
    }

    /// The canonical decimal text (borrowed when it can be).
    pub fn canonical(&self) -> Cow<'a, str> {
        if self.negative {
            Cow::Owned(format!("-{}", self.digits))
        } else {
            self.digits.clone()
        }
    }

    /// Compare with a machine integer.
    pub fn cmp_i64(&self, other: i64) -> Ordering {
        let other_negative = other < 0;
        match (self.negative, other_negative) {
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
    JsonInt::Value(LaxInt {
        negative: negative && digits != "0",
        digits: Cow::Borrowed(digits),
    })
}

/// pydantic's one clean-up pass before its second try; `None` when it refuses
/// outright or when cleaning changed nothing:
/// - surrounding whitespace is trimmed (Rust's `str::trim` set, as pydantic-core's);
/// - one leading `+` is dropped (`+-1` is refused), one leading `-` is
///   remembered (`--1` and `-+1` are refused);
/// - leading zeros go, and underscores among them, but the zero before a `.`
///   stays; a `-` right after the zeros starts the rest, so `0-9` is -9 (a
///   quirk of pydantic-core, mirrored so nothing it accepts is refused here);
/// - a fraction of only zeros is dropped (`5.0`, `5.00`; not `5.` nor `5.10`);
/// - single underscores between digits go (`1_000`), unless one leads, trails or doubles.
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
    if s.contains('_') && !s.starts_with('_') && !s.ends_with('_') && !s.contains("__") {
        return Some(format!("{sign}{}", s.replace('_', "")));
    }
    if s.len() == text.len() {
        return None;
    }
    Some(format!("{sign}{s}"))
}

/// Drops leading zeros (and underscores among them), keeping a last zero for
/// `0` and before a `.`.
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
            // The previous character is a one-byte '0' or '_': `i - 1` is a char boundary.
            '.' => return Some(&s[i - 1..]),
            _ => return None,
        }
    }
    // All zeros and underscores: keep the last character (an underscore then fails).
    Some(&s[s.len() - 1..])
}

/// Why a UUID did not parse, in the words pydantic uses after
/// "Input should be a valid UUID, ".
pub fn parse_uuid(value: &str) -> Result<uuid::Uuid, String> {
    // pydantic refuses an upper- or mixed-case URN prefix; the crate would accept it.
    if value.len() >= 9 {
        let prefix = &value.as_bytes()[..9];
        if prefix.eq_ignore_ascii_case(b"urn:uuid:") && prefix != b"urn:uuid:" {
            return Err(format!(
                "invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `{}` at 1",
                value.chars().next().unwrap_or(' ')
            ));
        }
    }
    uuid::Uuid::try_parse(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(s: &str) -> Option<String> {
        LaxInt::parse(s).ok().map(|i| i.canonical().into_owned())
    }

    #[test]
    fn integers_parse_like_pydantic_lax_mode() {
        for (input, want) in [
            ("5", "5"),
            ("+5", "5"),
            (" 5 ", "5"),
            ("5.0", "5"),
            ("5.000", "5"),
            ("1_000", "1000"),
            ("050", "50"),
            ("-0", "0"),
            ("-12", "-12"),
            ("99999999999999999999999", "99999999999999999999999"),
        ] {
            assert_eq!(int(input).as_deref(), Some(want), "{input:?}");
        }
        for bad in [
            "", " ", "1.5", "1.", ".5", "abc", "1__0", "_1", "1_", "0x10", "1e3", "+-1", "--1",
        ] {
            assert_eq!(int(bad), None, "{bad:?} must not parse");
        }
    }

    #[test]
    fn integer_bounds_compare_at_any_size() {
        fn n(s: &str) -> LaxInt<'_> {
            LaxInt::parse(s).expect("int")
        }
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
    }

    /// Every verdict recorded from real pydantic 2.14 (`sim/fixtures/pydantic.json`,
    /// made by `sim/fixtures/pydantic_table.py`): what pydantic accepts is accepted
    /// with the same value, what it refuses is refused with the same error type.
    #[test]
    fn agrees_with_every_recorded_pydantic_verdict() {
        let table: serde_json::Value =
            serde_json::from_str(include_str!("../../sim/fixtures/pydantic.json")).expect("json");
        let cases = table["cases"].as_array().expect("cases");
        let mut checked = 0;
        for case in cases {
            let input = case["input"].as_str().expect("input");
            let want_value = case["value"].as_str();
            let want_error = case["error"]["type"].as_str();
            match case["field"].as_str() {
                Some("i") => {
                    let got = LaxInt::parse(input);
                    match (want_value, &got) {
                        (Some(v), Ok(n)) => assert_eq!(n.canonical(), v, "int {input:?}"),
                        (None, Err(e)) => {
                            let kind = match e {
                                IntError::Parsing => "int_parsing",
                                IntError::Size => "int_parsing_size",
                            };
                            assert_eq!(Some(kind), want_error, "int {input:?}");
                        }
                        _ => panic!("int {input:?}: pydantic {case}, here {got:?}"),
                    }
                }
                Some("u") => {
                    let got = parse_uuid(input);
                    match (want_value, &got) {
                        (Some(v), Ok(u)) => {
                            assert_eq!(u.hyphenated().to_string(), v, "uuid {input:?}")
                        }
                        (None, Err(_)) => {
                            assert_eq!(want_error, Some("uuid_parsing"), "uuid {input:?}")
                        }
                        _ => panic!("uuid {input:?}: pydantic {case}, here {got:?}"),
                    }
                }
                _ => continue,
            }
            checked += 1;
        }
        assert!(checked > 800, "{checked} verdicts checked");
    }

    #[test]
    fn uuids_parse_like_pydantic() {
        let canonical = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
        for ok in [
            "6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "6F9619FF-8B86-D011-B42D-00C04FC964FF",
            "6f9619ff8b86d011b42d00c04fc964ff",
            "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
            "urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff",
        ] {
            assert_eq!(
                parse_uuid(ok).map(|u| u.hyphenated().to_string()),
                Ok(canonical.to_owned()),
                "{ok}"
            );
        }
        for bad in [
            " 6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "6f9619ff-8b86-d011-b42d-00c04fc964ff ",
            "6f9619ff-8b86-d011-b42d-00c04fc964f",
            "6f9619ff8-b86-d011-b42d-00c04fc964ff",
            "URN:UUID:6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "Urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "not-a-uuid",
            "",
        ] {
            assert!(parse_uuid(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
