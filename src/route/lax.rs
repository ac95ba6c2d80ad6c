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

/// An integer in canonical form: no sign for zero, no leading zeros. Borrows
/// the input's digits unless they were grouped (`1_000`), so the common case
/// allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaxInt<'a> {
    negative: bool,
    /// Decimal digits without leading zeros ("0" for zero).
    digits: Cow<'a, str>,
}

impl<'a> LaxInt<'a> {
    /// Parse like pydantic's lax `int` from a string; `None` is an `int_parsing` error.
    pub fn parse(value: &'a str) -> Option<LaxInt<'a>> {
        let trimmed = value.trim();
        let (negative, unsigned) = match trimmed.as_bytes().first() {
            Some(b'-') => (true, &trimmed[1..]),
            Some(b'+') => (false, &trimmed[1..]),
            _ => (false, trimmed),
        };
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (unsigned, None),
        };
        // Python-style grouping: single underscores between digits.
        let grouping_ok = !whole.starts_with('_') && !whole.ends_with('_') && !whole.contains("__");
        if whole.is_empty()
            || !grouping_ok
            || !whole.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        {
            return None;
        }
        // pydantic-core drops only an all-zero fraction; `1.5` and `1.` are parse errors.
        if let Some(f) = fraction {
            if f.is_empty() || !f.bytes().all(|b| b == b'0') {
                return None;
            }
        }
        let digits: Cow<'a, str> = if whole.contains('_') {
            Cow::Owned(whole.replace('_', "").trim_start_matches('0').to_owned())
        } else {
            Cow::Borrowed(whole.trim_start_matches('0'))
        };
        let digits = if digits.is_empty() {
            Cow::Borrowed("0")
        } else {
            digits
        };
        let negative = negative && digits != "0";
        Some(LaxInt { negative, digits })
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
        LaxInt::parse(s).map(|i| i.canonical().into_owned())
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
