//! `uuid.UUID` from a query string, as pydantic 2.14 parses it, error messages included.
//!
//! Accepted (all the same UUID): 32 hex digits; the hyphenated 8-4-4-4-12 form; that form in
//! braces `{...}`; that form after `urn:uuid:` (lower-case prefix only). Hex digits in any case.
//! Nothing is trimmed.
//!
//! The error text is pydantic's `uuid_parsing` message, which names the first problem found:
//! - longer than 45 bytes: `invalid length: found N`;
//! - exactly 36 bytes, or 38 in braces, or 45 after `urn:uuid:` (the shapes of a hyphenated
//!   UUID): the inner 36 bytes are examined as they are;
//! - any other input: braces or the `urn:uuid:` prefix are first peeled off, and positions count
//!   from the start of the input.
//!
//! Examining means: the first character that is neither a hex digit nor `-` is reported with its
//! position; else, with no hyphen in an unwrapped input, its length; else a hyphen count other than
//! four; else the first group of the wrong length. The last group's length is computed from the
//! whole input's length (so `{...}` counts its braces): mirrored as found.
//!
//! Rust's `uuid` crate was not used: its messages differ between versions and it accepts an
//! upper-case `URN:UUID:` prefix, which pydantic refuses.

const LONGEST: usize = 45;
const URN: &str = "urn:uuid:";
/// Where each group of the hyphenated form starts, and how long it is.
const GROUP_STARTS: [usize; 5] = [0, 9, 14, 19, 24];
const GROUP_LENGTHS: [usize; 5] = [8, 4, 4, 4, 12];

/// A parsed UUID: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Lower-case, hyphenated: the form pydantic's `str(uuid)` and FastAPI give back.
    pub fn hyphenated(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hyphenated())
    }
}

/// Parses `text`; `Err` is the part of pydantic's message after "Input should be a valid UUID, ".
pub fn parse(text: &str) -> Result<Uuid, String> {
    let bytes = text.as_bytes();
    if bytes.len() > LONGEST {
        return Err(format!("invalid length: found {}", bytes.len()));
    }
    if bytes.len() == 32 {
        if let Some(uuid) = from_hex_digits(bytes) {
            return Ok(uuid);
        }
        return Err(diagnose(text, true));
    }
    let hyphenated = match bytes.len() {
        36 => Some(text),
        38 if text.starts_with('{') && text.ends_with('}') => Some(&text[1..37]),
        45 if text.starts_with(URN) => Some(&text[URN.len()..]),
        _ => None,
    };
    match hyphenated {
        Some(inner) => parse_hyphenated(inner).ok_or_else(|| diagnose(inner, false)),
        None => Err(diagnose(text, true)),
    }
}

/// pydantic's whole `uuid_parsing` message for a [`parse`] error.
pub fn message(error: &str) -> String {
    format!("Input should be a valid UUID, {error}")
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn from_hex_digits(digits: &[u8]) -> Option<Uuid> {
    if digits.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
    }
    Some(Uuid(out))
}

fn parse_hyphenated(inner: &str) -> Option<Uuid> {
    let b = inner.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let digits: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
    from_hex_digits(&digits)
}

/// pydantic's description of why `text` is not a UUID. `unwrap` peels braces and `urn:uuid:`
/// first (positions then still count from the start of `text`); only a bare, unwrapped input
/// can have a wrong length.
fn diagnose(text: &str, unwrap: bool) -> String {
    let (inner, offset, bare) = if !unwrap {
        (text, 0, false)
    } else if text.len() >= 2 && text.starts_with('{') && text.ends_with('}') {
        (&text[1..text.len() - 1], 1, false)
    } else if let Some(rest) = text.strip_prefix(URN) {
        (rest, URN.len(), false)
    } else {
        (text, 0, true)
    };
    let mut hyphens = 0usize;
    let mut hyphen_at = [0usize; 4];
    for (i, c) in inner.char_indices() {
        if c == '-' {
            if hyphens < 4 {
                hyphen_at[hyphens] = i;
            }
            hyphens += 1;
        } else if !c.is_ascii_hexdigit() {
            return format!("invalid character: found `{c}` at {}", i + offset);
        }
    }
    if hyphens == 0 && bare {
        return format!("invalid length: found {}", text.len());
    }
    if hyphens != 4 {
        return format!("invalid group count: expected 5, found {}", hyphens + 1);
    }
    for group in 0..4 {
        if hyphen_at[group] != GROUP_STARTS[group + 1] - 1 {
            return format!(
                "invalid group length in group {group}: expected {}, found {}",
                GROUP_LENGTHS[group],
                hyphen_at[group] - GROUP_STARTS[group]
            );
        }
    }
    format!(
        "invalid group length in group 4: expected 12, found {}",
        text.len() - GROUP_STARTS[4]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "123e4567-e89b-12d3-a456-426614174000";

    #[test]
    fn accepts_every_spelling_as_one_uuid() {
        let want = parse(U).unwrap();
        for spelling in [
            U.to_owned(),
            U.to_uppercase(),
            U.replace('-', ""),
            U.replace('-', "").to_uppercase(),
            format!("{{{U}}}"),
            format!("urn:uuid:{U}"),
        ] {
            assert_eq!(parse(&spelling), Ok(want), "{spelling}");
        }
        assert_eq!(want.hyphenated(), U);
    }

    #[test]
    fn refuses_with_pydantics_words() {
        for (input, want) in [
            (format!("URN:UUID:{U}"), "invalid character: found `U` at 0"),
            (format!(" {U}"), "invalid character: found ` ` at 0"),
            (format!("{U} "), "invalid character: found ` ` at 36"),
            ("abc".to_owned(), "invalid length: found 3"),
            ("a".repeat(36), "invalid group count: expected 5, found 1"),
            (
                "123e456-7e89b-12d3-a456-426614174000".to_owned(),
                "invalid group length in group 0: expected 8, found 7",
            ),
            (
                "{123e4567-e89b-12d3-a456-42661417400}".to_owned(),
                "invalid group length in group 4: expected 12, found 13",
            ),
            (format!("urn:uuid:{{{U}}}"), "invalid length: found 47"),
        ] {
            assert_eq!(parse(&input), Err(want.to_owned()), "{input}");
        }
    }
}
