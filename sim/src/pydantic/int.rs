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

use super::FieldError;

/// CPython's default limit on the digits of an `int` parsed from text.
const MAX_DIGITS: usize = 4300;

const PARSING_MSG: &str = "Input should be a valid integer, unable to parse string as an integer";
const SIZE_MSG: &str = "Unable to parse input string as an integer, exceeded maximum size";

/// A parsed integer. Values beyond `i64` saturate: bounds checks only need to know that they
/// are beyond every bound, and no simulated collection is that large.
pub type LaxInt = i64;

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

/// Parses `text` as pydantic's lax `int` does.
pub fn parse(text: &str) -> Result<LaxInt, IntError> {
    match json_int(text) {
        JsonInt::Value(v) => return Ok(v),
        JsonInt::TooLong => return Err(IntError::Size),
        JsonInt::Invalid => {}
    }
    match clean(text).map(|cleaned| json_int(&cleaned)) {
        Some(JsonInt::Value(v)) => Ok(v),
        _ => Err(IntError::Parsing),
    }
}

/// Parses query parameter `name` as an integer and checks `ge`/`le` like `Query(ge=, le=)`.
pub fn query_param(
    name: &str,
    input: &str,
    ge: Option<i64>,
    le: Option<i64>,
) -> Result<LaxInt, FieldError> {
    let value =
        parse(input).map_err(|e| FieldError::query(e.kind(), name, e.msg().to_owned(), input))?;
    if let Some(ge) = ge.filter(|ge| value < *ge) {
        return Err(FieldError::query(
            "greater_than_equal",
            name,
            format!("Input should be greater than or equal to {ge}"),
            input,
        )
        .with_ctx(serde_json::json!({ "ge": ge })));
    }
    if let Some(le) = le.filter(|le| value > *le) {
        return Err(FieldError::query(
            "less_than_equal",
            name,
            format!("Input should be less than or equal to {le}"),
            input,
        )
        .with_ctx(serde_json::json!({ "le": le })));
    }
    Ok(value)
}

enum JsonInt {
    Value(LaxInt),
    TooLong,
    Invalid,
}

/// A JSON integer and nothing else: no sign but `-`, no leading zero, no spaces.
fn json_int(text: &str) -> JsonInt {
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
    let magnitude = digits.parse::<i64>().ok();
    JsonInt::Value(match (negative, magnitude) {
        (false, Some(v)) => v,
        (true, Some(v)) => -v,
        (false, None) => i64::MAX,
        (true, None) => i64::MIN,
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

    #[test]
    fn accepts_what_lax_mode_accepts() {
        for (input, want) in [
            ("5", 5),
            ("+5", 5),
            (" 5 ", 5),
            ("\t5\n", 5),
            ("5.0", 5),
            ("5.00", 5),
            ("1_000", 1000),
            ("1_000.0", 1000),
            ("-0", 0),
            ("00005", 5),
            ("-0.0", 0),
            ("0-9", -9),
            ("0__40", 40),
            ("\u{3000}5", 5),
            ("99999999999999999999999", i64::MAX),
            ("-99999999999999999999999", i64::MIN),
        ] {
            assert_eq!(parse(input), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn refuses_what_lax_mode_refuses() {
        for input in [
            "1.5", "5.", ".5", "1e3", "0x10", "1__0", "_1", "1_", "", " ", "+", "-", "++5", "+-1",
            "--1", "5 5", "５", "\u{1c}5", "5.10", "5.0_0", "1,000",
        ] {
            assert_eq!(parse(input), Err(IntError::Parsing), "{input:?}");
        }
        assert_eq!(parse(&"1".repeat(4301)), Err(IntError::Size));
        assert_eq!(parse(&"1".repeat(4300)), Ok(i64::MAX));
        assert_eq!(
            parse(&format!(" {}", "1".repeat(4301))),
            Err(IntError::Parsing)
        );
    }

    #[test]
    fn bounds_errors_carry_ctx() {
        let e = query_param("limit", "0", Some(1), Some(1000)).unwrap_err();
        assert_eq!(e.kind, "greater_than_equal");
        assert_eq!(e.ctx.as_deref(), Some(&serde_json::json!({"ge": 1})));
        let e = query_param("limit", "1_001", Some(1), Some(1000)).unwrap_err();
        assert_eq!(e.kind, "less_than_equal");
        assert_eq!(e.input, "1_001");
    }
}
